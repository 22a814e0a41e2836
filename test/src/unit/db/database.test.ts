import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { ConfigError, TransientError } from '@sitesync/protocol';
import {
  Database,
  dialectFor,
  FIRST_KEY_CHUNK,
  readHeaderPages,
  readHeadersByKeys,
  type HeaderWithDetails,
} from '@sitesync/db';
import { ledgerReturnsWinners, upsertLedger, type LedgerUpsert } from '@sitesync/central';
import type { ColumnSpec } from '@sitesync/protocol';
import { CENTRAL_MIGRATIONS, SITE_MIGRATIONS } from '@sitesync/db';
import { mysqlUrl, postgresUrl, reportSkip } from '../../support/services.js';
import {
  backendUrl,
  createScratch,
  openScratch,
  uniqueName,
  type BackendName,
  type Scratch,
} from './scratch-databases.js';

const BACKENDS: BackendName[] = ['sqlite', 'postgres', 'mysql', 'mssql'];

const LEGACY_COLUMNS = [
  'id_efector',
  'tabla_encabezado',
  'tabla_detalle',
  'ultimo_update_efector_inicio',
  'ultimo_update_efector_fin',
  'ultimo_sync_fecha_inicio',
  'ultimo_sync_fecha_fin',
  'ultimo_sync_registros',
];

/** Column specs for a header source: name and wire type, nullable. */
function specs(...cols: Array<[string, ColumnSpec['type']]>): ColumnSpec[] {
  return cols.map(([name, type]) => ({ name, type, nullable: true }));
}

interface LedgerRow {
  version: number;
  row_hash: string | null;
  deleted: boolean;
}

