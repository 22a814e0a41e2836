import {
  ConfigError,
  DEFAULT_VERIFY_FANOUT,
  DEFAULT_VERIFY_LEAF_SIZE,
  inRange,
  type KeyRange,
  type RangeSummary,
  SortedHashes,
  type VerifiedRange,
  type VerifyReply,
} from '@sitesync/protocol';
import type { Database } from '@sitesync/db';
import { expectedUser, findSiteRows, type SiteRow } from '@sitesync/central';
import { centralHeaderHashes, columnsOfShape, type PipelineVerification } from './verify';
import { SiteReplyError, SiteRequester, type SiteRequesterOptions } from './site-requests';

/**
 * Ranges syncctl asks about in one request (the schema allows MAX_VERIFY_RANGES): with 16 parts of
 * keys up to 400 characters each, a reply stays well under the 2 MiB syncctl accepts.
 */
export const RANGES_PER_REQUEST = 64;
/** Requests one verify may send a site before syncctl gives up on it (a buggy or hostile site cannot loop). */
export const MAX_VERIFY_REQUESTS = 1000;
/** Ranges one verify may look at, all rounds together. */
export const MAX_VERIFY_RANGES_TOTAL = 200_000;

export interface BrokerVerifyOptions {
  /** Keys listed per kind of difference (the counts are always complete). @default 50 */
  maxKeys?: number;
  /** @default DEFAULT_VERIFY_FANOUT */
  fanout?: number;
  /** @default DEFAULT_VERIFY_LEAF_SIZE */
  leafSize?: number;
}

/** A pipeline verified through the broker, with what the exchange with the site cost. */
export interface BrokerPipelineVerification extends PipelineVerification {
  exchange: { requests: number; ranges: number; replyBytes: number };
}

/** The site rows of `siteId` to verify: all its pipelines, or the one named. */
export async function sitePipelineRows(central: Database, siteId: number, pipeline?: string): Promise<SiteRow[]> {
  const rows = await findSiteRows(central, siteId);
  if (rows.length === 0) throw new ConfigError(`site ${siteId} is not registered (no EstadoSyncGeneral row)`, 'site');
  if (pipeline === undefined) return rows;
  const row = rows.find((r) => r.pipeline === pipeline);
  if (!row)
    throw new ConfigError(
      `site ${siteId} has no pipeline ${pipeline} (it has ${rows.map((r) => r.pipeline).join(', ')})`,
      'pipeline',
    );
  return [row];
}

/**
 * Verifies a site that syncctl can reach only through the broker: per pipeline, the site hashes
 * its live headers and answers digests of key ranges; syncctl computes the same over the central's
 * copy and narrows only the ranges that differ (a range tree), down to `(key, hash)` lists of at
 * most `leafSize` headers. Returns every differing key (`maxKeys` cuts only the lists reported).
 */
export async function verifySiteOverBroker(
  central: Database,
  link: Omit<SiteRequesterOptions, 'siteUser'>,
  pipeline: string | undefined,
  opts: BrokerVerifyOptions = {},
): Promise<BrokerPipelineVerification[]> {
  const rows = await sitePipelineRows(central, link.siteId, pipeline);
  const out: BrokerPipelineVerification[] = [];
  for (const row of rows) {
    const requester = await SiteRequester.open({ ...link, siteUser: expectedUser(row) });
    try {
      out.push(await verifyPipeline(central, requester, link, row, opts));
    } finally {
      await requester.close();
    }
  }
  return out;
}

