/**
 * Verify and repair over the broker: `syncctl verify --site` asks a site for digests of its headers
 * by key range (`verify.request` / `verify.reply`), and `syncctl resync` makes it forget what the
 * central acknowledged for some keys (`resync.request` / `resync.reply`). Requests go down like
 * every order of the central; a site answers on `sync.up` under `<siteId>.reply.<requestId>`, which
 * only the asking syncctl's reply queue is bound to (see docs/protocol.md).
 */
import { z } from 'zod';
import { PipelineShapeSchema } from './sync-messages';
import { SiteIdSchema } from './site-id';
import { MAX_VERIFY_FANOUT, MAX_VERIFY_LEAF_SIZE, MAX_VERIFY_RANGES } from './range-digest';

/** Most keys one resync request names (per pipeline). */
export const MAX_RESYNC_KEYS = 100_000;
/** Longest encoded key a verify or resync message carries (the side table holds 400 characters). */
const MAX_ENCODED_KEY_LENGTH = 400;

const uuid = z.string().uuid();
const count = z.number().int().nonnegative();
const pipelineName = z.string().min(1).max(64);
const encodedKey = z.string().min(2).max(MAX_ENCODED_KEY_LENGTH);
const bound = encodedKey.nullable();
const rowHash = z.string().regex(/^[0-9a-f]{32,128}$/, 'expected a hex digest');
const digest = z.string().regex(/^[0-9a-f]{64}$/, 'expected a sha256 hex digest');
/** Epoch milliseconds after which the asker no longer waits: a site drops a request past it. */
const deadline = z.number().int().positive();

const keyRange = z.object({ lo: bound, hi: bound });
const rangeSummary = z.object({ lo: bound, hi: bound, count, digest });

/** `<site>.verify.request`: the digests of these key ranges of one pipeline, split or listed. */
export const VerifyRequestSchema = z.object({
  requestId: uuid,
  siteId: SiteIdSchema,
  pipeline: pipelineName,
  /** 0 for the first request of a verify; the reply repeats it. */
  round: z.number().int().nonnegative().max(1000),
  deadline,
  /** Split a range of more than `leafSize` headers into at most this many sub-ranges. */
  fanout: z.number().int().min(2).max(MAX_VERIFY_FANOUT),
  /** List the `(key, hash)` pairs of a range of at most this many headers. */
  leafSize: z.number().int().min(1).max(MAX_VERIFY_LEAF_SIZE),
  ranges: z.array(keyRange).min(1).max(MAX_VERIFY_RANGES),
});

/** One requested range as the site holds it: its summary, and either its sub-ranges or its entries. */
export const VerifiedRangeSchema = rangeSummary.extend({
  parts: z.array(rangeSummary).min(1).max(MAX_VERIFY_FANOUT).optional(),
  entries: z
    .array(z.tuple([encodedKey, rowHash]))
    .max(MAX_VERIFY_LEAF_SIZE)
    .optional(),
});

/** `<site>.reply.<requestId>` of type `verify.reply`: the requested ranges, in the request's order. */
export const VerifyReplySchema = z.object({
  requestId: uuid,
  siteId: SiteIdSchema,
  pipeline: pipelineName,
  round: z.number().int().nonnegative().max(1000),
  /** Why the site could not answer (unknown pipeline, database error); no ranges then. */
  error: z.string().max(2000).optional(),
  /** Round 0: the pipeline's shape as the site hashes it (the central reads its rows by it). */
  shape: PipelineShapeSchema.optional(),
  /** Round 0: the site's detail lines in the pipeline. */
  details: count.optional(),
  ranges: z.array(VerifiedRangeSchema).max(MAX_VERIFY_RANGES),
});

/** `<site>.resync.request`: forget what the central acknowledged for these keys (or all) and send them again. */
export const ResyncRequestSchema = z.object({
  requestId: uuid,
  siteId: SiteIdSchema,
  deadline,
  pipelines: z
    .array(
      z.object({
        pipeline: pipelineName,
        /** Every header the site knows in this pipeline. */
        all: z.boolean(),
        /** Encoded header keys; a key the site does not have is sent as a deletion. */
        keys: z.array(encodedKey).max(MAX_RESYNC_KEYS),
      }),
    )
    .min(1)
    .max(32),
  /** Start a session at once, and answer when it ended (or with `started` at the deadline). */
  now: z.boolean(),
});

/** `<site>.reply.<requestId>` of type `resync.reply`: what the site marked, and the session it ran. */
export const ResyncReplySchema = z.object({
  requestId: uuid,
  siteId: SiteIdSchema,
  error: z.string().max(2000).optional(),
  marked: z.array(z.object({ pipeline: pipelineName, keys: count })).max(32),
  session: z
    .object({
      state: z.enum(['finished', 'started', 'failed']),
      sessionId: uuid.optional(),
      status: z.string().max(64).optional(),
      headers: count.optional(),
      deletions: count.optional(),
      error: z.string().max(2000).optional(),
    })
    .optional(),
});

export type VerifyRequest = z.infer<typeof VerifyRequestSchema>;
export type VerifyReply = z.infer<typeof VerifyReplySchema>;
export type VerifiedRange = z.infer<typeof VerifiedRangeSchema>;
export type ResyncRequest = z.infer<typeof ResyncRequestSchema>;
export type ResyncReply = z.infer<typeof ResyncReplySchema>;

/** The routing key a site answers request `requestId` under (on `sync.up`; its user may write `<siteId>.*`). */
export function replyRoutingKey(siteId: number, requestId: string): string {
  return `${siteId}.reply.${requestId}`;
}