for (const backend of BACKENDS) {
  const url = backendUrl(backend);

  describe.skipIf(reportSkip(`Database on ${backend}`, url))(`Database on ${backend}`, () => {
    describe('central database', () => {
      let db: Database;
      let scratch: Scratch;
      const q = (id: string) => db.dialect.quote(id);

      beforeAll(async () => {
        ({ db, scratch } = await openScratch(backend, 'central'));
      });
      afterAll(async () => {
        await db?.close();
        await scratch?.drop();
      });

      async function ledger(siteId: number, key: string, pipeline = 'main'): Promise<LedgerRow | undefined> {
        const rows = await db.query<Record<string, unknown>>(
          `SELECT version, row_hash, deleted FROM ${q('sync_ledger')} WHERE id_efector = ? AND pipeline = ? AND header_key = ?`,
          [siteId, pipeline, key],
        );
        const r = rows[0];
        return (
          r && {
            version: Number(r.version),
            row_hash: r.row_hash as string | null,
            deleted: Boolean(Number(r.deleted)),
          }
        );
      }

      function upsert(rows: LedgerUpsert['rows']): Promise<number> {
        return db.run(upsertLedger(db.dialect, { table: 'sync_ledger', rows }));
      }

      it('uses the dialect named by its URL', () => {
        expect(db.dialect.name).toBe(backend);
        expect(db.url.dialect).toBe(backend);
      });

      it('migrations create EstadoSyncGeneral with the legacy column names, and the inbox, ledger and session tables', async () => {
        const estado = await db.describeTable('EstadoSyncGeneral');
        expect(estado).toBeDefined();
        const names = estado!.columns.map((c) => c.name);
        for (const c of LEGACY_COLUMNS) expect(names).toContain(c);
        for (const c of ['header_count', 'detail_count', 'status', 'last_error', 'last_seen'])
          expect(names).toContain(c);
        const col = (n: string) => estado!.columns.find((c) => c.name === n)!;
        expect(col('id_efector')).toMatchObject({ type: 'integer', nullable: false });
        expect(col('tabla_encabezado')).toMatchObject({ type: 'text', nullable: false });
        expect(col('tabla_detalle')).toMatchObject({ type: 'text', nullable: true });
        for (const ts of LEGACY_COLUMNS.filter((c) => c.startsWith('ultimo_') && c !== 'ultimo_sync_registros')) {
          expect(col(ts).type).toBe('timestamp');
        }
        expect(col('ultimo_sync_registros').type).toBe('integer');
        for (const t of ['sync_inbox', 'sync_ledger', 'sync_session']) expect(await db.describeTable(t)).toBeDefined();
        const ledgerTable = await db.describeTable('sync_ledger');
        expect(ledgerTable!.primaryKey).toEqual(['id_efector', 'pipeline', 'header_key']);
        expect((await db.describeTable('sync_inbox'))!.primaryKey).toEqual(['message_id']);
      });

      it('running the migrations again does nothing', async () => {
        expect(await db.migrate()).toEqual([]);
        const [row] = await db.query<{ n: unknown }>(`SELECT COUNT(*) AS n FROM ${q('sitesync_central_migrations')}`);
        expect(Number(row!.n)).toBe(CENTRAL_MIGRATIONS.length);
      });

      it('opening the same database again (a second agent, a restart) migrates nothing and keeps the data', async () => {
        await db.execute(`INSERT INTO ${q('EstadoSyncGeneral')} (id_efector, tabla_encabezado) VALUES (?, ?)`, [
          901,
          'H',
        ]);
        const again = await Database.open(scratch.url, { role: 'central' });
        try {
          expect(await again.migrate()).toEqual([]);
          const rows = await again.query(
            `SELECT id_efector FROM ${q('EstadoSyncGeneral')} WHERE id_efector = ?`,
            [901],
          );
          expect(rows).toHaveLength(1);
        } finally {
          await again.close();
        }
      });

      it('a new EstadoSyncGeneral row gets pipeline main, status new and zero counts; one row per site and pipeline', async () => {
        await db.execute(
          `INSERT INTO ${q('EstadoSyncGeneral')} (id_efector, tabla_encabezado, tabla_detalle) VALUES (?, ?, ?)`,
          [11, 'LAB_Orden', 'LAB_OrdenDetalle'],
        );
        const [row] = await db.query<Record<string, unknown>>(
          `SELECT pipeline, status, header_count, detail_count, deletion_count, ultimo_sync_registros FROM ${q('EstadoSyncGeneral')} WHERE id_efector = ?`,
          [11],
        );
        expect(row).toMatchObject({ pipeline: 'main', status: 'new' });
        expect([row!.header_count, row!.detail_count, row!.deletion_count].map(Number)).toEqual([0, 0, 0]);
        expect(row!.ultimo_sync_registros).toBeNull();
        await expect(
          db.execute(`INSERT INTO ${q('EstadoSyncGeneral')} (id_efector, tabla_encabezado) VALUES (?, ?)`, [
            11,
            'Other',
          ]),
        ).rejects.toThrow();
        await db.execute(
          `INSERT INTO ${q('EstadoSyncGeneral')} (id_efector, pipeline, tabla_encabezado) VALUES (?, ?, ?)`,
          [11, 'second', 'Other'],
        );
      });

      it('the ledger upsert keeps the newer version: v2 then v1 stays v2, v3 overwrites', async () => {
        await upsert([[1, 'main', '[1]', 2, 'hash-v2', false]]);
        expect(await ledger(1, '[1]')).toEqual({ version: 2, row_hash: 'hash-v2', deleted: false });
        await upsert([[1, 'main', '[1]', 1, 'hash-v1', true]]);
        expect(await ledger(1, '[1]')).toEqual({ version: 2, row_hash: 'hash-v2', deleted: false });
        await upsert([[1, 'main', '[1]', 3, null, true]]);
        expect(await ledger(1, '[1]')).toEqual({ version: 3, row_hash: null, deleted: true });
      });

      it('the same version again does not overwrite (a redelivered batch changes nothing)', async () => {
        await upsert([[2, 'main', '[1]', 5, 'first', false]]);
        await upsert([[2, 'main', '[1]', 5, 'second', false]]);
        expect(await ledger(2, '[1]')).toEqual({ version: 5, row_hash: 'first', deleted: false });
      });

      it('within one version a deletion beats an upsert, in either arrival order', async () => {
        // A row deleted while its session scanned is sent as an upsert and then as a deletion.
        await upsert([[2, 'main', '[2]', 6, 'upsert', false]]);
        await upsert([[2, 'main', '[2]', 6, null, true]]);
        expect(await ledger(2, '[2]')).toEqual({ version: 6, row_hash: null, deleted: true });
        await upsert([[2, 'main', '[3]', 6, null, true]]);
        await upsert([[2, 'main', '[3]', 6, 'upsert', false]]);
        expect(await ledger(2, '[3]')).toEqual({ version: 6, row_hash: null, deleted: true });
      });

      it('one statement mixes inserts, newer and older rows, each decided on its own', async () => {
        await upsert([
          [3, 'main', '[1]', 10, 'a10', false],
          [3, 'main', '[2]', 10, 'b10', false],
        ]);
        await upsert([
          [3, 'main', '[1]', 11, 'a11', false], // newer: applied
          [3, 'main', '[2]', 9, 'b9', true], // older: ignored
          [3, 'main', '[3]', 1, 'c1', false], // new: inserted
        ]);
        expect(await ledger(3, '[1]')).toMatchObject({ version: 11, row_hash: 'a11' });
        expect(await ledger(3, '[2]')).toMatchObject({ version: 10, row_hash: 'b10', deleted: false });
        expect(await ledger(3, '[3]')).toMatchObject({ version: 1, row_hash: 'c1' });
      });

      it.runIf(ledgerReturnsWinners(dialectFor(backend)))(
        'the ledger upsert returns exactly the rows it wrote: the winners',
        async () => {
          const written = async (rows: LedgerUpsert['rows']) => {
            const stmt = upsertLedger(db.dialect, { table: 'sync_ledger', rows });
            const got = await db.query<{ header_key: string; deleted: unknown }>(stmt.sql, stmt.params);
            return got.map((r) => [r.header_key, Boolean(Number(r.deleted))]).sort();
          };
          expect(
            await written([
              [12, 'main', '[1]', 5, 'a', false],
              [12, 'main', '[2]', 5, 'b', false],
            ]),
          ).toEqual([
            ['[1]', false],
            ['[2]', false],
          ]);
          expect(
            await written([
              [12, 'main', '[1]', 6, 'a6', false], // newer: won
              [12, 'main', '[2]', 4, 'b4', false], // older: lost
              [12, 'main', '[3]', 1, null, true], // new: won
            ]),
          ).toEqual([
            ['[1]', false],
            ['[3]', true],
          ]);
          // the same version again loses; a same-version deletion wins over an upsert
          expect(await written([[12, 'main', '[1]', 6, 'again', false]])).toEqual([]);
          expect(await written([[12, 'main', '[1]', 6, null, true]])).toEqual([['[1]', true]]);
        },
      );

      it('deleteUnlisted removes the lines of the named owners that are not kept, and nothing else', async () => {
        const t = uniqueName('lines');
        await db.execute(
          `CREATE TABLE ${q(t)} (${q('id_efector')} INT NOT NULL, ${q('order_id')} BIGINT NOT NULL, ${q('line')} VARCHAR(20) NOT NULL, PRIMARY KEY (${q('id_efector')}, ${q('order_id')}, ${q('line')}))`,
        );
        const rows: Array<[number, number, string]> = [
          [1, 10, 'a'],
          [1, 10, 'b'],
          [1, 11, 'a'],
          [1, 12, 'a'],
          [2, 10, 'a'],
        ];
        for (const r of rows) await db.execute(`INSERT INTO ${q(t)} VALUES (?, ?, ?)`, r);
        const d = db.dialect;
        const types = [d.columnType({ name: 'order_id', type: 'integer', nullable: false }, true)];
        await db.run(
          d.deleteUnlisted(
            t,
            ['id_efector', 1],
            { columns: ['order_id'], sqlTypes: types, keys: [[10], [11]] },
            {
              columns: ['order_id', 'line'],
              sqlTypes: [...types, d.columnType({ name: 'line', type: 'text', nullable: false }, true)],
              keys: [[10, 'b']],
            },
          ),
        );
        const left = await db.query<{ id_efector: unknown; order_id: unknown; line: string }>(
          `SELECT ${q('id_efector')}, ${q('order_id')}, ${q('line')} FROM ${q(t)} ORDER BY 1, 2, 3`,
        );
        // site 1: order 10 keeps b only, order 11 loses every line, order 12 was not named; site 2 untouched
        expect(left.map((r) => [Number(r.id_efector), Number(r.order_id), r.line])).toEqual([
          [1, 10, 'b'],
          [1, 12, 'a'],
          [2, 10, 'a'],
        ]);
        await db.execute(`DROP TABLE ${q(t)}`);
      });

      it('deleteUnlisted with one-column keys keeps a line any named owner still lists', async () => {
        const t = uniqueName('lines1');
        await db.execute(
          `CREATE TABLE ${q(t)} (${q('id_efector')} INT NOT NULL, ${q('order_id')} BIGINT NOT NULL, ${q('line_id')} BIGINT NOT NULL, PRIMARY KEY (${q('id_efector')}, ${q('line_id')}))`,
        );
        const rows: Array<[number, number, number]> = [
          [1, 10, 100],
          [1, 10, 101],
          [1, 11, 110],
          [1, 12, 120],
          [2, 10, 100],
        ];
        for (const r of rows) await db.execute(`INSERT INTO ${q(t)} VALUES (?, ?, ?)`, r);
        const d = db.dialect;
        const int = [d.columnType({ name: 'x', type: 'integer', nullable: false }, true)];
        await db.run(
          d.deleteUnlisted(
            t,
            ['id_efector', 1],
            { columns: ['order_id'], sqlTypes: int, keys: [[10], [11]] },
            // 110 now belongs to order 10 (moved within the batch): kept, whichever order held it
            { columns: ['line_id'], sqlTypes: int, keys: [[101], [110]] },
          ),
        );
        const left = await db.query<{ id_efector: unknown; line_id: unknown }>(
          `SELECT ${q('id_efector')}, ${q('line_id')} FROM ${q(t)} ORDER BY 1, 2`,
        );
        expect(left.map((r) => [Number(r.id_efector), Number(r.line_id)])).toEqual([
          [1, 101],
          [1, 110],
          [1, 120],
          [2, 100],
        ]);
        await db.execute(`DROP TABLE ${q(t)}`);
      });

      it('sites and pipelines with the same header key never touch each other', async () => {
        await upsert([
          [4, 'main', '["A-1"]', 1, 'site4', false],
          [5, 'main', '["A-1"]', 7, 'site5', false],
          [4, 'other', '["A-1"]', 3, 'other', false],
        ]);
        await upsert([[5, 'main', '["A-1"]', 8, 'site5-v8', false]]);
        expect(await ledger(4, '["A-1"]')).toMatchObject({ version: 1, row_hash: 'site4' });
        expect(await ledger(5, '["A-1"]')).toMatchObject({ version: 8, row_hash: 'site5-v8' });
        expect(await ledger(4, '["A-1"]', 'other')).toMatchObject({ version: 3, row_hash: 'other' });
      });

      it('merges are order-independent: versions applied concurrently in any order end at the newest', async () => {
        const versions = [7, 3, 9, 1, 8, 2, 6, 4, 5, 10, 2, 9];
        await Promise.all(versions.map((v) => upsert([[6, 'main', '[1]', v, `h${v}`, v % 2 === 0]])));
        expect(await ledger(6, '[1]')).toEqual({ version: 10, row_hash: 'h10', deleted: true });
      });

      it('a full chunk of ledger rows goes through in one statement', async () => {
        const n = db.dialect.chunkSize(7);
        const rows: LedgerUpsert['rows'] = Array.from(
          { length: n },
          (_, i) => [8, 'main', `[${i}]`, 1, `h${i}`, false] as const,
        );
        await upsert(rows);
        const [row] = await db.query<{ n: unknown }>(
          `SELECT COUNT(*) AS n FROM ${q('sync_ledger')} WHERE id_efector = ?`,
          [8],
        );
        expect(Number(row!.n)).toBe(n);
        // and the mssql-sized chunk works here too
        const mssqlChunk = dialectFor('mssql').chunkSize(7);
        await upsert(rows.slice(0, mssqlChunk).map((r) => [r[0], r[1], r[2], 2, 'v2', true] as const));
        const [upd] = await db.query<{ n: unknown }>(
          `SELECT COUNT(*) AS n FROM ${q('sync_ledger')} WHERE id_efector = ? AND version = 2`,
          [8],
        );
        expect(Number(upd!.n)).toBe(Math.min(n, mssqlChunk));
      });

      it('a transaction commits what it did and returns its result', async () => {
        const result = await db.transaction(async (tx) => {
          await tx.execute(
            `INSERT INTO ${q('sync_inbox')} (message_id, id_efector, message_type, processed_at) VALUES (?, ?, ?, ?)`,
            ['commit-1', 1, 'batch', db.dialect.now()],
          );
          const seen = await tx.query(`SELECT message_id FROM ${q('sync_inbox')} WHERE message_id = ?`, ['commit-1']);
          expect(seen).toHaveLength(1);
          return 'done';
        });
        expect(result).toBe('done');
        expect(
          await db.query(`SELECT message_id FROM ${q('sync_inbox')} WHERE message_id = ?`, ['commit-1']),
        ).toHaveLength(1);
      });

      it('a transaction rolls back everything when its function throws, and rethrows that error', async () => {
        const boom = new Error('merge failed half-way');
        await upsert([[9, 'main', '[1]', 1, 'before', false]]);
        const outcome = db.transaction(async (tx) => {
          await tx.execute(
            `INSERT INTO ${q('sync_inbox')} (message_id, id_efector, message_type, processed_at) VALUES (?, ?, ?, ?)`,
            ['rollback-1', 9, 'batch', db.dialect.now()],
          );
          await tx.run(
            upsertLedger(db.dialect, { table: 'sync_ledger', rows: [[9, 'main', '[1]', 2, 'after', true]] }),
          );
          throw boom;
        });
        await expect(outcome).rejects.toBe(boom);
        expect(
          await db.query(`SELECT message_id FROM ${q('sync_inbox')} WHERE message_id = ?`, ['rollback-1']),
        ).toEqual([]);
        expect(await ledger(9, '[1]')).toEqual({ version: 1, row_hash: 'before', deleted: false });
      });

      it('a transaction rolls back when a statement inside it fails (duplicate key)', async () => {
        const insert = `INSERT INTO ${q('sync_inbox')} (message_id, id_efector, message_type, processed_at) VALUES (?, ?, ?, ?)`;
        await expect(
          db.transaction(async (tx) => {
            await tx.execute(insert, ['dup-a', 1, 'batch', db.dialect.now()]);
            await tx.execute(insert, ['dup-a', 1, 'batch', db.dialect.now()]);
          }),
        ).rejects.toThrow();
        expect(await db.query(`SELECT message_id FROM ${q('sync_inbox')} WHERE message_id = ?`, ['dup-a'])).toEqual([]);
        // and the database is usable afterwards
        expect(await db.execute(insert, ['dup-a', 1, 'batch', db.dialect.now()])).toBe(1);
      });

      it('execute reports the number of affected rows', async () => {
        for (const id of ['aff-1', 'aff-2', 'aff-3']) {
          await db.execute(
            `INSERT INTO ${q('sync_inbox')} (message_id, id_efector, message_type, processed_at) VALUES (?, ?, ?, ?)`,
            [id, 77, 'batch', db.dialect.now()],
          );
        }
        expect(await db.execute(`UPDATE ${q('sync_inbox')} SET headers = headers + 1 WHERE id_efector = ?`, [77])).toBe(
          3,
        );
        expect(await db.execute(`DELETE FROM ${q('sync_inbox')} WHERE id_efector = ?`, [-1])).toBe(0);
      });

      it('the dialect helpers run as real SQL: multi-row insert, key predicates, keyset pages, row limit', async () => {
        const t = uniqueName('grid');
        const varchar = db.dialect.textType(20);
        await db.execute(
          `CREATE TABLE ${q(t)} (${q('a')} INT NOT NULL, ${q('b')} ${varchar} NOT NULL, ${q('v')} INT, PRIMARY KEY (${q('a')}, ${q('b')}))`,
        );
        const rows: Array<[number, string, number]> = [];
        for (let a = 1; a <= 4; a++) for (const b of ['x', 'y', 'z']) rows.push([a, b, a * 10 + b.charCodeAt(0) - 119]);
        expect(await db.run(db.dialect.insertRows(t, ['a', 'b', 'v'], rows))).toBe(12);

        const pred = db.dialect.keyPredicate(
          ['a', 'b'],
          [
            [1, 'y'],
            [3, 'z'],
            [9, 'x'],
          ],
          'g',
        );
        const picked = await db.query<{ a: number; b: string }>(
          `SELECT g.${q('a')} AS a, g.${q('b')} AS b FROM ${q(t)} g WHERE ${pred.sql} ORDER BY g.${q('a')}`,
          pred.params,
        );
        expect(picked.map((r) => [Number(r.a), r.b])).toEqual([
          [1, 'y'],
          [3, 'z'],
        ]);

        const single = db.dialect.keyPredicate(['a'], [[2], [4]]);
        const two = await db.query(`SELECT ${q('a')} FROM ${q(t)} WHERE ${single.sql}`, single.params);
        expect(two).toHaveLength(6);

        // walk the whole table in pages of 5 with the keyset condition: every row exactly once, in key order
        const seen: string[] = [];
        let after: [number, string] | undefined;
        for (let page = 0; page < 10; page++) {
          const cond = after ? db.dialect.afterKey(['a', 'b'], after) : { sql: '1 = 1', params: [] };
          const got = await db.query<{ a: unknown; b: string }>(
            db.dialect.selectLimit(
              `${q('a')} AS a, ${q('b')} AS b FROM ${q(t)} WHERE ${cond.sql} ORDER BY ${q('a')}, ${q('b')}`,
              5,
            ),
            cond.params,
          );
          if (got.length === 0) break;
          for (const r of got) seen.push(`${Number(r.a)}${r.b}`);
          const last = got[got.length - 1]!;
          after = [Number(last.a), last.b];
        }
        expect(seen).toEqual(rows.map(([a, b]) => `${a}${b}`));
      });

      it('queryArrays returns rows as arrays in select-list order, as query returns them as objects', async () => {
        const t = uniqueName('arrays');
        await db.execute(
          `CREATE TABLE ${q(t)} (${q('id')} INT NOT NULL PRIMARY KEY, ${q('name')} ${db.dialect.textType(20)}, ${q('n')} INT)`,
        );
        await db.run(
          db.dialect.insertRows(
            t,
            ['id', 'name', 'n'],
            [
              [1, 'uno', 10],
              [2, null, null],
              [3, 'tres', 30],
            ],
          ),
        );
        // columns named in another order than the table's, and a key set as parameters
        const cols = ['n', 'name', 'id'];
        const pred = db.dialect.keyPredicate(['id'], [[1], [2], [9]]);
        const sql = `SELECT ${cols.map(q).join(', ')} FROM ${q(t)} WHERE ${pred.sql} ORDER BY ${q('id')}`;
        const arrays = await db.queryArrays(sql, pred.params, cols);
        expect(arrays.map((r) => [r[0] === null ? null : Number(r[0]), r[1], Number(r[2])])).toEqual([
          [10, 'uno', 1],
          [null, null, 2],
        ]);
        const objects = await db.query<Record<string, unknown>>(sql, pred.params);
        expect(objects.map((o) => cols.map((c) => o[c]))).toEqual(arrays);
        // the same statement again (SQLite keeps it prepared) sees rows written since
        await db.execute(`UPDATE ${q(t)} SET ${q('n')} = 11 WHERE ${q('id')} = 1`);
        expect(Number((await db.queryArrays(sql, pred.params, cols))[0]![0])).toBe(11);
        await expect(db.queryArrays(`SELECT ${q('missing')} FROM ${q(t)}`, [], ['missing'])).rejects.toThrow();
        await db.execute(`DROP TABLE ${q(t)}`);
      });

      it('writeMany stores every column type as a one-row INSERT binds it, and upserts by key', async () => {
        const d = db.dialect;
        const specs: ColumnSpec[] = [
          { name: 'id', type: 'integer', nullable: false },
          { name: 'big', type: 'integer', nullable: true },
          { name: 'amount', type: 'number', nullable: true },
          { name: 'label', type: 'text', nullable: true },
          { name: 'flag', type: 'boolean', nullable: true },
          { name: 'at', type: 'timestamp', nullable: true },
          { name: 'blob', type: 'binary', nullable: true },
        ];
        const cols = specs.map((c) => c.name);
        const types = specs.map((c) => d.columnType(c, c.name === 'id'));
        const wire: unknown[][] = [
          [
            1,
            '9007199254740993',
            13.5,
            'O\'Brien "quoted" back\\slash {a,b} NULL',
            true,
            '2024-05-02T10:15:00.000Z',
            'base64:AQID',
          ],
          [2, -5, -0, 'ñandú 😀 \u00e9\t\n', false, '1999-12-31T23:59:59.999Z', 'base64:'],
          [3, null, 1e-7, '', null, null, null],
          [4, 0, 123456789.125, 'NULL', true, '2024-01-01T00:00:00.000Z', 'base64:/w=='],
          [5, 7, 2, 'lone \ud800 surrogate', false, null, null],
          // numbers in a text column (a site database with loose types): stored as their text
          [6, 8, 3, 1e21, true, null, null],
          [7, 9, 4, 1e-7, false, null, null],
        ];
        const bind = (rows: unknown[][]) => rows.map((r) => r.map((v, i) => d.bindValue(v, specs[i]!.type)));
        const [viaMany, viaOne] = [uniqueName('many'), uniqueName('one')];
        for (const t of [viaMany, viaOne]) {
          await db.execute(
            `CREATE TABLE ${q(t)} (${cols.map((c, i) => `${q(c)} ${types[i]}`).join(', ')}, PRIMARY KEY (${q('id')}))`,
          );
        }
        const read = async (t: string) =>
          (await db.query<Record<string, unknown>>(`SELECT * FROM ${q(t)} ORDER BY ${q('id')}`)).map((r) =>
            cols.map((c) => {
              const v = r[c];
              if (Buffer.isBuffer(v)) return `hex:${v.toString('hex')}`;
              if (v instanceof Date) return v.toISOString();
              return v === null || typeof v === 'string' ? v : String(v);
            }),
          );
        // with and without a row JSON cannot carry (the lone surrogate): both statement forms
        for (const rows of [[...wire.slice(0, 4), ...wire.slice(5)], wire.slice(4, 5)]) {
          await db.run(d.writeMany(viaMany, cols, types, bind(rows), ['id']));
          for (const r of bind(rows)) await db.run(d.insertRows(viaOne, cols, [r]));
        }
        expect(await read(viaMany)).toEqual(await read(viaOne));
        // an upsert by key rewrites the rows it names, with the same types
        const changed = wire.map((r) => [r[0], r[1], 99.5, `${String(r[3])}!`, !r[4], r[5], r[6]]);
        await db.run(d.writeMany(viaMany, cols, types, bind(changed), ['id']));
        await db.execute(`DELETE FROM ${q(viaOne)}`);
        for (const r of bind(changed)) await db.run(d.insertRows(viaOne, cols, [r]));
        expect(await read(viaMany)).toEqual(await read(viaOne));
        for (const t of [viaMany, viaOne]) await db.execute(`DROP TABLE ${q(t)}`);
      });

      it('readHeaderPages and readHeadersByKeys give each header its own details, across pages and key types', async () => {
        const [h, dt] = [uniqueName('hdr'), uniqueName('det')];
        // an INT header key and a BIGINT join column: PostgreSQL reads the one as a number, the other as text
        await db.execute(
          `CREATE TABLE ${q(h)} (${q('id')} INT NOT NULL PRIMARY KEY, ${q('note')} ${db.dialect.textType(20)})`,
        );
        await db.execute(
          `CREATE TABLE ${q(dt)} (${q('line')} INT NOT NULL PRIMARY KEY, ${q('hid')} BIGINT NOT NULL, ${q('v')} ${db.dialect.textType(20)})`,
        );
        await db.run(
          db.dialect.insertRows(
            h,
            ['id', 'note'],
            [1, 2, 3, 4, 5].map((i) => [i, `h${i}`]),
          ),
        );
        const lines = [
          [10, 1, 'a'],
          [11, 1, 'b'],
          [20, 2, 'c'],
          [40, 4, 'd'],
          [41, 4, 'e'],
          [42, 4, 'f'],
        ];
        await db.run(db.dialect.insertRows(dt, ['line', 'hid', 'v'], lines));
        const src = {
          header: { table: h, key: ['id'], columns: ['id', 'note'], specs: specs(['id', 'integer'], ['note', 'text']) },
          detail: {
            table: dt,
            joinColumns: ['hid'],
            columns: ['line', 'hid', 'v'],
            specs: specs(['line', 'integer'], ['hid', 'integer'], ['v', 'text']),
          },
        };
        const view = (page: HeaderWithDetails[]) =>
          page.map((x) => [
            x.headerKey,
            x.header[1],
            x.details
              .map((d) => String(d[2]))
              .sort()
              .join(''),
          ]);
        const pages: HeaderWithDetails[][] = [];
        for await (const page of readHeaderPages(db, src, 2)) pages.push(page);
        expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
        const expected = [
          ['["1"]', 'h1', 'ab'],
          ['["2"]', 'h2', 'c'],
          ['["3"]', 'h3', ''],
          ['["4"]', 'h4', 'def'],
          ['["5"]', 'h5', ''],
        ];
        expect(pages.flatMap(view)).toEqual(expected);
        const byKeys: HeaderWithDetails[] = [];
        for await (const page of readHeadersByKeys(db, src, [[4], [2], [9]])) byKeys.push(...page);
        expect(view(byKeys).sort()).toEqual([expected[1], expected[3]]);
        for (const t of [dt, h]) await db.execute(`DROP TABLE ${q(t)}`);
      });

      it('readHeadersByKeys reads a first small chunk, then doubling ones, and every header once', async () => {
        const [h, dt] = [uniqueName('chk_h'), uniqueName('chk_d')];
        await db.execute(`CREATE TABLE ${q(h)} (${q('id')} INT NOT NULL PRIMARY KEY)`);
        await db.execute(`CREATE TABLE ${q(dt)} (${q('line')} INT NOT NULL PRIMARY KEY, ${q('hid')} INT NOT NULL)`);
        const ids = Array.from({ length: 1_000 }, (_, i) => i + 1);
        const chunk = db.dialect.writeManyChunk(2);
        for (let i = 0; i < ids.length; i += chunk) {
          const part = ids.slice(i, i + chunk);
          await db.run(
            db.dialect.insertRows(
              h,
              ['id'],
              part.map((id) => [id]),
            ),
          );
          await db.run(
            db.dialect.insertRows(
              dt,
              ['line', 'hid'],
              part.map((id) => [id * 10, id]),
            ),
          );
        }
        const src = {
          header: { table: h, key: ['id'], columns: ['id'], specs: specs(['id', 'integer']) },
          detail: {
            table: dt,
            joinColumns: ['hid'],
            columns: ['line', 'hid'],
            specs: specs(['line', 'integer'], ['hid', 'integer']),
          },
        };
        // 1,001 keys asked for (one has no header), in a shuffled order
        const asked = [...ids, 5_000].sort((a, b) => ((a * 7919) % 1013) - ((b * 7919) % 1013));
        const sizes: number[] = [];
        const seen: string[] = [];
        for await (const page of readHeadersByKeys(
          db,
          src,
          asked.map((id) => [id]),
        )) {
          sizes.push(page.length);
          for (const x of page) {
            expect(x.details.map((d) => Number(d[0]))).toEqual([Number(x.header[0]) * 10]);
            seen.push(x.headerKey);
          }
        }
        const cap = db.dialect.chunkSize(1, 10);
        expect(sizes[0]).toBe(Math.min(FIRST_KEY_CHUNK, cap));
        if (cap >= 400) expect(sizes.slice(0, 3)).toEqual([FIRST_KEY_CHUNK, 2 * FIRST_KEY_CHUNK, 4 * FIRST_KEY_CHUNK]);
        expect(sizes.every((n) => n <= cap)).toBe(true);
        expect(new Set(seen).size).toBe(1_000);
        expect(seen.length).toBe(1_000);
        for (const t of [dt, h]) await db.execute(`DROP TABLE ${q(t)}`);
      });

      it('reads headers keyed by a binary column page by page, and by key, with their details', async () => {
        const d = db.dialect;
        const [h, dt] = [uniqueName('bin_h'), uniqueName('bin_d')];
        const bin = d.columnType({ name: 'k', type: 'binary', nullable: false }, true);
        await db.execute(
          `CREATE TABLE ${q(h)} (${q('k')} ${bin} NOT NULL PRIMARY KEY, ${q('note')} ${d.textType(20)})`,
        );
        await db.execute(
          `CREATE TABLE ${q(dt)} (${q('line')} INT NOT NULL PRIMARY KEY, ${q('hk')} ${bin} NOT NULL, ${q('v')} ${d.textType(20)})`,
        );
        const key = (i: number) => Buffer.from([0, i, 255]);
        await db.run(
          d.insertRows(
            h,
            ['k', 'note'],
            [1, 2, 3, 4, 5].map((i) => [key(i), `h${i}`]),
          ),
        );
        await db.run(
          d.insertRows(
            dt,
            ['line', 'hk', 'v'],
            [1, 2, 4].map((i) => [i * 10, key(i), `l${i}`]),
          ),
        );
        const src = {
          header: {
            table: h,
            key: ['k'],
            columns: ['k', 'note'],
            specs: specs(['k', 'binary'], ['note', 'text']),
          },
          detail: {
            table: dt,
            joinColumns: ['hk'],
            columns: ['line', 'hk', 'v'],
            specs: specs(['line', 'integer'], ['hk', 'binary'], ['v', 'text']),
          },
        };
        const wireKey = (i: number) => `base64:${key(i).toString('base64')}`;
        const seen: HeaderWithDetails[] = [];
        // the next page starts after the last key, compared as bytes (as text it never moved on)
        for await (const page of readHeaderPages(db, src, 2)) {
          seen.push(...page);
          if (seen.length > 10) throw new Error('the pages do not end');
        }
        const view = (x: HeaderWithDetails) => [x.key[0], x.header[1], x.details.map((l) => String(l[2])).join('')];
        expect(seen.map(view)).toEqual(
          [1, 2, 3, 4, 5].map((i) => [wireKey(i), `h${i}`, [1, 2, 4].includes(i) ? `l${i}` : '']),
        );
        const byKeys: HeaderWithDetails[] = [];
        for await (const page of readHeadersByKeys(db, src, [[wireKey(4)], [wireKey(3)], [wireKey(9)]]))
          byKeys.push(...page);
        expect(byKeys.map(view).sort()).toEqual([
          [wireKey(3), 'h3', ''],
          [wireKey(4), 'h4', 'l4'],
        ]);
        for (const t of [dt, h]) await db.execute(`DROP TABLE ${q(t)}`);
      });

      it('selectByKeys returns the rows of the named keys within the scope, and nothing of other scopes', async () => {
        const t = uniqueName('bykey');
        const text = db.dialect.textType(400);
        await db.execute(
          `CREATE TABLE ${q(t)} (${q('pipeline')} ${db.dialect.textType(64)} NOT NULL, ${q('header_key')} ${text} NOT NULL, ${q('h')} ${text}, PRIMARY KEY (${q('pipeline')}, ${q('header_key')}))`,
        );
        const rows: Array<[string, string, string]> = [
          ['lab', '["1"]', 'a'],
          ['lab', '["2"]', 'b'],
          ['lab', '["3"]', 'c'],
          ['other', '["2"]', 'x'],
        ];
        await db.run(db.dialect.insertRows(t, ['pipeline', 'header_key', 'h'], rows));
        const stmt = db.dialect.selectByKeys(t, ['header_key', 'h'], ['pipeline', 'lab'], {
          column: 'header_key',
          sqlType: text,
          values: ['["2"]', '["3"]', '["9"]'],
        });
        const got = await db.query<{ header_key: string; h: string }>(stmt.sql, stmt.params);
        expect(got.map((r) => [r.header_key, r.h]).sort()).toEqual([
          ['["2"]', 'b'],
          ['["3"]', 'c'],
        ]);
        await db.execute(`DROP TABLE ${q(t)}`);
      });

      it('describes a table: columns, wire types, nullability and primary key; undefined when it does not exist', async () => {
        const t = uniqueName('shape');
        const d = db.dialect;
        await db.execute(
          `CREATE TABLE ${q(t)} (${q('id')} INT NOT NULL PRIMARY KEY, ${q('name')} ${d.textType(50)} NULL, ${q('amount')} DECIMAL(10, 2), ${q('at')} ${d.timestampType()} NULL, ${q('big')} ${d.bigintType()})`,
        );
        const info = await db.describeTable(t);
        expect(info).toBeDefined();
        expect(info!.name.endsWith(t)).toBe(true);
        expect(info!.primaryKey).toEqual(['id']);
        expect(info!.columns.map((c) => [c.name, c.type])).toEqual([
          ['id', 'integer'],
          ['name', 'text'],
          ['amount', 'number'],
          ['at', 'timestamp'],
          ['big', 'integer'],
        ]);
        expect(info!.columns.find((c) => c.name === 'name')!.nullable).toBe(true);
        expect(info!.columns.find((c) => c.name === 'id')!.isPrimary).toBe(true);
        expect(await db.describeTable(uniqueName('missing'))).toBeUndefined();
        const names = await db.tableNames();
        // tables of this database unqualified; its own tables listed before those of other schemas
        expect(names).toContain(t);
        expect(names).toContain('EstadoSyncGeneral');
        expect(names.indexOf('EstadoSyncGeneral')).toBeLessThan(names.findIndex((n) => n.includes('.')) >>> 0);
        expect(
          names.filter((n) => /^(sqlite_|pg_|information_schema\.|mysql\.|performance_schema\.|sys\.)/.test(n)),
        ).toEqual([]);
      });

      it('a table name that tries to break out of the catalog query finds nothing and runs nothing', async () => {
        const victim = uniqueName('victim');
        await db.execute(`CREATE TABLE ${q(victim)} (${q('id')} INT PRIMARY KEY)`);
        const hostile = [
          `x; DROP TABLE ${victim}`,
          `x'); DROP TABLE ${victim}; --`,
          `x' OR 1=1); DROP TABLE ${victim}; --`,
          `x\\'); DROP TABLE ${victim}; --`,
          `${victim}'--`,
        ];
        for (const name of hostile) {
          await expect(db.describeTable(name)).resolves.toBeUndefined();
        }
        expect(await db.describeTable(victim)).toBeDefined();
      });

      it('answers ping', async () => {
        expect(await db.ping()).toBe(true);
      });
    });

    describe('site database', () => {
      let db: Database;
      let scratch: Scratch;

      beforeAll(async () => {
        ({ db, scratch } = await openScratch(backend, 'site'));
      });
      afterAll(async () => {
        await db?.close();
        await scratch?.drop();
      });

      it('migrations create the run log LAB_SyncStatus, the hash side table, the lock and the version counter', async () => {
        const log = await db.describeTable('LAB_SyncStatus');
        expect(log!.columns.map((c) => c.name)).toEqual(
          expect.arrayContaining(['session_id', 'started_at', 'finished_at', 'status', 'headers_sent', 'error']),
        );
        const state = await db.describeTable('sync_row_state');
        expect(state!.columns.map((c) => c.name)).toEqual(
          expect.arrayContaining(['SourceHash', 'TargetHash', 'IsSync']),
        );
        expect(state!.primaryKey).toEqual(['pipeline', 'header_key']);
        expect(await db.describeTable('sync_lock')).toBeDefined();
        expect(await db.describeTable('sync_counter')).toBeDefined();
        // a site database holds none of the central tables
        expect(await db.describeTable('EstadoSyncGeneral')).toBeUndefined();
        expect(await db.describeTable('sync_ledger')).toBeUndefined();
      });

      it('running the migrations again does nothing', async () => {
        expect(await db.migrate()).toEqual([]);
        const [row] = await db.query<{ n: unknown }>(
          `SELECT COUNT(*) AS n FROM ${db.dialect.quote('sitesync_site_migrations')}`,
        );
        expect(Number(row!.n)).toBe(SITE_MIGRATIONS.length);
      });

      it('the side table defaults IsSync to false', async () => {
        const q = (s: string) => db.dialect.quote(s);
        await db.execute(
          `INSERT INTO ${q('sync_row_state')} (pipeline, header_key, ${q('SourceHash')}, updated_at) VALUES (?, ?, ?, ?)`,
          ['main', '[1]', 'abc', db.dialect.now()],
        );
        const [row] = await db.query<Record<string, unknown>>(
          `SELECT ${q('IsSync')} AS s, pending_delete AS d FROM ${q('sync_row_state')}`,
        );
        expect(Boolean(Number(row!.s))).toBe(false);
        expect(Boolean(Number(row!.d))).toBe(false);
      });
    });

    it('close can be called many times and returns the same promise', async () => {
      const { db, scratch } = await openScratch(backend, 'site', false);
      try {
        const a = db.close();
        expect(db.close()).toBe(a);
        await a;
        expect(await db.ping()).toBe(false);
      } finally {
        await scratch.drop();
      }
    });

    it('a column named with a "?" is created, written and read under its own name; only real placeholders bind', async () => {
      const { db, scratch } = await openScratch(backend, 'central', false);
      const q = (id: string) => db.dialect.quote(id);
      try {
        await db.query(`CREATE TABLE ${q('odd_names')} (${q('id')} INT PRIMARY KEY, ${q('is it?')} VARCHAR(20))`);
        await db.query(`INSERT INTO ${q('odd_names')} (${q('id')}, ${q('is it?')}) VALUES (?, ?)`, [1, 'yes?']);
        const rows = await db.query<Record<string, unknown>>(
          `SELECT ${q('is it?')} FROM ${q('odd_names')} WHERE ${q('id')} = ? AND ${q('is it?')} <> '?'`,
          [1],
        );
        expect(rows).toEqual([{ 'is it?': 'yes?' }]);
        expect((await db.describeTable('odd_names'))?.columns.map((c) => c.name).sort()).toEqual(['id', 'is it?']);
      } finally {
        await db.close();
        await scratch.drop();
      }
    });

    it('doubles are read back exactly as stored, not one unit off in the last place', async () => {
      const { db, scratch } = await openScratch(backend, 'central', false);
      const q = (id: string) => db.dialect.quote(id);
      // 973344272535.6991 came back from MariaDB as …6992 through mysql2's own digit loop; the rest
      // are normal doubles of random bit patterns (a fixed seed), bound as parameters.
      const values = [973344272535.6991, 0.30000000000000004, 5e-324 * 2 ** 60, ...randomDoubles(400, 0x5eed)];
      try {
        await db.query(
          `CREATE TABLE ${q('dbls')} (${q('id')} INT PRIMARY KEY, ${q('v')} ${db.dialect.columnType({ name: 'v', type: 'number', kind: 'float64', nullable: true }, false)})`,
        );
        for (let i = 0; i < values.length; i += 100) {
          const chunk = values.slice(i, i + 100);
          await db.query(
            `INSERT INTO ${q('dbls')} (${q('id')}, ${q('v')}) VALUES ${chunk.map(() => '(?, ?)').join(', ')}`,
            chunk.flatMap((v, j) => [i + j, v]),
          );
        }
        const rows = await db.queryArrays(
          `SELECT ${q('id')}, ${q('v')} FROM ${q('dbls')} ORDER BY ${q('id')}`,
          [],
          ['id', 'v'],
        );
        expect(rows.map((r) => Number(r[1]))).toEqual(values);
      } finally {
        await db.close();
        await scratch.drop();
      }
    });

    it('opening without migrations creates no tables', async () => {
      const { db, scratch } = await openScratch(backend, 'central', false);
      try {
        expect(await db.describeTable('EstadoSyncGeneral')).toBeUndefined();
        expect(await db.migrate()).toEqual([
          'CentralInit1732500000000',
          'CentralInterventions1732600000000',
          'CentralSecrets1733300000000',
          'CentralExactKeys1733400000000',
          'CentralPipelineShape1733500000000',
          'CentralSessionIndex1733600000000',
          'CentralSiteDisabled1733700000000',
          'CentralTombstoneFloor1733750000000',
          'CentralSessionTimeIndexes1733800000000',
        ]);
        expect(await db.describeTable('EstadoSyncGeneral')).toBeDefined();
      } finally {
        await db.close();
        await scratch.drop();
      }
    });
  });
}

