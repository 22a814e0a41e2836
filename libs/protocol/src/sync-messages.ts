/**
 * The sync messages: a site's session (`session.started`, its `batch`es, `session.completed`) and the
 * central's answers (`batch.ack`, `session.ack`), with what they carry: the pipeline shape and its
 * column specs, and a batch's header changes, checked by hand where zod's per-value steps cost too
 * much. Also the version-1 batch, still read. The registry of every message type is in messages.ts.
 */
import { z } from 'zod';
import { HASH_ALGORITHMS } from './pipeline';
import type { WireRow, WireValue, WireValues } from './hashing';
import { SiteIdSchema } from './site-id';

const WIRE_VALUE_RULE = 'expected a string, a finite number, a boolean or null';

function isWireValue(v: unknown): v is WireValue {
  return v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
}

/** One value of a key or a row: a JSON scalar (the one rule for both). */
const wireValue = z.custom<WireValue>(isWireValue, { message: WIRE_VALUE_RULE });

/**
 * A row: an object of JSON scalars. Written as one check per row instead of `z.record` of a
 * union, which costs a union check per value: rows are most of a batch (a 100k-header initial
 * load carries 600k rows of ~9 values), and that union was ~14% of the central's CPU there.
 * Issues carry the same paths (`header.<column>`).
 */
const wireRow = z.custom<WireRow>().superRefine((row, ctx) => {
  if (typeof row !== 'object' || row === null || Array.isArray(row)) {
    ctx.addIssue({ code: 'custom', message: 'expected an object of column values' });
    return;
  }
  const values = row as Record<string, unknown>;
  for (const column in values) {
    // JSON.parse makes `"__proto__"` an own key; no column of ours is named so, and a row object
    // with it would be a trap for every later `row[column]`.
    if (column === '__proto__') {
      ctx.addIssue({ code: 'custom', path: [column], message: 'not a column name' });
    } else if (!isWireValue(values[column])) {
      ctx.addIssue({ code: 'custom', path: [column], message: WIRE_VALUE_RULE });
    }
  }
});
const uuid = z.string().uuid();
const isoTime = z.string().datetime({ offset: true });
const count = z.number().int().nonnegative();
const columnName = z.string().min(1).max(128);

export const COLUMN_TYPES = ['integer', 'number', 'text', 'boolean', 'timestamp', 'binary'] as const;
export type ColumnType = (typeof COLUMN_TYPES)[number];

/**
 * The site's column type in full, sent beside the coarse `type` (which every release reads) so that
 * the central can give its column the same type, widened, never narrowed. Optional: sites of
 * earlier releases send none, and a kind this release does not know is read as none.
 */
export const COLUMN_KINDS = [
  'int64',
  'decimal',
  'float64',
  'boolean',
  'text',
  'binary',
  'date',
  'time',
  'timestamp',
  'timestamptz',
  'uuid',
] as const;
export type ColumnKind = (typeof COLUMN_KINDS)[number];

/** The coarse `type` each kind travels with (what a central of an earlier release creates its column from). */
export const COLUMN_TYPE_OF_KIND: Readonly<Record<ColumnKind, ColumnType>> = {
  int64: 'integer',
  decimal: 'number',
  float64: 'number',
  boolean: 'boolean',
  text: 'text',
  binary: 'binary',
  date: 'timestamp',
  time: 'text',
  timestamp: 'timestamp',
  timestamptz: 'timestamp',
  uuid: 'text',
};

export const ColumnSpecSchema = z
  .object({
    name: columnName,
    type: z.enum(COLUMN_TYPES),
    nullable: z.boolean(),
    kind: z.enum(COLUMN_KINDS).optional().catch(undefined),
    /** Most characters (text) or bytes (binary) the site's column holds; absent: unbounded or unknown. */
    length: z.number().int().positive().optional().catch(undefined),
    /** Digits in all and after the point (decimal); absent: unconstrained or unknown. */
    precision: z.number().int().positive().optional().catch(undefined),
    scale: z.number().int().nonnegative().optional().catch(undefined),
  })
  .superRefine((c, ctx) => {
    if (c.kind !== undefined && COLUMN_TYPE_OF_KIND[c.kind] !== c.type) {
      ctx.addIssue({
        code: 'custom',
        path: ['kind'],
        message: `column ${c.name}: kind ${c.kind} travels as type ${COLUMN_TYPE_OF_KIND[c.kind]}, not ${c.type}`,
      });
    }
  });
