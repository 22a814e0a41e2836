import { ORDER_COLUMNS, ORDERS_TABLE, RESULT_COLUMNS, RESULTS_TABLE, labDdl } from '../lab-data.js';
import { paramBytes, type RawDb, type RawPg, type RawSqlite } from '../raw-db.js';
import { since } from '../stats.js';

export interface LegacyCycle {
  seconds: number;
  /** Site -> central: recreate the staging tables and bulk-insert every row. */
  uploadSeconds: number;
  /** Central job: upsert everything into the final tables, delete vanished rows, update EstadoSyncGeneral. */
  mergeSeconds: number;
  /** Row data bytes that crossed from site to central (see docs/benchmarks.md). */
  bytes: number;
  headers: number;
  details: number;
}

const PIPELINE = 'legacy';

/**
 * One cycle of the system sitesync replaces, done as efficiently as its design allows:
 * 1. the site drops and recreates its staging tables on the central database, named from its
 *    `EstadoSyncGeneral` row (`tabla_encabezado` / `tabla_detalle` + `_site<id>`), and bulk-inserts
 *    every header and detail (PostgreSQL: `COPY TO` streamed into `COPY FROM`, like a linked-server
 *    copy; SQLite: prepared inserts in one transaction);
 * 2. the central job copies all of it into the final tables with an idempotent upsert, deletes the
 *    rows that vanished at the site, and updates `EstadoSyncGeneral`, in one transaction.
 * `central` is the site script's connection to the central database (over the hospital link in the
 * `wan` measurement); `centralJob` is the central job's own, local one (by default the same).
 */
export async function legacyCycle(
  site: RawDb,
  central: RawDb,
  siteId: number,
  centralJob: RawDb = central,
): Promise<LegacyCycle> {
  const now = () => (central.dialect === 'sqlite' ? new Date().toISOString() : new Date());
  const t0 = performance.now();
  const names = await central.all<{ tabla_encabezado: string; tabla_detalle: string }>(
    `SELECT tabla_encabezado, tabla_detalle FROM "EstadoSyncGeneral" WHERE id_efector = ? AND pipeline = ?`,
    [siteId, PIPELINE],
  );
  const row = names[0];
  if (!row) throw new Error(`no EstadoSyncGeneral row for site ${siteId} pipeline ${PIPELINE}`);
  const finalH = row.tabla_encabezado;
  const finalD = row.tabla_detalle;
  const stageH = `${finalH}_site${siteId}`;
  const stageD = `${finalD}_site${siteId}`;
  const esg = `UPDATE "EstadoSyncGeneral" SET`;
  const where = `WHERE id_efector = ? AND pipeline = ?`;

  // 1. Upload (the site's script).
  await central.run(`${esg} ultimo_update_efector_inicio = ?, status = ? ${where}`, [
    now(),
    'uploading',
    siteId,
    PIPELINE,
  ]);
  await central.exec(`DROP TABLE IF EXISTS "${stageD}"`);
  await central.exec(`DROP TABLE IF EXISTS "${stageH}"`);
  for (const ddl of labDdl(central, stageH, stageD)) await central.exec(ddl);
  const bytes =
    central.dialect === 'sqlite'
      ? uploadSqlite(site as RawSqlite, central as RawSqlite, stageH, stageD)
      : await uploadPg(site as RawPg, central as RawPg, stageH, stageD);
  await central.run(`${esg} ultimo_update_efector_fin = ? ${where}`, [now(), siteId, PIPELINE]);
  const uploadSeconds = since(t0);

  // 2. Merge (the central's cron job).
  const m0 = performance.now();
  await ensureFinalTables(centralJob, finalH, finalD);
  const counts = await centralJob.transaction(async () => {
    await centralJob.run(`${esg} ultimo_sync_fecha_inicio = ? ${where}`, [now(), siteId, PIPELINE]);
    await upsertAll(centralJob, finalH, stageH, ORDER_COLUMNS, 'order_id', siteId);
    await upsertAll(centralJob, finalD, stageD, RESULT_COLUMNS, 'result_id', siteId);
    await deleteVanished(centralJob, finalD, stageD, 'result_id', siteId);
    await deleteVanished(centralJob, finalH, stageH, 'order_id', siteId);
    const h = Number((await centralJob.all<{ n: number | string }>(`SELECT COUNT(*) AS n FROM "${stageH}"`))[0]!.n);
    const d = Number((await centralJob.all<{ n: number | string }>(`SELECT COUNT(*) AS n FROM "${stageD}"`))[0]!.n);
    const t = now();
    await centralJob.run(
      `${esg} ultimo_sync_fecha_fin = ?, ultimo_sync_registros = ?, header_count = ?, detail_count = ?, status = ?, last_seen = ? ${where}`,
      [t, h + d, h, d, 'ok', t, siteId, PIPELINE],
    );
    return { h, d };
  });
  // The cycle's writes are persisted within its own time: on SQLite, checkpoint the WAL it filled
  // (else the next writer's commit, i.e. the sitesync session timed after it, pays for it).
  if (centralJob.dialect === 'sqlite') await centralJob.all('PRAGMA wal_checkpoint(TRUNCATE)');
  const mergeSeconds = since(m0);
  return { seconds: since(t0), uploadSeconds, mergeSeconds, bytes, headers: counts.h, details: counts.d };
}

