import {
  ConfigError,
  HashingFileSchema,
  type ColumnSpec,
  type HashingFile,
  type HashingFileInput,
  type PipelineShape,
} from '@sitesync/protocol';
import type { Database, TableInfo } from './database';

/** One side (header or detail) of a pipeline, checked against the live schema. */
export interface ResolvedEntity {
  table: string;
  key: string[];
  /** Columns sent (and hashed): key, join and attribute columns, in table order. */
  columns: string[];
  specs: ColumnSpec[];
  /** The columns' types as the catalogue names them (`money`, `datetime2`), in `columns` order: how to read each exactly. */
  dbTypes: string[];
}

export interface ResolvedDetail extends ResolvedEntity {
  /** detail column -> header column */
  join: Record<string, string>;
  /** Detail columns matching the header key, in header-key order. */
  joinColumns: string[];
}

/** A pipeline whose every table and column name was found in the database. */
export interface ResolvedPipeline {
  name: string;
  config: HashingFile;
  header: ResolvedEntity;
  detail: ResolvedDetail | null;
  /** SourceHash/TargetHash/IsSync columns present in the base table, maintained there too. */
  inTable: { source?: string; target?: string; sync?: string };
  shape: PipelineShape;
}

function fail(key: string, message: string): never {
  throw new ConfigError(`${key}: ${message}`, key);
}

async function loadTable(db: Database, name: string, key: string): Promise<TableInfo> {
  if (name.includes('.')) {
    fail(
      key,
      `${JSON.stringify(name)}: schema-qualified names are not supported; name the schema in the database URL (?schema=)`,
    );
  }
  const info = await db.describeTable(name);
  if (!info) {
    const all = await db.tableNames().catch(() => []);
    const near = all.find(
      (t) => t.toLowerCase() === name.toLowerCase() || t.toLowerCase().endsWith(`.${name.toLowerCase()}`),
    );
    fail(key, `table ${JSON.stringify(name)} does not exist${near ? ` (did you mean ${JSON.stringify(near)}?)` : ''}`);
  }
  return info;
}

function column(info: TableInfo, name: string, key: string): void {
  if (!info.columns.some((c) => c.name === name)) {
    fail(key, `column ${JSON.stringify(name)} does not exist in table ${JSON.stringify(info.name)}`);
  }
}

/**
 * Validates a hashing file and resolves it against the live schema. Every name is checked, so SQL
 * built from the result only ever quotes names that exist.
 */
