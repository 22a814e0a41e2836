import { describe, expect, it } from 'vitest';
import { BatchMerger, TargetTables, registerSite } from '@sitesync/central';
import type { Database } from '@sitesync/db';
import { MessageRejectedError, toWireValue, type DecodedMessage, type PipelineShape } from '@sitesync/protocol';
import { type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl, postgresUrl, reportSkip } from '../support/services.js';
import { deliveredBatch, senderChecked, valueBatch, type SenderCheckedMerger } from '../support/messages.js';
import { backendUrl, scratchPerTest, type BackendName } from '../unit/db/scratch-databases.js';

const SITE_ID = 101;
const SHAPE: PipelineShape = {
  name: 'floats',
  algorithm: 'md5',
  header: {
    key: ['id'],
    columns: [
      { name: 'id', type: 'integer', nullable: false, kind: 'int64' },
      { name: 'f', type: 'number', nullable: true, kind: 'float64' },
    ],
  },
  detail: null,
};
/** The doubles JSON cannot carry as numbers, as a site's driver reads them. */
const ODD = [NaN, Infinity, -Infinity, -0];

/** A batch of one header per value, as the central's consumer hands it on. */
function delivered(values: number[], firstId = 1): DecodedMessage<'batch'> {
  return deliveredBatch(
    valueBatch(
      SITE_ID,
      SHAPE,
      values.map((v, i) => [firstId + i, toWireValue(v)]),
    ),
  );
}

describe.each(['sqlite', 'postgres', 'mysql'] as BackendName[])('NaN, infinities and -0 at a %s central', (backend) => {
  const url = backendUrl(backend);
  const openDb = scratchPerTest(backend);

  async function merger(): Promise<{ db: Database; merger: SenderCheckedMerger }> {
    const db = await openDb('central');
    await registerSite(db, { siteId: SITE_ID, pipeline: 'floats', headerTable: 'c_floats' });
    return { db, merger: senderChecked(db, new BatchMerger(db, new TargetTables(db))) };
  }

  /** The stored double of header `id` (as text on PostgreSQL: its own spelling), undefined when none. */
  async function stored(db: Database, id: number): Promise<unknown> {
    if (!(await db.describeTable('c_floats'))) return undefined;
    const f = backend === 'postgres' ? 'f::text AS f' : 'f';
    const rows = await db.query<{ f: unknown }>(`SELECT ${f} FROM c_floats WHERE id_efector = ? AND id = ?`, [
      SITE_ID,
      id,
    ]);
    return rows[0]?.f;
  }

  it.skipIf(reportSkip(`float values on ${backend}`, url))(
    'each is stored exactly where the database holds it, and refused with the column named where not',
    async () => {
      const { db, merger: m } = await merger();
      const holds = (v: number) =>
        backend === 'postgres' || (backend === 'sqlite' && (v === Infinity || v === -Infinity));
      for (const [i, v] of ODD.entries()) {
        const id = i + 1;
        const one = delivered([v], id);
        if (holds(v)) {
          await expect(m.merge(one), String(v)).resolves.toMatchObject({ status: 'applied' });
          const got = await stored(db, id);
          if (backend === 'postgres') expect(got, String(v)).toBe(Object.is(v, -0) ? '-0' : String(v));
          else expect(Object.is(got, v), `${String(v)} stored as ${String(got)}`).toBe(true);
        } else {
          const err = await m.merge(one).catch((e: unknown) => e);
          expect(err, String(v)).toBeInstanceOf(MessageRejectedError);
          expect((err as MessageRejectedError).message).toMatch(new RegExp(`column f of header \\[${id}\\] holds`));
          expect(await stored(db, id), String(v)).toBeUndefined();
        }
      }
    },
  );
});

const broker = amqpUrl();
describe.skipIf(!broker || !postgresUrl())('doubles from a PostgreSQL site', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('NaN, the infinities and -0 reach a PostgreSQL central as they are, and change nothing the next session', async () => {
    const central = await world.startCentral(world.dbUrl('postgres', 'central'));
    const cdb = central.database!;
    await world.registerSite(cdb, SITE_ID, { pipeline: 'floats', header: 'c_floats', detail: undefined });
    const siteUrl = world.dbUrl('postgres', 'site');
    const sdb = await world.open(siteUrl, 'site');
    await sdb.query(`CREATE TABLE floats (id BIGINT PRIMARY KEY, f DOUBLE PRECISION)`);
    await sdb.query(
      `INSERT INTO floats VALUES (1, 'NaN'), (2, 'Infinity'), (3, '-Infinity'), (4, '-0'), (5, 0.30000000000000004), (6, NULL)`,
    );
    const site = await world.startSite(
      world.siteConfig(SITE_ID, siteUrl, { pipelines: [{ name: 'floats', baseEntity: 'floats' }] }),
    );
    const first = await site.runSession();
    expect(first.error).toBeUndefined();
    expect(first.status).toBe('ok');
    const rows = await cdb.query<{ id: unknown; f: string | null }>(
      `SELECT id, f::text AS f FROM c_floats WHERE id_efector = ? ORDER BY id`,
      [SITE_ID],
    );
    expect(rows.map((r) => r.f)).toEqual(['NaN', 'Infinity', '-Infinity', '-0', '0.30000000000000004', null]);
    expect((await site.runSession()).totals).toMatchObject({ headers: 0, deletions: 0 });
  });
});
