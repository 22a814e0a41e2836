import { describe, expect, it } from 'vitest';
import { BatchMerger, TargetTables, registerSite } from '@sitesync/central';
import type { Database } from '@sitesync/db';
import { MessageRejectedError, type DecodedMessage, type PipelineShape, type WireValues } from '@sitesync/protocol';
import { reportSkip } from '../support/services.js';
import { deliveredBatch, senderChecked, valueBatch, type SenderCheckedMerger } from '../support/messages.js';
import { backendUrl, scratchPerTest, type BackendName } from '../unit/db/scratch-databases.js';
import { checkCentralDatabase } from '@sitesync/syncctl';

const SITE_ID = 131;
const TABLE = 'c_narrow';
/** A site's columns in full: unbounded text, a long decimal, a double, a wall clock, a date. */
const SHAPE: PipelineShape = {
  name: 'narrow',
  algorithm: 'md5',
  header: {
    key: ['id'],
    columns: [
      { name: 'id', type: 'integer', nullable: false, kind: 'int64' },
      { name: 'n', type: 'integer', nullable: true, kind: 'int64' },
      { name: 't', type: 'text', nullable: true, kind: 'text' },
      { name: 'd', type: 'number', nullable: true, kind: 'decimal', precision: 30, scale: 15 },
      { name: 'f', type: 'number', nullable: true, kind: 'float64' },
      { name: 'ts', type: 'timestamp', nullable: true, kind: 'timestamp' },
      { name: 'dt', type: 'timestamp', nullable: true, kind: 'date' },
    ],
  },
  detail: null,
};

/**
 * The target table as an earlier release (or an operator) made it: MariaDB text as TEXT (64 KB),
 * every number as DECIMAL(38,10), timestamps as DATETIME(3); PostgreSQL numbers as NUMERIC,
 * timestamps and dates as TIMESTAMPTZ, here with an operator's VARCHAR(100) and NUMERIC(38,10).
 */
const LEGACY: Record<'postgres' | 'mysql', string> = {
  mysql:
    `CREATE TABLE ${TABLE} (id_efector INT NOT NULL, id BIGINT NOT NULL, n INT, t TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci, ` +
    `d DECIMAL(38,10), f DECIMAL(38,10), ts DATETIME(3), dt DATETIME(3), PRIMARY KEY (id_efector, id))`,
  postgres:
    `CREATE TABLE ${TABLE} (id_efector INT NOT NULL, id BIGINT NOT NULL, n INTEGER, t VARCHAR(100) NOT NULL, ` +
    `d NUMERIC(38,10), f NUMERIC, ts TIMESTAMPTZ, dt TIMESTAMPTZ, PRIMARY KEY (id_efector, id))`,
};

const MB_TEXT = 'añ€😀'.repeat(1 << 18); // 1 M characters, 2.75 MB of UTF-8
const LONG_DECIMAL = '123456789012345.123456789012345';
const BIG_INT = '9007199254740993';

function delivered(rows: WireValues[], version = 1): DecodedMessage<'batch'> {
  return deliveredBatch(valueBatch(SITE_ID, SHAPE, rows, version));
}