export async function resolvePipeline(
  db: Database,
  input: HashingFileInput | HashingFile,
  keyPrefix = 'pipelines[0]',
): Promise<ResolvedPipeline> {
  const parsed = HashingFileSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    fail(`${keyPrefix}${issue?.path.length ? '.' + issue.path.join('.') : ''}`, issue?.message ?? 'invalid');
  }
  const cfg = parsed.data;
  const base = await loadTable(db, cfg.baseEntity, `${keyPrefix}.baseEntity`);
  const links = cfg.linkEntities.filter((l) => !(typeof l === 'string' && l === cfg.baseEntity));
  if (links.some((l) => typeof l === 'string')) {
    fail(
      `${keyPrefix}.linkEntities`,
      'a related table needs { "entity", "join" } (only the base entity may be a plain name)',
    );
  }
  if (links.length > 1)
    fail(`${keyPrefix}.linkEntities`, 'one detail table per pipeline (EstadoSyncGeneral has one tabla_detalle)');
  const link = links[0] as Exclude<(typeof links)[number], string> | undefined;

  const headerKey = cfg.key ?? base.primaryKey;
  if (headerKey.length === 0)
    fail(`${keyPrefix}.key`, `table ${JSON.stringify(base.name)} has no primary key; set "key"`);
  headerKey.forEach((c, i) => column(base, c, `${keyPrefix}.key[${i}]`));

  let det: TableInfo | undefined;
  let detailKey: string[] = [];
  const joinColumns: string[] = [];
  if (link) {
    det = await loadTable(db, link.entity, `${keyPrefix}.linkEntities.entity`);
    for (const [dc, hc] of Object.entries(link.join)) {
      column(det, dc, `${keyPrefix}.linkEntities.join`);
      column(base, hc, `${keyPrefix}.linkEntities.join`);
    }
    const joinTargets = Object.values(link.join);
    if (joinTargets.length !== headerKey.length || !headerKey.every((k) => joinTargets.includes(k))) {
      fail(
        `${keyPrefix}.linkEntities.join`,
        `must map detail columns to exactly the header key (${headerKey.join(', ')})`,
      );
    }
    for (const k of headerKey) joinColumns.push(Object.entries(link.join).find(([, hc]) => hc === k)![0]);
    detailKey = link.key ?? det.primaryKey;
    if (detailKey.length === 0)
      fail(`${keyPrefix}.linkEntities.key`, `table ${JSON.stringify(det.name)} has no primary key; set "key"`);
    detailKey.forEach((c, i) => column(det!, c, `${keyPrefix}.linkEntities.key[${i}]`));
  }

  const hashFields = new Set([cfg.fieldSourceHash, cfg.fieldTargetHash, cfg.fieldSyncHash]);
  let headerAttrs: string[];
  let detailAttrs: string[];
  if (!cfg.attributes) {
    headerAttrs = base.columns.map((c) => c.name).filter((c) => !hashFields.has(c));
    detailAttrs = det ? det.columns.map((c) => c.name).filter((c) => !hashFields.has(c)) : [];
  } else {
    headerAttrs = [];
    detailAttrs = [];
    cfg.attributes.forEach((a, i) => {
      const k = `${keyPrefix}.attributes[${i}]`;
      const dot = a.lastIndexOf('.');
      const [table, col] = dot > 0 ? [a.slice(0, dot), a.slice(dot + 1)] : [undefined, a];
      const inBase = base.columns.some((c) => c.name === col);
      const inDet = det?.columns.some((c) => c.name === col) ?? false;
      if (table !== undefined) {
        if (table === base.name || table === cfg.baseEntity) {
          column(base, col, k);
          headerAttrs.push(col);
        } else if (det && (table === det.name || table === link?.entity)) {
          column(det, col, k);
          detailAttrs.push(col);
        } else fail(k, `table ${JSON.stringify(table)} is not part of this pipeline`);
      } else if (inBase) headerAttrs.push(col);
      else if (inDet) detailAttrs.push(col);
      else fail(k, `column ${JSON.stringify(col)} exists in no table of this pipeline`);
    });
  }

  cfg.attributes?.forEach((a, i) => {
    if (hashFields.has(a.slice(a.lastIndexOf('.') + 1))) {
      fail(`${keyPrefix}.attributes[${i}]`, `${JSON.stringify(a)} is a hash field; it cannot be part of the hash`);
    }
  });
  const ordered = (info: TableInfo, wanted: Set<string>) =>
    info.columns.map((c) => c.name).filter((c) => wanted.has(c));
  const headerCols = ordered(base, new Set([...headerKey, ...headerAttrs]));
  const specOf = (info: TableInfo, cols: string[]): ColumnSpec[] =>
    cols.map((n) => {
      const c = info.columns.find((x) => x.name === n)!;
      const spec: ColumnSpec = { name: n, type: c.type, nullable: c.nullable };
      if (c.kind !== undefined) spec.kind = c.kind;
      if (c.length !== undefined) spec.length = c.length;
      if (c.precision !== undefined) spec.precision = c.precision;
      if (c.scale !== undefined) spec.scale = c.scale;
      return spec;
    });
  const dbTypesOf = (info: TableInfo, cols: string[]): string[] =>
    cols.map((n) => info.columns.find((x) => x.name === n)!.dbType);
  const header: ResolvedEntity = {
    table: base.name,
    key: headerKey,
    columns: headerCols,
    specs: specOf(base, headerCols),
    dbTypes: dbTypesOf(base, headerCols),
  };
  let detail: ResolvedDetail | null = null;
  if (det && link) {
    const cols = ordered(det, new Set([...detailKey, ...joinColumns, ...detailAttrs]));
    detail = {
      table: det.name,
      key: detailKey,
      columns: cols,
      specs: specOf(det, cols),
      dbTypes: dbTypesOf(det, cols),
      join: link.join,
      joinColumns,
    };
  }
  const has = (c: string) => base.columns.some((x) => x.name === c);
  const inTable = {
    ...(has(cfg.fieldSourceHash) ? { source: cfg.fieldSourceHash } : {}),
    ...(has(cfg.fieldTargetHash) ? { target: cfg.fieldTargetHash } : {}),
    ...(has(cfg.fieldSyncHash) ? { sync: cfg.fieldSyncHash } : {}),
  };
  if (cfg.filter !== undefined && /;|--|\/\*/.test(cfg.filter)) {
    fail(`${keyPrefix}.filter`, 'must be a single condition (no ";", "--" or "/*")');
  }
  return {
    name: cfg.name,
    config: cfg,
    header,
    detail,
    inTable,
    shape: {
      name: cfg.name,
      algorithm: cfg.algorithm,
      header: { key: headerKey, columns: header.specs },
      detail: detail ? { key: detailKey, join: detail.join, columns: detail.specs } : null,
    },
  };
}