export type ColumnSpec = z.infer<typeof ColumnSpecSchema>;

/** A table's columns: names unique (rows travel as values in this order). */
const columnSpecs = z
  .array(ColumnSpecSchema)
  .min(1)
  .superRefine((cols, ctx) => {
    const seen = new Set<string>();
    cols.forEach((c, i) => {
      if (seen.has(c.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `column ${c.name} twice` });
      seen.add(c.name);
    });
  });

/** What a pipeline sends: the shape of its header and detail rows, so the central can check or create its tables. */
export const PipelineShapeSchema = z
  .object({
    name: z.string().min(1).max(64),
    algorithm: z.enum(HASH_ALGORITHMS),
    header: z.object({ key: z.array(columnName).min(1), columns: columnSpecs }),
    detail: z
      .object({
        key: z.array(columnName).min(1),
        /** detail column -> header column */
        join: z.record(columnName, columnName),
        columns: columnSpecs,
      })
      .nullable(),
  })
  // Keys and join columns are columns of their table: rows are read and keys bound by them.
  .superRefine((shape, ctx) => {
    /** Reports each of `names` that is not among `columns`; true when all are. */
    const among = (
      names: readonly string[],
      columns: ReadonlyArray<{ name: string }>,
      path: string[],
      what: string,
    ) => {
      // (an empty column list is reported by itself)
      const missing = columns.length > 0 ? names.filter((n) => !columns.some((c) => c.name === n)) : [];
      for (const n of missing) {
        ctx.addIssue({ code: 'custom', path, message: `${what} ${n} is not one of the table's columns` });
      }
      return missing.length === 0;
    };
    // (an empty key is reported by itself)
    const headerKeyKnown =
      among(shape.header.key, shape.header.columns, ['header', 'key'], 'key column') && shape.header.key.length > 0;
    if (!shape.detail) return;
    among(shape.detail.key, shape.detail.columns, ['detail', 'key'], 'key column');
    among(Object.keys(shape.detail.join), shape.detail.columns, ['detail', 'join'], 'join column');
    // Details are found by their header's key: the join maps detail columns onto exactly its columns.
    const targets = Object.values(shape.detail.join);
    const key = shape.header.key;
    if (headerKeyKnown && (targets.length !== key.length || !key.every((k) => targets.includes(k)))) {
      ctx.addIssue({
        code: 'custom',
        path: ['detail', 'join'],
        message: `the join must map detail columns to exactly the header key (${key.join(', ')}), not to ${targets.join(', ') || 'nothing'}`,
      });
    }
  });
export type PipelineShape = z.infer<typeof PipelineShapeSchema>;

const totals = z.object({ batches: count, headers: count, details: count, deletions: count });
export type SessionTotals = z.infer<typeof totals>;

/** `<site>.session.started`: a site begins a sync session. */
export const SessionStartedSchema = z.object({
  sessionId: uuid,
  siteId: SiteIdSchema,
  /** The site's monotonic version for this session; every row it sends carries it. */
  version: z.number().int().positive(),
  startedAt: isoTime,
  pipelines: z.array(PipelineShapeSchema).min(1),
});
export type SessionStarted = z.infer<typeof SessionStartedSchema>;

/**
 * One header with its complete detail set (upsert), or a deletion. Rows are value arrays in the
 * order of the batch's `pipeline` columns (header and detail).
 */
export type HeaderChange =
  | { op: 'upsert'; key: WireValue[]; hash: string; header: WireValues; details: WireValues[] }
  | { op: 'delete'; key: WireValue[] };

const ROW_HASH = /^[0-9a-f]{32,64}$/;

type Issue = (path: Array<string | number>, message: string) => void;

/**
 * Checks one change and returns it with only its own fields (as zod's object schemas would), or
 * undefined after reporting what is wrong through `issue`, with zod's paths (`key.0`, `hash`,
 * `header.3`, `details.1.2`). One walk per change instead of zod's union and object schemas per
 * change and checks per value: a batch carries thousands of changes, and those were ~5% of the
 * central's CPU in a first load.
 */