describe.each(['postgres', 'mysql'] as const)(
  'target columns an earlier release made narrow, at a %s central',
  (backend) => {
    const url = backendUrl(backend as BackendName);
    const openDb = scratchPerTest(backend);

    async function legacyCentral(): Promise<{ db: Database; merger: SenderCheckedMerger; widened: string[] }> {
      const db = await openDb('central');
      await db.query(LEGACY[backend]);
      await registerSite(db, { siteId: SITE_ID, pipeline: SHAPE.name, headerTable: TABLE });
      const widened: string[] = [];
      const targets = new TargetTables(db, undefined, (_t, cols, err) => {
        if (err) throw err instanceof Error ? err : new Error(String(err));
        widened.push(...cols);
      });
      return { db, merger: senderChecked(db, new BatchMerger(db, targets)), widened };
    }

    async function stored(db: Database, id: number): Promise<Record<string, unknown> | undefined> {
      const text = (c: string) => (backend === 'postgres' ? `${c}::text AS ${c}` : `CAST(${c} AS CHAR) AS ${c}`);
      const rows = await db.query<Record<string, unknown>>(
        `SELECT ${['n', 't', 'd', 'f', 'ts', 'dt'].map(text).join(', ')} FROM ${TABLE} WHERE id_efector = ? AND id = ?`,
        [SITE_ID, id],
      );
      return rows[0];
    }

    it.skipIf(reportSkip(`narrow columns on ${backend}`, url))(
      'same-family columns are widened in place and a 1 MB text, a long decimal and a big integer arrive exactly',
      async () => {
        const { db, merger, widened } = await legacyCentral();
        const ts = '2024-03-10T02:30:00.123456';
        await expect(
          merger.merge(delivered([[1, BIG_INT, MB_TEXT, LONG_DECIMAL, 0.5, ts, '2024-01-02']])),
        ).resolves.toMatchObject({ status: 'applied' });
        const types = await db.columnTypes(TABLE);
        expect(types.get('n')!.sqlType).toMatch(/^bigint/);
        if (backend === 'mysql') {
          expect(types.get('t')!.sqlType).toBe('longtext');
          // the column keeps its character set and collation
          expect(types.get('t')!.collation).toBe('utf8mb4_unicode_ci');
          // integer digits and scale both kept at least: 28 of the old column, 15 of the site's
          expect(types.get('d')!.sqlType).toBe('decimal(43,15)');
          expect(types.get('ts')!.sqlType).toBe('datetime(6)');
          // a double in a DECIMAL is another family: left as it is
          expect(types.get('f')!.sqlType).toBe('decimal(38,10)');
        } else {
          expect(types.get('t')!.sqlType).toBe('text');
          expect(types.get('t')!.nullable).toBe(false);
          expect(types.get('d')!.sqlType).toBe('numeric(43,15)');
          expect(types.get('ts')!.sqlType).toBe('timestamp with time zone');
        }
        expect(widened.length).toBeGreaterThan(0);
        const row = await stored(db, 1);
        expect(row!.n).toBe(BIG_INT);
        expect(row!.t).toBe(MB_TEXT);
        expect(row!.d).toBe(LONG_DECIMAL);
        if (backend === 'mysql') expect(row!.ts).toBe('2024-03-10 02:30:00.123456');
      },
    );

    it.skipIf(reportSkip(`narrow columns on ${backend}`, url))(
      'a value a narrow column of another family would change is refused naming the table and column, and nothing is stored',
      async () => {
        const { db, merger } = await legacyCentral();
        // MariaDB's DECIMAL(38,10) would round it to 0.3; PostgreSQL's NUMERIC keeps it, but has no -0
        const bad = backend === 'mysql' ? 0.30000000000000004 : '-0';
        const err = await merger.merge(delivered([[1, 1, 'x', '1.5', bad, null, null]])).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(MessageRejectedError);
        expect((err as MessageRejectedError).reason).toBe('bad-content');
        expect((err as MessageRejectedError).message).toMatch(
          backend === 'mysql'
            ? /column c_narrow\.f of header \[1\] holds 0\.30000000000000004, which the central column's decimal\(38,10\) would round to 10 decimals/
            : /column c_narrow\.f of header \[1\] holds a negative zero/,
        );
        expect(await stored(db, 1)).toBeUndefined();
        // a double the column does hold exactly goes through
        const fine = backend === 'mysql' ? 0.25 : 0.30000000000000004;
        await expect(merger.merge(delivered([[1, 1, 'x', '1.5', fine, null, null]], 2))).resolves.toMatchObject({
          status: 'applied',
        });
        expect(Number((await stored(db, 1))!.f)).toBe(fine);
      },
    );

    it.skipIf(reportSkip(`narrow columns on ${backend}`, url))(
      'db check reports the columns of another family with what they cost, and not those the central widened',
      async () => {
        const { db, merger } = await legacyCentral();
        await merger.merge(delivered([[1, 1, 'x', '1.5', 0.5, '2024-01-02T03:04:05', '2024-01-02']]));
        const findings = (await checkCentralDatabase(db)).filter((f) => f.kind === 'narrow-column');
        const where = findings.map((f) => f.where).sort();
        expect(where).toEqual(
          backend === 'mysql' ? [`${TABLE}.dt`, `${TABLE}.f`] : [`${TABLE}.dt`, `${TABLE}.f`, `${TABLE}.ts`],
        );
        const f = findings.find((x) => x.where === `${TABLE}.f`)!;
        expect(f.keys).toEqual([`id_efector=${SITE_ID}, pipeline=${SHAPE.name}`]);
        expect(f.problem).toMatch(
          backend === 'mysql'
            ? /decimal\(38,10\) where the site's column is double: a double with more than 10 decimals/
            : /numeric where the site's column is double: a negative zero is refused/,
        );
        expect(f.fix).toMatch(
          backend === 'mysql' ? /MODIFY `f` DOUBLE NULL/ : /ALTER COLUMN "f" TYPE DOUBLE PRECISION/,
        );
        if (backend === 'postgres') {
          const ts = findings.find((x) => x.where === `${TABLE}.ts`)!;
          expect(ts.problem).toMatch(
            /timestamp with time zone where the site's column is timestamp \(wall clock, no time zone\): a wall-clock time is stored as an instant/,
          );
        }
      },
    );
  },
);