/** `count` finite, normal doubles from random bit patterns (a small xorshift seeded with `seed`). */
function randomDoubles(count: number, seed: number): number[] {
  let x = BigInt(seed);
  const view = new DataView(new ArrayBuffer(8));
  const out: number[] = [];
  while (out.length < count) {
    x ^= (x << 13n) & 0xffffffffffffffffn;
    x ^= x >> 7n;
    x ^= (x << 17n) & 0xffffffffffffffffn;
    view.setBigUint64(0, x);
    const v = view.getFloat64(0);
    if (Number.isFinite(v) && Math.abs(v) >= 2.2250738585072014e-308) out.push(v);
  }
  return out;
}

describe('SQLite specifics', () => {
  it('an in-memory database works for quick tests', async () => {
    const db = await Database.open('sqlite::memory:', { role: 'central' });
    try {
      expect(await db.describeTable('EstadoSyncGeneral')).toBeDefined();
    } finally {
      await db.close();
    }
  });

  it('concurrent transactions on the single SQLite connection are serialized, none lost', async () => {
    const db = await Database.open('sqlite::memory:', { role: 'site' });
    try {
      await db.execute(`INSERT INTO sync_counter (name, value) VALUES ('c', 0)`);
      await Promise.all(
        Array.from({ length: 25 }, () =>
          db.transaction(async (tx) => {
            const [row] = await tx.query<{ value: number }>(`SELECT value FROM sync_counter WHERE name = 'c'`);
            await new Promise((r) => setImmediate(r));
            await tx.execute(`UPDATE sync_counter SET value = ? WHERE name = 'c'`, [Number(row!.value) + 1]);
          }),
        ),
      );
      const [row] = await db.query<{ value: number }>(`SELECT value FROM sync_counter WHERE name = 'c'`);
      expect(Number(row!.value)).toBe(25);
    } finally {
      await db.close();
    }
  });

  it('a failed transaction does not block the ones queued behind it', async () => {
    const db = await Database.open('sqlite::memory:', { role: 'site' });
    try {
      const failing = db.transaction(async () => {
        throw new Error('nope');
      });
      const next = db.transaction(async (tx) => tx.query('SELECT 1 AS ok'));
      await expect(failing).rejects.toThrow('nope');
      await expect(next).resolves.toEqual([{ ok: 1 }]);
    } finally {
      await db.close();
    }
  });
});