function readChange(c: unknown, issue: Issue): HeaderChange | undefined {
  let ok = true;
  const fail = (path: Array<string | number>, message: string) => {
    issue(path, message);
    ok = false;
  };
  const isRow = (row: unknown, path: Array<string | number>): row is WireValues => {
    if (!Array.isArray(row)) {
      fail(path, 'expected an array of column values');
      return false;
    }
    for (let i = 0; i < row.length; i++) if (!isWireValue(row[i])) fail([...path, i], WIRE_VALUE_RULE);
    return true;
  };
  if (typeof c !== 'object' || c === null || Array.isArray(c)) {
    issue([], 'expected a change object');
    return undefined;
  }
  const { op, key, hash, header, details } = c as Record<string, unknown>;
  if (op !== 'upsert' && op !== 'delete') {
    issue(['op'], 'expected op "upsert" or "delete"');
    return undefined;
  }
  if (isRow(key, ['key']) && key.length === 0) fail(['key'], 'a key has at least one value');
  if (op === 'delete') return ok ? { op, key: key as WireValue[] } : undefined;
  if (typeof hash !== 'string' || !ROW_HASH.test(hash)) fail(['hash'], 'expected 32-64 lowercase hex digits');
  isRow(header, ['header']);
  if (!Array.isArray(details)) fail(['details'], 'expected an array of rows');
  else for (let j = 0; j < details.length; j++) isRow(details[j], ['details', j]);
  return ok
    ? {
        op,
        key: key as WireValue[],
        hash: hash as string,
        header: header as WireValues,
        details: details as WireValues[],
      }
    : undefined;
}

/** One HeaderChange (see {@link readChange}). */
export const HeaderChangeSchema = z
  .custom<unknown>()
  .transform(
    (c, ctx): HeaderChange =>
      readChange(c, (path, message) => ctx.issues.push({ code: 'custom', input: c, path, message })) ?? z.NEVER,
  );

/** A batch's changes, at least one: one check for the whole list (zod's per-element steps cost ~1 µs each). */
const changeList = z.custom<unknown>().transform((list, ctx): HeaderChange[] => {
  const issue: Issue = (path, message) => ctx.issues.push({ code: 'custom', input: list, path, message });
  if (!Array.isArray(list)) {
    issue([], 'expected an array of changes');
    return z.NEVER;
  }
  if (list.length === 0) issue([], 'a batch carries at least one change');
  const out: HeaderChange[] = [];
  for (let i = 0; i < list.length; i++) {
    const c = readChange(list[i], (path, message) => issue([i, ...path], message));
    if (c) out.push(c);
  }
  return out;
});

/** A batch's fields other than its changes: the same in every schema version. */
const batchFields = {
  sessionId: uuid,
  siteId: SiteIdSchema,
  /** The pipeline's shape travels with every batch, so batches can be merged in any order by any consumer. */
  pipeline: PipelineShapeSchema,
  version: z.number().int().positive(),
  seq: count,
};

/** `<site>.batch`: a bounded slice of one pipeline's changes. */
export const BatchSchema = z.object({ ...batchFields, changes: changeList }).superRefine((b, ctx) => {
  // Each row holds one value per column of its table, in the shape's order.
  const headerColumns = b.pipeline.header.columns.length;
  const detailColumns = b.pipeline.detail?.columns.length ?? 0;
  b.changes.forEach((c, i) => {
    if (c.op !== 'upsert') return;
    if (c.header.length !== headerColumns) {
      ctx.addIssue({
        code: 'custom',
        path: ['changes', i, 'header'],
        message: `${c.header.length} values for the pipeline's ${headerColumns} header columns`,
      });
    }
    const bad = c.details.findIndex((d) => d.length !== detailColumns);
    if (bad >= 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['changes', i, 'details', bad],
        message: b.pipeline.detail
          ? `${c.details[bad]!.length} values for the pipeline's ${detailColumns} detail columns`
          : 'the pipeline has no detail table',
      });
    }
  });
});
export type HeaderBatch = z.infer<typeof BatchSchema>;

