import { ConfigError, HashingFileSchema, brokerUrlsOf, configErrorFrom, type HashingFile } from '@sitesync/protocol';
import type { Database } from '@sitesync/db';
import type { BundleFile } from './bundle-reader';
import { expectedUser, findSiteRows } from '@sitesync/central';

export interface SiteBundleOptions {
  siteId: number;
  /** The site's hashing files, as read: `name` is where it came from, for messages. */
  pipelineFiles: ReadonlyArray<{ name: string; text: string }>;
  /** The broker as the site reaches it, or its cluster's nodes; user and password are replaced (the site's user, no password). */
  amqpUrl: string | readonly string[];
  prefix: string;
}

/** Where the config lands in the site's config folder. */
export const SITE_CONFIG_FILE = 'site.json';

const utf8 = (s: string) => new TextEncoder().encode(s);

/**
 * A bundle that provisions a new site from the central:
 * `001.imports/procedure_version.json`, the central's procedure catalogue (a site accepts an
 * intervention only on a procedure version it holds; imports never overwrite, and a version is never
 * changed once published, so applying it again only adds new versions), and `002.files/`, the site's
 * peripheral config (`site.json`, no secrets: the database URL and the broker password come from
 * `SYNC_DB_URL` and `SYNC_AMQP_URL(_FILE)`) with its hashing files under `pipelines/`.
 * The site must be registered (`syncctl sites add`) for every pipeline it is given.
 */
export async function exportSiteBundle(central: Database, opts: SiteBundleOptions): Promise<BundleFile[]> {
  const rows = await findSiteRows(central, opts.siteId);
  if (rows.length === 0)
    throw new ConfigError(`site ${opts.siteId} is not registered: run syncctl sites add ${opts.siteId} first`, 'site');
  const registered = rows.map((r) => r.pipeline);
  const pipelines = opts.pipelineFiles.map((f) => parseHashingFile(f.name, f.text));
  if (pipelines.length === 0)
    throw new ConfigError("give the site's hashing file(s) with --pipeline-file", 'pipeline-file');
  for (const [i, p] of pipelines.entries()) {
    if (!registered.includes(p.name))
      throw new ConfigError(
        `${opts.pipelineFiles[i]!.name}: pipeline ${p.name} is not registered for site ${opts.siteId} (registered: ${registered.join(', ')})`,
        'pipeline-file',
      );
  }
  const names = new Set(pipelines.map((p) => p.name));
  if (names.size !== pipelines.length)
    throw new ConfigError('two hashing files name the same pipeline', 'pipeline-file');

  const procedures = await central.query<Record<string, unknown>>(
    `SELECT code, version, name, definition, created_at FROM procedure_version ORDER BY code, version`,
  );
  const catalogue = procedures.map((p) => ({
    code: String(p.code),
    version: Number(p.version),
    name: String(p.name),
    definition: String(p.definition),
    created_at: p.created_at instanceof Date ? p.created_at.toISOString() : String(p.created_at),
  }));
  // Every node of a cluster, each with the site's user (its password is the site's to fill in).
  const urls = brokerUrlsOf(opts.amqpUrl).map((u) => {
    const url = new URL(u);
    url.username = encodeURIComponent(expectedUser(rows[0]!));
    url.password = '';
    return url.toString();
  });
  const config = {
    siteId: opts.siteId,
    amqp: { url: urls.length === 1 ? urls[0] : urls, ...(opts.prefix ? { prefix: opts.prefix } : {}) },
    pipelines: pipelines.map((p) => ({ file: `pipelines/${p.name}.json` })),
    schedule: { intervalSeconds: 300 },
  };
  return [
    { path: '001.imports/procedure_version.json', data: utf8(`${JSON.stringify(catalogue, null, 2)}\n`) },
    { path: `002.files/${SITE_CONFIG_FILE}`, data: utf8(`${JSON.stringify(config, null, 2)}\n`) },
    ...opts.pipelineFiles.map((f, i) => ({
      path: `002.files/pipelines/${pipelines[i]!.name}.json`,
      data: utf8(f.text),
    })),
  ];
}

function parseHashingFile(name: string, text: string): HashingFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new ConfigError(`${name}: ${(cause as Error).message}`, 'pipeline-file', { cause });
  }
  const parsed = HashingFileSchema.safeParse(json);
  if (!parsed.success) throw configErrorFrom(parsed.error, `${name}: `);
  return parsed.data;
}
