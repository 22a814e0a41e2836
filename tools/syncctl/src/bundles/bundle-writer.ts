import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { zipSync, type Zippable } from 'fflate';
import { ConfigError } from '@sitesync/protocol';
import type { BundleFile } from './bundle-reader';

/**
 * Writes a bundle's files (paths relative to the bundle root, `/`-separated) as a `.zip` file or
 * into a folder. Refuses to overwrite: an existing zip, or a folder that is not empty.
 */
export async function writeBundle(out: string, files: readonly BundleFile[]): Promise<void> {
  if (/\.zip$/i.test(out)) {
    if (await exists(out)) throw new ConfigError(`${out} exists already; give a new file name`, 'out');
    const tree: Zippable = {};
    for (const f of files) tree[f.path] = f.data;
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, zipSync(tree, { level: 6 }));
    return;
  }
  if ((await exists(out)) && (await readdir(out)).length > 0)
    throw new ConfigError(`${out} is not empty; give a new or empty folder`, 'out');
  for (const f of files) {
    const path = join(out, ...f.path.split('/'));
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, f.data);
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