function uploadSqlite(site: RawSqlite, central: RawSqlite, stageH: string, stageD: string): number {
  let bytes = 0;
  for (const [from, to, cols] of [
    [ORDERS_TABLE, stageH, ORDER_COLUMNS],
    [RESULTS_TABLE, stageD, RESULT_COLUMNS],
  ] as const) {
    const read = site.db.prepare(`SELECT ${cols.join(', ')} FROM "${from}"`).raw(true);
    const ins = central.db.prepare(
      `INSERT INTO "${to}" (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`,
    );
    central.db.exec('BEGIN');
    for (const r of read.iterate() as IterableIterator<unknown[]>) {
      bytes += paramBytes(r);
      ins.run(...r);
    }
    central.db.exec('COMMIT');
  }
  return bytes;
}

async function uploadPg(site: RawPg, central: RawPg, stageH: string, stageD: string): Promise<number> {
  let bytes = 0;
  bytes += await central.copyAcross(
    site,
    `SELECT ${ORDER_COLUMNS.join(', ')} FROM ${ORDERS_TABLE}`,
    `COPY "${stageH}" (${ORDER_COLUMNS.join(', ')}) FROM STDIN`,
  );
  bytes += await central.copyAcross(
    site,
    `SELECT ${RESULT_COLUMNS.join(', ')} FROM ${RESULTS_TABLE}`,
    `COPY "${stageD}" (${RESULT_COLUMNS.join(', ')}) FROM STDIN`,
  );
  return bytes;
}

async function ensureFinalTables(central: RawDb, finalH: string, finalD: string): Promise<void> {
  const cols = (all: readonly string[], ints: string[]) =>
    all.map((c) => (ints.includes(c) ? `${c} INTEGER NOT NULL` : `${c} TEXT`)).join(', ');
  await central.exec(
    `CREATE TABLE IF NOT EXISTS "${finalH}" (id_efector INTEGER NOT NULL, ${cols(ORDER_COLUMNS, ['order_id'])}, PRIMARY KEY (id_efector, order_id))`,
  );
  await central.exec(
    `CREATE TABLE IF NOT EXISTS "${finalD}" (id_efector INTEGER NOT NULL, ${cols(RESULT_COLUMNS, ['result_id', 'order_id'])}, PRIMARY KEY (id_efector, result_id))`,
  );
  await central.exec(`CREATE INDEX IF NOT EXISTS "IX_${finalD}_header" ON "${finalD}" (id_efector, order_id)`);
}

async function upsertAll(
  central: RawDb,
  final: string,
  stage: string,
  cols: readonly string[],
  key: string,
  siteId: number,
): Promise<void> {
  const set = cols
    .filter((c) => c !== key)
    .map((c) => `${c} = excluded.${c}`)
    .join(', ');
  // `WHERE true` lets SQLite parse ON CONFLICT after INSERT ... SELECT.
  await central.run(
    `INSERT INTO "${final}" (id_efector, ${cols.join(', ')}) SELECT CAST(? AS INTEGER), ${cols.join(', ')} FROM "${stage}" WHERE true ` +
      `ON CONFLICT (id_efector, ${key}) DO UPDATE SET ${set}`,
    [siteId],
  );
}

async function deleteVanished(
  central: RawDb,
  final: string,
  stage: string,
  key: string,
  siteId: number,
): Promise<void> {
  await central.run(
    `DELETE FROM "${final}" WHERE id_efector = ? AND NOT EXISTS (SELECT 1 FROM "${stage}" s WHERE s.${key} = "${final}".${key})`,
    [siteId],
  );
}
