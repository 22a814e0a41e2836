import { ConfigError, encodeKey, MAX_RESYNC_KEYS, type ResyncReply } from '@sitesync/protocol';
import type { Database } from '@sitesync/db';
import { expectedUser } from '@sitesync/central';
import { sitePipelineRows, verifySiteOverBroker, type BrokerPipelineVerification } from './broker-verify';
import { SiteReplyError, SiteRequester, type SiteRequesterOptions } from './site-requests';

/** Which headers a resync sends again. */
export type ResyncScope = { kind: 'keys'; keys: readonly string[] } | { kind: 'all' } | { kind: 'differences' };

export interface ResyncResult {
  /** With `differences`: the verify that found them. */
  verification?: BrokerPipelineVerification[];
  /** Keys marked per pipeline (empty when there was nothing to resync). */
  marked: ResyncReply['marked'];
  session?: ResyncReply['session'];
}

/**
 * A key as an operator types it: an encoded key (`["7"]`, as verify prints them) as it is, any
 * other text as a key of one column (`7` -> `["7"]`).
 */
export function keyFromArgument(arg: string): string {
  if (!arg.startsWith('[')) return encodeKey([arg]);
  let parsed: unknown;
  try {
    parsed = JSON.parse(arg);
  } catch {
    throw new TypeError(`key ${arg} starts with [ but is not a JSON array`);
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || parsed.some((v) => v !== null && typeof v === 'object'))
    throw new TypeError(`key ${arg} is not an array of key values`);
  return encodeKey(parsed as Array<string | number | boolean | null>);
}

/**
 * Makes a site forget what the central acknowledged for some headers, so its next session (or one
 * it starts at once with `now`) sends them again: the keys given, every key, or every key a broker
 * verify finds different (keys only the central has are sent as deletions).
 */
export async function resyncSite(
  central: Database,
  link: Omit<SiteRequesterOptions, 'siteUser'>,
  pipeline: string | undefined,
  scope: ResyncScope,
  now: boolean,
): Promise<ResyncResult> {
  const rows = await sitePipelineRows(central, link.siteId, pipeline);
  let verification: BrokerPipelineVerification[] | undefined;
  let pipelines: Array<{ pipeline: string; all: boolean; keys: string[] }>;
  if (scope.kind === 'differences') {
    verification = await verifySiteOverBroker(central, link, pipeline, { maxKeys: Infinity });
    pipelines = verification
      .map((v) => ({
        pipeline: v.pipeline,
        all: false,
        keys: [...v.missingCentrally, ...v.extraCentrally, ...v.different],
      }))
      .filter((p) => p.keys.length > 0);
    if (pipelines.length === 0) return { verification, marked: [] };
  } else {
    if (scope.kind === 'keys' && rows.length > 1) {
      throw new ConfigError(
        `--keys needs --pipeline: site ${link.siteId} has pipelines ${rows.map((r) => r.pipeline).join(', ')}`,
        'pipeline',
      );
    }
    pipelines = rows.map((r) => ({
      pipeline: r.pipeline,
      all: scope.kind === 'all',
      keys: scope.kind === 'keys' ? [...new Set(scope.keys)] : [],
    }));
  }
  for (const p of pipelines) {
    if (p.keys.length > MAX_RESYNC_KEYS)
      throw new RangeError(`${p.keys.length} keys of pipeline ${p.pipeline}: at most ${MAX_RESYNC_KEYS}; use --all`);
  }
  const requester = await SiteRequester.open({ ...link, siteUser: expectedUser(rows[0]!) });
  try {
    const reply = await requester.ask(
      'resync.request',
      { requestId: requester.requestId, siteId: link.siteId, deadline: Date.now() + link.timeoutMs, pipelines, now },
      'resync.reply',
      () => undefined,
    );
    if (reply.error) throw new SiteReplyError(`site ${link.siteId} could not resync: ${reply.error}`, link.siteId);
    return {
      ...(verification ? { verification } : {}),
      marked: reply.marked,
      ...(reply.session ? { session: reply.session } : {}),
    };
  } finally {
    await requester.close();
  }
}