async function verifyPipeline(
  central: Database,
  requester: SiteRequester,
  link: Omit<SiteRequesterOptions, 'siteUser'>,
  row: SiteRow,
  opts: BrokerVerifyOptions,
): Promise<BrokerPipelineVerification> {
  const fanout = opts.fanout ?? DEFAULT_VERIFY_FANOUT;
  const leafSize = opts.leafSize ?? DEFAULT_VERIFY_LEAF_SIZE;
  const maxKeys = opts.maxKeys ?? 50;
  const siteId = link.siteId;
  let round = 0;
  let rangesSeen = 0;
  const ask = async (ranges: KeyRange[]): Promise<VerifyReply> => {
    if (round >= MAX_VERIFY_REQUESTS)
      throw new SiteReplyError(
        `site ${siteId}: verify gave up after ${MAX_VERIFY_REQUESTS} requests (too many differences to narrow over the broker: resync --all sends everything)`,
        siteId,
      );
    rangesSeen += ranges.length;
    if (rangesSeen > MAX_VERIFY_RANGES_TOTAL)
      throw new SiteReplyError(`site ${siteId}: verify gave up after ${MAX_VERIFY_RANGES_TOTAL} ranges`, siteId);
    const thisRound = round++;
    const reply = await requester.ask(
      'verify.request',
      {
        requestId: requester.requestId,
        siteId,
        pipeline: row.pipeline,
        round: thisRound,
        deadline: Date.now() + link.timeoutMs,
        fanout,
        leafSize,
        ranges,
      },
      'verify.reply',
      (r) =>
        r.round !== thisRound
          ? `it answers round ${r.round}, not ${thisRound}`
          : r.pipeline !== row.pipeline
            ? `it answers pipeline ${r.pipeline}, not ${row.pipeline}`
            : undefined,
    );
    if (reply.error) throw new SiteReplyError(`site ${siteId} could not answer: ${reply.error}`, siteId);
    if (reply.ranges.length !== ranges.length)
      throw refused(siteId, `${reply.ranges.length} range(s) answered for ${ranges.length} asked`);
    reply.ranges.forEach((r, i) => checkAnswer(siteId, ranges[i]!, r, fanout, leafSize));
    return reply;
  };

  const whole: KeyRange = { lo: null, hi: null };
  const first = await ask([whole]);
  if (!first.shape) throw refused(siteId, 'the first reply carries no pipeline shape');
  if (first.shape.name !== row.pipeline)
    throw refused(siteId, `the shape is of pipeline ${first.shape.name}, not ${row.pipeline}`);
  const centralSide = await centralHeaderHashes(
    central,
    siteId,
    columnsOfShape(first.shape),
    row.tabla_encabezado,
    row.tabla_detalle,
  );
  const mine = new SortedHashes(centralSide.hashes);
  const siteTotal = first.ranges[0]!;

  const missing: string[] = [];
  const extra: string[] = [];
  const different: string[] = [];
  let pending: VerifiedRange[] = [siteTotal];
  while (pending.length) {
    const next: KeyRange[] = [];
    for (const answer of pending) {
      if (answer.entries) {
        compareEntries(answer, answer.entries, mine, { missing, extra, different });
        continue;
      }
      for (const part of answer.parts!) {
        const c = mine.summary(part);
        if (c.count !== part.count || c.digest !== part.digest) next.push({ lo: part.lo, hi: part.hi });
      }
    }
    pending = [];
    for (let i = 0; i < next.length; i += RANGES_PER_REQUEST) {
      pending.push(...(await ask(next.slice(i, i + RANGES_PER_REQUEST))).ranges);
    }
  }
  const sortCut = (keys: string[]) => keys.sort().slice(0, maxKeys);
  return {
    pipeline: row.pipeline,
    site: { headers: siteTotal.count, details: first.details ?? 0, digest: siteTotal.digest },
    central: {
      headers: mine.size,
      details: centralSide.details,
      digest: mine.summary(whole).digest,
    },
    differences: missing.length + extra.length + different.length,
    missingCentrally: sortCut(missing),
    extraCentrally: sortCut(extra),
    different: sortCut(different),
    exchange: { requests: round, ranges: rangesSeen, replyBytes: requester.replyBytes },
  };
}

/** A leaf: the site's `(key, hash)` list of a range against the central's. */
function compareEntries(
  range: KeyRange,
  entries: ReadonlyArray<readonly [string, string]>,
  mine: SortedHashes,
  out: { missing: string[]; extra: string[]; different: string[] },
): void {
  const central = new Map(mine.entries(range));
  for (const [key, hash] of entries) {
    const c = central.get(key);
    if (c === undefined) out.missing.push(key);
    else if (c !== hash) out.different.push(key);
    central.delete(key);
  }
  out.extra.push(...central.keys());
}

function refused(siteId: number, why: string): SiteReplyError {
  return new SiteReplyError(`site ${siteId}: reply refused: ${why}`, siteId);
}

/**
 * What a site answered for one range must be that range, and narrower each round: parts that cover
 * it exactly, in order, each non-empty and smaller than the whole; or a sorted list of its keys.
 */
function checkAnswer(siteId: number, asked: KeyRange, a: VerifiedRange, fanout: number, leafSize: number): void {
  if (a.lo !== asked.lo || a.hi !== asked.hi) throw refused(siteId, 'a range answered is not the range asked');
  if (a.entries && a.parts) throw refused(siteId, 'a range answered with both parts and entries');
  if (a.entries) {
    if (a.entries.length !== a.count || a.count > leafSize)
      throw refused(siteId, `a list of ${a.entries.length} entries for ${a.count} header(s), leaf size ${leafSize}`);
    let previous: string | undefined;
    for (const [key] of a.entries) {
      if (!inRange(key, asked)) throw refused(siteId, `key ${key.slice(0, 80)} lies outside the range asked`);
      if (previous !== undefined && !(key > previous)) throw refused(siteId, 'the keys of a list are not sorted');
      previous = key;
    }
    return;
  }
  const parts: RangeSummary[] | undefined = a.parts;
  if (!parts) throw refused(siteId, 'a range answered with neither parts nor entries');
  if (a.count <= leafSize) throw refused(siteId, `a range of ${a.count} header(s) split instead of listed`);
  if (parts.length < 2 || parts.length > fanout)
    throw refused(siteId, `a range split into ${parts.length} parts (2 to ${fanout} expected)`);
  let total = 0;
  parts.forEach((p, i) => {
    const expectedLo = i === 0 ? asked.lo : parts[i - 1]!.hi;
    if (p.lo !== expectedLo) throw refused(siteId, 'the parts of a range do not follow each other');
    if (p.lo !== null && p.hi !== null && !(p.lo < p.hi))
      throw refused(siteId, 'a part of a range is empty or reversed');
    if (p.count === 0 || p.count >= a.count) throw refused(siteId, 'a part of a range does not narrow it');
    total += p.count;
  });
  if (parts[parts.length - 1]!.hi !== asked.hi) throw refused(siteId, 'the parts of a range do not cover it');
  if (total !== a.count) throw refused(siteId, `parts count ${total} header(s), the range ${a.count}`);
}
