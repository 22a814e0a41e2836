import { z } from 'zod';

export const HASH_ALGORITHMS = ['md5', 'sha1', 'sha256'] as const;
export type HashAlgorithm = (typeof HASH_ALGORITHMS)[number];

export const DEFAULT_HASH_ALGORITHM: HashAlgorithm = 'md5';
export const DEFAULT_FIELD_SOURCE_HASH = 'SourceHash';
export const DEFAULT_FIELD_TARGET_HASH = 'TargetHash';
export const DEFAULT_FIELD_SYNC_HASH = 'IsSync';

const identifier = z.string().min(1).max(128);

/** A related (detail) table and how its rows join to the header: `{ detailColumn: headerColumn }`. */
export const LinkEntitySchema = z
  .object({
    entity: identifier,
    join: z.record(identifier, identifier).refine((j) => Object.keys(j).length > 0, 'join needs at least one column'),
    /** Columns that identify a detail row within its header; defaults to the table's primary key. */
    key: z.array(identifier).min(1).optional(),
  })
  .strict();

/**
 * The pipeline "hashing file" (docs/protocol.md "Hashing file"). Keys follow the seed document (Algorithm, BaseEntity,
 * LinkEntities, Attributes, Filter, FieldSourceHash/FieldTargetHash/FieldSyncHash), in camelCase.
 */
export const HashingFileSchema = z
  .object({
    /** Pipeline name, unique per site; also names the `EstadoSyncGeneral` row's pipeline. */
    name: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ and - only')
      .default('main'),
    /** @default 'md5' */
    algorithm: z.enum(HASH_ALGORITHMS).default(DEFAULT_HASH_ALGORITHM),
    /** The header table. */
    baseEntity: identifier,
    /** Header key columns; defaults to the base table's primary key. */
    key: z.array(identifier).min(1).optional(),
    /**
     * Related tables. The seed document lists the base entity itself here; a plain string equal to
     * `baseEntity` is accepted and ignored. At most one detail table per pipeline.
     */
    linkEntities: z.array(z.union([identifier, LinkEntitySchema])).default([]),
    /** Columns that make up the hash (`column` or `table.column`); changes elsewhere are ignored. @default all */
    attributes: z.array(identifier).optional(),
    /** SQL condition on the base table (trusted configuration, like hooks) selecting the rows that take part. */
    filter: z.string().min(1).optional(),
    /**
     * `triggers`: triggers on the header and detail tables queue the keys of changed rows, and a
     * session reads only those (plus a full scan every `fullScanHours`, and once after the triggers
     * are installed). `none`: every session re-hashes the whole table (staging tables that are
     * recreated every run cannot carry triggers). @default 'none'
     */
    changeTracking: z.enum(['none', 'triggers']).default('none'),
    /** With change tracking, a full re-hash at most this many hours apart, as a safety net; 0 = never. @default 24 */
    fullScanHours: z.number().min(0).default(24),
    fieldSourceHash: identifier.default(DEFAULT_FIELD_SOURCE_HASH),
    fieldTargetHash: identifier.default(DEFAULT_FIELD_TARGET_HASH),
    fieldSyncHash: identifier.default(DEFAULT_FIELD_SYNC_HASH),
  })
  .strict();

export type HashingFile = z.infer<typeof HashingFileSchema>;
export type HashingFileInput = z.input<typeof HashingFileSchema>;
export type LinkEntity = z.infer<typeof LinkEntitySchema>;
