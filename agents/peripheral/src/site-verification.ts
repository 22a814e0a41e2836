import {
  decodeKey,
  errorInfo,
  replyRoutingKey,
  SortedHashes,
  UnroutableError,
  type DecodedMessage,
  type EncodedMessage,
  type Logger,
  type MessageBody,
  type ResyncReply,
  type VerifiedRange,
  type VerifyReply,
} from '@sitesync/protocol';
import { hashHeaders, type Database, type ResolvedPipeline } from '@sitesync/db';
import type { PipelineCache } from './pipeline-cache';
import { markForResend } from './row-state';
import { encodeSiteMessage, type SiteSender } from './site-message';
import type { SessionResult } from './sync-session';

/** How long one verify's hashes are kept for its later rounds. */
export const VERIFY_CACHE_MS = 120_000;
/** Verifies whose hashes are kept at once: memory stays bounded by this many copies of a pipeline's (key, hash) list. */
export const VERIFY_CACHE_ENTRIES = 2;

interface CachedHashes {
  hashes: SortedHashes;
  details: number;
}

export interface SiteVerificationDeps {
  db: Database;
  pipelines: PipelineCache;
  sender: SiteSender;
  log: Logger;
  /** Publishes confirmed and mandatory (BrokerConnection.publish). */
  publish(m: EncodedMessage): Promise<void>;
  /** Runs (or joins) a session. */
  runSession(): Promise<SessionResult>;
  /** The session running now, if any: a resync waits for it (its acks would overwrite the marks). */
  currentSession(): Promise<unknown> | undefined;
}

/**
 * The site's side of `syncctl verify --site` and `syncctl resync`: digests of its live headers by
 * key range, and forgetting what the central acknowledged. Answers go to `sync.up` under
 * `<siteId>.reply.<requestId>`; one nobody waits for any more is logged and dropped.
 */
export class SiteVerification {
  /** By `<requestId>|<pipeline>`; `expires` is set once hashed (a verify still hashing is never dropped for age). */
  private readonly cache = new Map<string, { expires: number; hashes: Promise<CachedHashes> }>();

  constructor(private readonly deps: SiteVerificationDeps) {}

  async onVerifyRequest(m: DecodedMessage<'verify.request'>): Promise<void> {
    const req = m.body;
    if (this.expired(req.deadline, m)) return;
    const base = { requestId: req.requestId, siteId: req.siteId, pipeline: req.pipeline, round: req.round };
    let reply: VerifyReply;
    try {
      const p = await this.pipeline(req.pipeline);
      if (!p) {
        reply = { ...base, error: `site ${req.siteId} has no pipeline ${req.pipeline}`, ranges: [] };
      } else {
        const side = await this.hashesOf(req.requestId, p);
        reply = {
          ...base,
          ...(req.round === 0 ? { shape: p.shape, details: side.details } : {}),
          ranges: req.ranges.map((r): VerifiedRange => {
            const summary = side.hashes.summary(r);
            if (summary.count <= req.leafSize) return { ...summary, entries: side.hashes.entries(r) };
            return { ...summary, parts: side.hashes.split(r, req.fanout) };
          }),
        };
      }
    } catch (err) {
      this.deps.log.warn({ err: errorInfo(err), requestId: req.requestId }, 'verify request failed');
      reply = { ...base, error: `site ${req.siteId}: ${(err as Error).message}`.slice(0, 2000), ranges: [] };
    }
    await this.answer('verify.reply', reply, m);
  }

  async onResyncRequest(m: DecodedMessage<'resync.request'>): Promise<void> {
    const req = m.body;
    if (this.expired(req.deadline, m)) return;
    const base = { requestId: req.requestId, siteId: req.siteId };
    let reply: ResyncReply;
    try {
      const resolved: Array<{ p: ResolvedPipeline; all: boolean; keys: string[] }> = [];
      for (const r of req.pipelines) {
        const p = await this.pipeline(r.pipeline);
        if (!p) throw new Error(`site ${req.siteId} has no pipeline ${r.pipeline}`);
        for (const k of r.keys) {
          try {
            decodeKey(k);
          } catch {
            throw new Error(`pipeline ${r.pipeline}: ${k.slice(0, 80)} is not an encoded key (a JSON array)`);
          }
        }
        resolved.push({ p, all: r.all, keys: r.keys });
      }
      // A running session's acks would write the acknowledged hashes back over the marks.
      await this.deps.currentSession()?.catch(() => undefined);
      const marked: ResyncReply['marked'] = [];
      for (const r of resolved) {
        const keys = await markForResend(this.deps.db, r.p.name, r.all ? 'all' : r.keys, req.requestId);
        marked.push({ pipeline: r.p.name, keys });
        this.deps.log.info({ pipeline: r.p.name, keys, requestId: req.requestId }, 'resync: keys marked for resend');
      }
      reply = { ...base, marked };
      if (req.now) reply.session = await this.sessionUntil(req.deadline);
    } catch (err) {
      this.deps.log.warn({ err: errorInfo(err), requestId: req.requestId }, 'resync request failed');
      reply = { ...base, error: `site ${req.siteId}: ${(err as Error).message}`.slice(0, 2000), marked: [] };
    }
    await this.answer('resync.reply', reply, m);
  }

