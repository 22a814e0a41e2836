import { createHash } from 'node:crypto';
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import { BundleRefusedError, type BundleProblem } from './bundle-errors';

/** A file of a bundle; `path` is relative to its top-level item, with `/` separators. */
export interface BundleFile {
  path: string;
  data: Uint8Array;
}

/** A top-level file or folder of a bundle, before its name is checked (`001.sql`, `002.imports`, `README`). */
export interface BundleItem {
  name: string;
  directory: boolean;
  /** A folder's files (recursively); a file item holds itself, with `path` = its name. */
  files: BundleFile[];
}

/** What a bundle holds, read the same way from a folder or a zip. */
export interface BundleContent {
  /** The folder or zip as given. */
  source: string;
  format: 'folder' | 'zip';
  /** SHA-256 of the names and contents: the same bundle gives the same checksum as a folder or a zip. */
  checksum: string;
  items: BundleItem[];
}

/** Top-level names that are not entries and are left alone (file managers and zip tools add them). */
const IGNORED_TOP_LEVEL = /^(\..*|__MACOSX|Thumbs\.db|desktop\.ini)$/i;
/** A zip whose files would expand to more than this is refused (a bundle is reference data, not a backup). */
const MAX_UNZIPPED_BYTES = 1024 * 1024 * 1024;

/** Reads a bundle from a folder or a `.zip` file. Unsafe paths (zip-slip, links) refuse the whole bundle. */
export async function readBundle(path: string): Promise<BundleContent> {
  let stat;
  try {
    stat = await lstat(path);
  } catch (cause) {
    throw new BundleRefusedError(path, [{ message: `cannot read it: ${(cause as Error).message}` }]);
  }
  if (stat.isDirectory()) return toContent(path, 'folder', await readFolder(path));
  if (stat.isFile() && /\.zip$/i.test(path)) return toContent(path, 'zip', await readZip(path));
  throw new BundleRefusedError(path, [{ message: 'a bundle is a folder or a .zip file' }]);
}

async function readFolder(root: string): Promise<Map<string, Uint8Array | 'dir'>> {
  const found = new Map<string, Uint8Array | 'dir'>();
  const problems: BundleProblem[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const d of await readdir(join(root, rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${d.name}` : d.name;
      if (!rel && IGNORED_TOP_LEVEL.test(d.name)) continue;
      // A link could point anywhere (outside the bundle, at a device): copying what it points to is not ours to decide.
      if (d.isSymbolicLink())
        problems.push({ where: child, message: 'is a symbolic link; bundles hold plain files only' });
      else if (d.isDirectory()) {
        found.set(child, 'dir');
        await walk(child);
      } else if (d.isFile()) found.set(child, await readFile(join(root, child)));
      else problems.push({ where: child, message: 'is not a plain file or folder' });
    }
  };
  await walk('');
  if (problems.length) throw new BundleRefusedError(root, problems);
  return found;
}

async function readZip(file: string): Promise<Map<string, Uint8Array | 'dir'>> {
  const raw = await readFile(file);
  const problems: BundleProblem[] = [];
  let total = 0;
  let unzipped: Record<string, Uint8Array>;
  try {
    unzipped = unzipSync(raw, {
      filter: (f) => {
        total += f.originalSize;
        return total <= MAX_UNZIPPED_BYTES;
      },
    });
  } catch (cause) {
    throw new BundleRefusedError(file, [{ message: `not a readable zip file: ${(cause as Error).message}` }]);
  }
  if (total > MAX_UNZIPPED_BYTES)
    throw new BundleRefusedError(file, [{ message: `expands to more than ${MAX_UNZIPPED_BYTES} bytes` }]);
  const found = new Map<string, Uint8Array | 'dir'>();
  for (const [name, data] of Object.entries(unzipped)) {
    const why = unsafePathReason(name);
    if (why) {
      problems.push({ where: JSON.stringify(name), message: `unsafe path in the zip (${why})` });
      continue;
    }
    const isDir = name.endsWith('/');
    const clean = name.replace(/\/+$/, '');
    const parts = clean.split('/');
    // Folders are implied by their files' paths; zips list them explicitly only sometimes.
    for (let i = 1; i < parts.length; i++) found.set(parts.slice(0, i).join('/'), 'dir');
    found.set(clean, isDir ? 'dir' : data);
  }
  if (problems.length) throw new BundleRefusedError(file, problems);
  return stripWrapperFolder(found);
}

/**
 * Why a path inside a bundle could write outside its destination ("zip slip"), or undefined when
 * it is safe: absolute paths, drive letters, backslashes, `.` or `..` segments, control characters.
 */
export function unsafePathReason(path: string): string | undefined {
  if (path.includes('\\')) return 'backslash in the path';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f]/.test(path)) return 'control character in the path';
  if (path.startsWith('/')) return 'absolute path';
  if (/^[A-Za-z]:/.test(path)) return 'drive letter';
  const segments = path.replace(/\/$/, '').split('/');
  if (segments.some((s) => s === '..')) return 'goes up with ..';
  if (segments.some((s) => s === '.' || s === '')) return 'empty or . segment';
  return undefined;
}

/** A zip made of the bundle folder itself (`bundle/001.sql`, ...) reads like the folder's contents. */
function stripWrapperFolder(found: Map<string, Uint8Array | 'dir'>): Map<string, Uint8Array | 'dir'> {
  const tops = new Set([...found.keys()].map((k) => k.split('/')[0]!).filter((t) => !IGNORED_TOP_LEVEL.test(t)));
  const [only] = tops;
  if (tops.size !== 1 || found.get(only!) !== 'dir' || /^\d+\./.test(only!)) return found;
  const inner = new Map<string, Uint8Array | 'dir'>();
  for (const [k, v] of found) if (k.startsWith(`${only}/`)) inner.set(k.slice(only!.length + 1), v);
  return inner;
}

function toContent(
  source: string,
  format: BundleContent['format'],
  found: Map<string, Uint8Array | 'dir'>,
): BundleContent {
  const items = new Map<string, BundleItem>();
  for (const [path, v] of [...found].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const [top, ...rest] = path.split('/');
    if (IGNORED_TOP_LEVEL.test(top!)) continue;
    if (rest.length === 0) {
      items.set(top!, { name: top!, directory: v === 'dir', files: v === 'dir' ? [] : [{ path: top!, data: v }] });
    } else if (v !== 'dir') {
      items.get(top!)!.files.push({ path: rest.join('/'), data: v });
    }
  }
  const list = [...items.values()];
  return { source, format, checksum: bundleChecksum(list), items: list };
}

/** SHA-256 over every item's name and every file's path and bytes, in name order. */
function bundleChecksum(items: readonly BundleItem[]): string {
  const h = createHash('sha256');
  for (const item of items) {
    h.update(`${item.directory ? 'dir' : 'file'}\u0000${item.name}\u0000`);
    for (const f of item.files) {
      h.update(`${f.path}\u0000${f.data.length}\u0000`);
      h.update(f.data);
    }
  }
  return h.digest('hex');
}