/**
 * A batch as schema version 1 wrote it (rows as objects of column -> value), read for sites not
 * upgraded yet and for version-1 dead letters replayed after an upgrade. It decodes into the
 * current form: each row's values in the shape's column order. A row whose columns are not
 * exactly the shape's is refused, as before.
 */
export const BatchSchemaV1 = z
  .object({
    ...batchFields,
    changes: z
      .array(
        z.discriminatedUnion('op', [
          z.object({
            op: z.literal('upsert'),
            key: z.array(wireValue).min(1),
            hash: z.string().regex(ROW_HASH),
            header: wireRow,
            details: z.array(wireRow),
          }),
          z.object({ op: z.literal('delete'), key: z.array(wireValue).min(1) }),
        ]),
      )
      .min(1),
  })
  .transform((b, ctx): HeaderBatch => {
    const headerColumns = b.pipeline.header.columns.map((c) => c.name);
    const detailColumns = b.pipeline.detail?.columns.map((c) => c.name) ?? [];
    const values = (row: WireRow, columns: readonly string[], path: Array<string | number>): WireValues => {
      const keys = Object.keys(row);
      if (keys.length !== columns.length || !columns.every((c) => Object.hasOwn(row, c))) {
        ctx.addIssue({ code: 'custom', path, message: "columns are not the pipeline's" });
      }
      return columns.map((c) => row[c] ?? null);
    };
    const changes = b.changes.map((c, i): HeaderChange => {
      if (c.op !== 'upsert') return c;
      return {
        op: 'upsert',
        key: c.key,
        hash: c.hash,
        header: values(c.header, headerColumns, ['changes', i, 'header']),
        details: c.details.map((d, j) => values(d, detailColumns, ['changes', i, 'details', j])),
      };
    });
    return { ...b, changes };
  });

/** `<site>.session.completed`: everything of the session has been published (and confirmed). */
export const SessionCompletedSchema = z.object({
  sessionId: uuid,
  siteId: SiteIdSchema,
  version: z.number().int().positive(),
  startedAt: isoTime,
  finishedAt: isoTime,
  totals,
});
export type SessionCompleted = z.infer<typeof SessionCompletedSchema>;

/** `<site>.batch.ack` (central -> site): the batch is committed centrally. */
export const BatchAckSchema = z.object({
  sessionId: uuid,
  siteId: SiteIdSchema,
  pipeline: z.string(),
  batchMessageId: uuid,
  /** `duplicate` when the batch had already been merged (redelivery); the site treats both alike. */
  status: z.enum(['applied', 'duplicate']),
  headers: count,
  details: count,
  deletions: count,
  /** Headers not written because the central already held a newer version of them. */
  stale: count,
});
export type BatchAck = z.infer<typeof BatchAckSchema>;

/** Why the central refused a whole session of a site (see {@link SessionAckSchema}'s `refused`). */
export const SESSION_REFUSAL_REASONS = ['unknown-site', 'site-disabled'] as const;
export type SessionRefusalReason = (typeof SESSION_REFUSAL_REASONS)[number];

/**
 * `<site>.session.ack` (central -> site): the totals of `session.completed` were checked. Or the
 * session was refused as a whole (`refused` set, status `incomplete`, nothing received): the site
 * is not registered or is disabled, and every message of the session is dead-lettered. `refused`
 * is optional and the status one an older agent knows, so the body keeps schema version 1: an
 * agent of the previous release reads it as an incomplete session.
 */
export const SessionAckSchema = z.object({
  sessionId: uuid,
  siteId: SiteIdSchema,
  status: z.enum(['complete', 'incomplete']),
  expected: totals,
  received: totals,
  /** Batches of this session that were dead-lettered. */
  rejectedBatches: count,
  refused: z
    .object({
      reason: z.enum(SESSION_REFUSAL_REASONS),
      /** The central's explanation, for the site's log. */
      message: z.string().max(1000),
      /** With `unknown-site` for a registered site: the pipelines of the session it has no row for. */
      pipelines: z.array(z.string().max(64)).max(100).optional(),
    })
    .optional(),
});
export type SessionAck = z.infer<typeof SessionAckSchema>;
