import { encodeKey, toWireRow, type WireValue } from '@sitesync/protocol';
import type { Database, Queryable } from './database';
import type { Dialect } from './dialects';
import type { ResolvedPipeline } from './pipeline-resolver';

/**
 * Trigger-kept change tracking: triggers on a pipeline's header and detail tables write the header
 * key of every inserted, updated or deleted row into a queue table (`sync_dirty_<pipeline>`), so a
 * session reads only those headers instead of re-hashing the whole table. The hash still decides
 * what is sent; the queue only picks candidates. A periodic full scan remains as a safety net.
 */

/** When each pipeline's triggers were installed and its last full scan ran. */
export const TRACKING_TABLE = 'sync_tracking';
/** The queue column set by the session that took the entry (NULL until taken). */
const CLAIM = 'claimed_by';

export function dirtyTableName(pipeline: string): string {
  return `sync_dirty_${pipeline.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

function triggerName(pipeline: string, table: string, event: string): string {
  return `sync_trg_${pipeline}_${table}_${event}`.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 120);
}

interface TrackedTable {
  table: string;
  /** Columns of this table that hold the header key, in header-key order. */
  keyColumns: readonly string[];
}

function trackedTables(p: ResolvedPipeline): TrackedTable[] {
  const out: TrackedTable[] = [{ table: p.header.table, keyColumns: p.header.key }];
  if (p.detail) out.push({ table: p.detail.table, keyColumns: p.detail.joinColumns });
  return out;
}

/**
 * Creates the queue table and the triggers of a pipeline (idempotent). Returns true when they
 * were not all there before: the caller must then run a full scan once, since changes made before
 * the triggers existed are not in the queue.
 */
export async function installChangeTracking(db: Database, p: ResolvedPipeline): Promise<boolean> {
  const d = db.dialect;
  const q = (n: string) => d.quote(n);
  const dirty = dirtyTableName(p.name);
  await db.query(
    d.createTableIfMissing(
      TRACKING_TABLE,
      [
        {
          name: 'pipeline',
          type: d.columnType({ name: 'pipeline', type: 'text', nullable: false }, true),
          nullable: false,
        },
        { name: 'installed_at', type: d.timestampType(), nullable: false },
        { name: 'last_full_scan_at', type: d.timestampType(), nullable: true },
      ],
      ['pipeline'],
    ),
  );
  const keySpecs = p.header.key.map((k) => p.header.specs.find((s) => s.name === k)!);
  await db.query(
    d.createTableIfMissing(
      dirty,
      [
        ...keySpecs.map((s) => ({ name: s.name, type: d.columnType(s, true), nullable: true })),
        { name: CLAIM, type: d.bigintType(), nullable: true },
      ],
      [],
    ),
  );
  const known = await db.query<{ pipeline: string }>(`SELECT pipeline FROM ${q(TRACKING_TABLE)} WHERE pipeline = ?`, [
    p.name,
  ]);
  const schema =
    d.name === 'postgres' ? (await db.query<{ s: string }>(`SELECT current_schema() AS s`))[0]?.s : undefined;
  for (const sql of changeTrackingTriggers(d, p, schema)) await db.query(sql);
  if (known.length) return false;
  await db.execute(`INSERT INTO ${q(TRACKING_TABLE)} (pipeline, installed_at) VALUES (?, ?)`, [p.name, d.now()]);
  return true;
}

/** Whether a pipeline's change tracking is installed (its `sync_tracking` row exists). */
export async function changeTrackingInstalled(db: Database, pipeline: string): Promise<boolean> {
  if (!(await db.describeTable(TRACKING_TABLE))) return false;
  const rows = await db.query(`SELECT pipeline FROM ${db.dialect.quote(TRACKING_TABLE)} WHERE pipeline = ?`, [
    pipeline,
  ]);
  return rows.length > 0;
}

/** Removes a pipeline's triggers and queue (the agent falls back to full scans). */
export async function uninstallChangeTracking(db: Database, p: ResolvedPipeline): Promise<void> {
  const d = db.dialect;
  for (const t of trackedTables(p)) {
    for (const event of d.name === 'mssql' || d.name === 'postgres' ? ['all'] : ['ins', 'upd', 'del']) {
      const name = d.quote(triggerName(p.name, t.table, event));
      await db.query(`DROP TRIGGER IF EXISTS ${name}${d.name === 'postgres' ? ` ON ${d.quote(t.table)}` : ''}`);
    }
    if (d.name === 'postgres')
      await db.query(`DROP FUNCTION IF EXISTS ${d.quote(triggerName(p.name, t.table, 'fn'))}()`);
  }
  await db.query(`DROP TABLE IF EXISTS ${d.quote(dirtyTableName(p.name))}`);
  await db.execute(`DELETE FROM ${d.quote(TRACKING_TABLE)} WHERE pipeline = ?`, [p.name]);
}

/**
 * The statements that create (or replace) a pipeline's triggers on its header and detail tables,
 * in the dialect's own form. `schema`: where the queue table lives when the triggers may fire in
 * sessions with another search path (PostgreSQL).
 */
export function changeTrackingTriggers(d: Dialect, p: ResolvedPipeline, schema?: string): string[] {
  return trackedTables(p).flatMap((t) => triggerSql(d, p, t, dirtyTableName(p.name), schema));
}

function triggerSql(d: Dialect, p: ResolvedPipeline, t: TrackedTable, dirty: string, schema?: string): string[] {
  const q = (n: string) => d.quote(n);
  const target = schema ? `${q(schema)}.${q(dirty)}` : q(dirty);
  const cols = p.header.key.map(q).join(', ');
  const vals = (row: string) => t.keyColumns.map((c) => `${row}.${q(c)}`).join(', ');
  const name = (event: string) => q(triggerName(p.name, t.table, event));
  switch (d.name) {
    case 'sqlite':
      return [
        `CREATE TRIGGER IF NOT EXISTS ${name('ins')} AFTER INSERT ON ${q(t.table)} BEGIN INSERT INTO ${target} (${cols}) VALUES (${vals('NEW')}); END`,
        `CREATE TRIGGER IF NOT EXISTS ${name('upd')} AFTER UPDATE ON ${q(t.table)} BEGIN INSERT INTO ${target} (${cols}) VALUES (${vals('NEW')}); INSERT INTO ${target} (${cols}) SELECT ${vals('OLD')} WHERE ${t.keyColumns.map((c) => `OLD.${q(c)} IS NOT NEW.${q(c)}`).join(' OR ')}; END`,
        `CREATE TRIGGER IF NOT EXISTS ${name('del')} AFTER DELETE ON ${q(t.table)} BEGIN INSERT INTO ${target} (${cols}) VALUES (${vals('OLD')}); END`,
      ];
    case 'mysql':
      // MySQL has no CREATE TRIGGER IF NOT EXISTS before 8.0.29 and MariaDB has it: drop and create.
      return [
        `DROP TRIGGER IF EXISTS ${name('ins')}`,
        `CREATE TRIGGER ${name('ins')} AFTER INSERT ON ${q(t.table)} FOR EACH ROW INSERT INTO ${target} (${cols}) VALUES (${vals('NEW')})`,
        `DROP TRIGGER IF EXISTS ${name('upd')}`,
        `CREATE TRIGGER ${name('upd')} AFTER UPDATE ON ${q(t.table)} FOR EACH ROW INSERT INTO ${target} (${cols}) VALUES (${vals('NEW')}), (${vals('OLD')})`,
        `DROP TRIGGER IF EXISTS ${name('del')}`,
        `CREATE TRIGGER ${name('del')} AFTER DELETE ON ${q(t.table)} FOR EACH ROW INSERT INTO ${target} (${cols}) VALUES (${vals('OLD')})`,
      ];
    case 'postgres': {
      const fn = schema ? `${q(schema)}.${name('fn')}` : name('fn');
      return [
        `CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ` +
          `IF TG_OP IN ('INSERT', 'UPDATE') THEN INSERT INTO ${target} (${cols}) VALUES (${vals('NEW')}); END IF; ` +
          `IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND (${t.keyColumns.map((c) => `OLD.${q(c)}`).join(', ')}) IS DISTINCT FROM (${t.keyColumns.map((c) => `NEW.${q(c)}`).join(', ')})) ` +
          `THEN INSERT INTO ${target} (${cols}) VALUES (${vals('OLD')}); END IF; RETURN NULL; END $$`,
        `DROP TRIGGER IF EXISTS ${name('all')} ON ${q(t.table)}`,
        `CREATE TRIGGER ${name('all')} AFTER INSERT OR UPDATE OR DELETE ON ${q(t.table)} FOR EACH ROW EXECUTE FUNCTION ${fn}()`,
      ];
    }
    case 'mssql':
      return [
        `CREATE OR ALTER TRIGGER ${name('all')} ON ${q(t.table)} AFTER INSERT, UPDATE, DELETE AS BEGIN SET NOCOUNT ON; ` +
          `INSERT INTO ${target} (${cols}) SELECT ${t.keyColumns.map(q).join(', ')} FROM inserted ` +
          `UNION SELECT ${t.keyColumns.map(q).join(', ')} FROM deleted; END`,
      ];
  }
}

/**
 * Takes every queued change not taken yet (marking it with the session's `version`), and returns
 * the distinct header keys taken by this or an earlier session that did not finish (a crashed
 * session's claims are read again: the hash decides what is re-sent).
 */
export async function claimChangedKeys(db: Database, p: ResolvedPipeline, version: number): Promise<WireValue[][]> {
  const d = db.dialect;
  const q = (n: string) => d.quote(n);
  const dirty = q(dirtyTableName(p.name));
  await db.execute(`UPDATE ${dirty} SET ${q(CLAIM)} = ? WHERE ${q(CLAIM)} IS NULL`, [version]);
  const rows = await db.query<Record<string, unknown>>(
    `SELECT DISTINCT ${p.header.key.map(q).join(', ')} FROM ${dirty} WHERE ${q(CLAIM)} IS NOT NULL`,
  );
  const seen = new Set<string>();
  const out: WireValue[][] = [];
  for (const r of rows) {
    const w = toWireRow(r, p.header.key);
    const key = p.header.key.map((k) => w[k]!);
    const e = encodeKey(key);
    if (seen.has(e)) continue;
    seen.add(e);
    out.push(key);
  }
  return out;
}

/**
 * Forgets the queue entries taken so far (by this session, or by one that died): the scan that
 * read them is finished. Entries queued since stay (taken by the next session). Sessions of a site
 * never overlap (the session lock), so no other session's claims are lost.
 */
export async function releaseChangedKeys(tx: Queryable, p: ResolvedPipeline): Promise<void> {
  const q = (n: string) => tx.dialect.quote(n);
  await tx.execute(`DELETE FROM ${q(dirtyTableName(p.name))} WHERE ${q(CLAIM)} IS NOT NULL`);
}

/** When the last full scan of a pipeline ran (undefined: never, or no tracking). */
export async function lastFullScan(db: Database, pipeline: string): Promise<Date | undefined> {
  const rows = await db.query<{ t: unknown }>(
    `SELECT last_full_scan_at AS t FROM ${db.dialect.quote(TRACKING_TABLE)} WHERE pipeline = ?`,
    [pipeline],
  );
  const v = rows[0]?.t;
  if (v === null || v === undefined) return undefined;
  const t = v instanceof Date ? v : new Date(String(v));
  return Number.isNaN(t.getTime()) ? undefined : t;
}

export async function recordFullScan(db: Queryable, pipeline: string): Promise<void> {
  await db.execute(`UPDATE ${db.dialect.quote(TRACKING_TABLE)} SET last_full_scan_at = ? WHERE pipeline = ?`, [
    db.dialect.now(),
    pipeline,
  ]);
}