  /** A session started now, and how it ended if it did before the asker stops waiting. */
  private async sessionUntil(deadline: number): Promise<NonNullable<ResyncReply['session']>> {
    // A session that began while the keys were being marked may have read them before: a new one.
    const session = (async () => {
      await this.deps.currentSession()?.catch(() => undefined);
      return this.deps.runSession();
    })();
    // Answer a moment before the asker gives up, so that it hears at least that the session started.
    const wait = Math.max(0, deadline - Date.now() - 2000);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), wait)));
    try {
      const r = await Promise.race([session, late]);
      if (r === 'late') return { state: 'started' };
      return {
        state: 'finished',
        sessionId: r.sessionId,
        status: r.status,
        headers: r.totals.headers,
        deletions: r.totals.deletions,
        ...(r.error ? { error: r.error.slice(0, 2000) } : {}),
      };
    } catch (err) {
      return { state: 'failed', error: String((err as Error).message).slice(0, 2000) };
    } finally {
      clearTimeout(timer);
    }
  }

  private expired(deadline: number, m: DecodedMessage): boolean {
    if (Date.now() <= deadline) return false;
    this.deps.log.info({ messageId: m.messageId, type: m.type }, 'request past its deadline: not answered');
    return true;
  }

  private async pipeline(name: string): Promise<ResolvedPipeline | undefined> {
    return (await this.deps.pipelines.resolve()).find((p) => p.name === name);
  }

  /**
   * The pipeline's live headers hashed once per request id: the rounds of one verify share them.
   * At most VERIFY_CACHE_ENTRIES verifies are kept, each for VERIFY_CACHE_MS after it was hashed.
   */
  private hashesOf(requestId: string, p: ResolvedPipeline): Promise<CachedHashes> {
    const now = Date.now();
    for (const [k, entry] of this.cache) if (entry.expires < now) this.cache.delete(k);
    const key = `${requestId}|${p.name}`;
    const known = this.cache.get(key);
    if (known) return known.hashes;
    // The oldest goes first (a Map iterates in insertion order).
    while (this.cache.size >= VERIFY_CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    const hashes = hashHeaders(
      this.deps.db,
      { header: p.header, detail: p.detail, ...(p.config.filter ? { headerFilter: p.config.filter } : {}) },
      p.config.algorithm,
    ).then((h) => ({ hashes: new SortedHashes(h.hashes), details: h.details }));
    const entry = { expires: Number.POSITIVE_INFINITY, hashes };
    this.cache.set(key, entry);
    hashes.then(
      () => (entry.expires = Date.now() + VERIFY_CACHE_MS),
      () => this.cache.delete(key),
    );
    return hashes;
  }

  /** Publishes an answer confirmed and mandatory; when nobody waits for it any more, logs and drops it. */
  private async answer<T extends 'verify.reply' | 'resync.reply'>(
    type: T,
    body: MessageBody<T>,
    request: DecodedMessage,
  ): Promise<void> {
    const encoded = encodeSiteMessage(type, body, this.deps.sender);
    const m: EncodedMessage = {
      ...encoded,
      routingKey: replyRoutingKey(this.deps.sender.siteId, (body as { requestId: string }).requestId),
      options: { ...encoded.options, correlationId: request.messageId },
    };
    try {
      await this.deps.publish(m);
    } catch (err) {
      // syncctl gave up (its reply queue is gone) or the broker went away: the asker times out
      // and asks again; a reply is never retried.
      const unroutable = err instanceof UnroutableError;
      this.deps.log[unroutable ? 'info' : 'warn'](
        { err: errorInfo(err), type, requestId: (body as { requestId: string }).requestId },
        unroutable ? 'reply not delivered: nobody waits for it any more' : 'reply not sent',
      );
    }
  }
}