describe('opening a database that is not there', () => {
  it('an unsupported URL is a configuration error', async () => {
    await expect(Database.open('oracle://h/x', { role: 'central' })).rejects.toBeInstanceOf(ConfigError);
  });

  it('an unreachable PostgreSQL server is a transient error (retry), with or without a schema', async () => {
    for (const url of [
      'postgres://postgres:pw@127.0.0.1:1/test',
      'postgres://postgres:pw@127.0.0.1:1/test?schema=s1',
    ]) {
      const err = await Database.open(url, { role: 'central' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(TransientError);
      expect((err as TransientError).code).toBe('DB_UNREACHABLE');
      expect((err as Error).message).not.toContain(':pw@');
    }
  });

  it('an unreachable SQL Server is a transient error (retry)', async () => {
    const err = await Database.open('mssql://sa:pw@127.0.0.1:1/master', { role: 'central' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TransientError);
    expect((err as Error).message).not.toContain(':pw@');
  });

  it('an unreachable MariaDB server is a transient error (retry)', async () => {
    const err = await Database.open('mysql://root:pw@127.0.0.1:1/test', { role: 'central' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TransientError);
  });

  it('the error of every dialect names the database, where its URL was set, and never the password', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sitesync-open-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const notAFolder = join(dir, 'not-a-folder');
    writeFileSync(notAFolder, '');
    for (const url of [
      'postgres://sync:pw@127.0.0.1:1/central',
      'mssql://sa:pw@127.0.0.1:1/master',
      'mysql://root:pw@127.0.0.1:1/test',
      `sqlite:${join(notAFolder, 'site.db')}`,
    ]) {
      const err = await Database.open(url, { role: 'site', urlSource: 'SYNC_DB_URL' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      const message = (err as Error).message;
      expect(message).toMatch(/^cannot open the site database at /);
      expect(message).toMatch(/ — check SYNC_DB_URL$/);
      expect(message).not.toContain(':pw@');
      if (!url.startsWith('sqlite:')) expect(message).toContain('(password hidden)');
    }
  });

  it.skipIf(!postgresUrl())(
    'a PostgreSQL database that does not exist is a configuration error naming db.url',
    async () => {
      const u = new URL(postgresUrl()!);
      u.pathname = `/${uniqueName('nodb')}`;
      const err = await Database.open(u.toString(), { role: 'central' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).key).toBe('db.url');
    },
  );

  it.skipIf(!mysqlUrl())('a MariaDB database that does not exist is a configuration error naming db.url', async () => {
    const u = new URL(mysqlUrl()!);
    u.pathname = `/${uniqueName('nodb')}`;
    const err = await Database.open(u.toString(), { role: 'central' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
  });
});

// the scratch helper itself must leave nothing behind
describe.skipIf(!postgresUrl())('scratch PostgreSQL schemas', () => {
  it('are dropped', async () => {
    const s = await createScratch('postgres');
    const db = await Database.open(s.url, { role: 'central', migrate: false });
    const schema = new URL(s.url).searchParams.get('schema')!;
    await db.close();
    await s.drop();
    const admin = await Database.open(postgresUrl()!, { role: 'central', migrate: false });
    try {
      expect(await admin.query('SELECT 1 FROM information_schema.schemata WHERE schema_name = ?', [schema])).toEqual(
        [],
      );
    } finally {
      await admin.close();
    }
  });
});
