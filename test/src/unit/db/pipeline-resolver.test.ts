import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, PipelineShapeSchema, type HashingFileInput } from '@sitesync/protocol';
import { resolvePipeline, type Database } from '@sitesync/db';
import { reportSkip } from '../../support/services.js';
import { backendUrl, openScratch, type BackendName, type Scratch } from './scratch-databases.js';

const BACKENDS: BackendName[] = ['sqlite', 'postgres', 'mysql', 'mssql'];

async function createTables(db: Database): Promise<void> {
  const d = db.dialect;
  const q = (s: string) => d.quote(s);
  const text = (n: number) => d.textType(n);
  const statements = [
    `CREATE TABLE ${q('orders')} (${q('id')} INT NOT NULL PRIMARY KEY, ${q('patient')} ${text(50)}, ${q('total')} DECIMAL(10, 2),
      ${q('created')} ${d.timestampType()} NULL, ${q('SourceHash')} ${text(64)}, ${q('TargetHash')} ${text(64)}, ${q('IsSync')} ${d.booleanType()})`,
    `CREATE TABLE ${q('order_lines')} (${q('order_id')} INT NOT NULL, ${q('line')} INT NOT NULL, ${q('product')} ${text(50)},
      ${q('qty')} INT, PRIMARY KEY (${q('order_id')}, ${q('line')}))`,
    `CREATE TABLE ${q('samples')} (${q('lab')} INT NOT NULL, ${q('num')} INT NOT NULL, ${q('kind')} ${text(20)}, PRIMARY KEY (${q('lab')}, ${q('num')}))`,
    `CREATE TABLE ${q('sample_results')} (${q('s_lab')} INT NOT NULL, ${q('s_num')} INT NOT NULL, ${q('seq')} INT NOT NULL,
      ${q('value')} ${text(20)}, PRIMARY KEY (${q('s_lab')}, ${q('s_num')}, ${q('seq')}))`,
    `CREATE TABLE ${q('nokey')} (${q('a')} INT NOT NULL, ${q('b')} ${text(20)})`,
    `CREATE TABLE ${q('custom_hash')} (${q('id')} INT NOT NULL PRIMARY KEY, ${q('x')} ${text(20)}, ${q('SH')} ${text(64)}, ${q('TH')} ${text(64)})`,
    `CREATE TABLE ${q('victim')} (${q('id')} INT NOT NULL PRIMARY KEY)`,
  ];
  for (const s of statements) await db.execute(s);
  await db.execute(`INSERT INTO ${q('victim')} (${q('id')}) VALUES (1)`);
}

const ORDERS_WITH_LINES: HashingFileInput = {
  name: 'orders',
  baseEntity: 'orders',
  linkEntities: ['orders', { entity: 'order_lines', join: { order_id: 'id' } }],
};

for (const backend of BACKENDS) {
  const url = backendUrl(backend);

  describe.skipIf(reportSkip(`resolvePipeline on ${backend}`, url))(`resolvePipeline on ${backend}`, () => {
    let db: Database;
    let scratch: Scratch;

    beforeAll(async () => {
      ({ db, scratch } = await openScratch(backend, 'site', false));
      await createTables(db);
    });
    afterAll(async () => {
      await db?.close();
      await scratch?.drop();
    });

    async function configError(input: HashingFileInput, keyPrefix?: string): Promise<ConfigError> {
      const err = await resolvePipeline(db, input, keyPrefix).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConfigError);
      const c = err as ConfigError;
      expect(c.code).toBe('CONFIG');
      expect(c.message.startsWith(`${c.key}: `)).toBe(true);
      return c;
    }

    async function victimSurvives(): Promise<void> {
      expect(await db.describeTable('victim')).toBeDefined();
      expect(await db.query(`SELECT ${db.dialect.quote('id')} FROM ${db.dialect.quote('victim')}`)).toHaveLength(1);
    }

    describe('defaults', () => {
      it('a header-only pipeline: key from the primary key, every column but the hash fields, hash fields found in the table', async () => {
        const p = await resolvePipeline(db, { baseEntity: 'orders' });
        expect(p.name).toBe('main');
        expect(p.config.algorithm).toBe('md5');
        expect(p.header.table).toBe('orders');
        expect(p.header.key).toEqual(['id']);
        expect(p.header.columns).toEqual(['id', 'patient', 'total', 'created']);
        expect(p.header.specs.map((s) => [s.name, s.type])).toEqual([
          ['id', 'integer'],
          ['patient', 'text'],
          ['total', 'number'],
          ['created', 'timestamp'],
        ]);
        expect(p.header.specs.find((s) => s.name === 'patient')!.nullable).toBe(true);
        expect(p.inTable).toEqual({ source: 'SourceHash', target: 'TargetHash', sync: 'IsSync' });
        expect(p.detail).toBeNull();
        expect(p.shape.detail).toBeNull();
        expect(PipelineShapeSchema.parse(p.shape)).toEqual(p.shape);
      });

      it('a detail table: its key from its primary key, joined on the header key, all its columns', async () => {
        const p = await resolvePipeline(db, ORDERS_WITH_LINES);
        expect(p.name).toBe('orders');
        expect(p.detail).not.toBeNull();
        expect(p.detail!.table).toBe('order_lines');
        expect(p.detail!.key).toEqual(['order_id', 'line']);
        expect(p.detail!.join).toEqual({ order_id: 'id' });
        expect(p.detail!.joinColumns).toEqual(['order_id']);
        expect(p.detail!.columns).toEqual(['order_id', 'line', 'product', 'qty']);
        expect(p.shape).toEqual({
          name: 'orders',
          algorithm: 'md5',
          header: { key: ['id'], columns: p.header.specs },
          detail: { key: ['order_id', 'line'], join: { order_id: 'id' }, columns: p.detail!.specs },
        });
        expect(PipelineShapeSchema.safeParse(p.shape).success).toBe(true);
      });

      it('a table without the hash columns keeps them elsewhere (nothing in table)', async () => {
        const p = await resolvePipeline(db, { baseEntity: 'samples' });
        expect(p.inTable).toEqual({});
        expect(p.header.key).toEqual(['lab', 'num']);
        expect(p.header.columns).toEqual(['lab', 'num', 'kind']);
      });

      it('custom names of the hash fields are excluded from the hash and found in the table', async () => {
        const p = await resolvePipeline(db, {
          baseEntity: 'custom_hash',
          fieldSourceHash: 'SH',
          fieldTargetHash: 'TH',
          algorithm: 'sha256',
        });
        expect(p.header.columns).toEqual(['id', 'x']);
        expect(p.inTable).toEqual({ source: 'SH', target: 'TH' });
        expect(p.shape.algorithm).toBe('sha256');
      });

      it('a composite header key maps its join columns in header-key order, whatever the join order', async () => {
        const p = await resolvePipeline(db, {
          baseEntity: 'samples',
          linkEntities: [{ entity: 'sample_results', join: { s_num: 'num', s_lab: 'lab' } }],
        });
        expect(p.header.key).toEqual(['lab', 'num']);
        expect(p.detail!.joinColumns).toEqual(['s_lab', 's_num']);
        expect(p.detail!.key).toEqual(['s_lab', 's_num', 'seq']);
      });

      it('an explicit key makes a table without primary key usable', async () => {
        const p = await resolvePipeline(db, { baseEntity: 'nokey', key: ['a'] });
        expect(p.header.key).toEqual(['a']);
        expect(p.header.columns).toEqual(['a', 'b']);
      });

      it('an explicit detail key overrides the primary key', async () => {
        const p = await resolvePipeline(db, {
          baseEntity: 'orders',
          linkEntities: [{ entity: 'order_lines', join: { order_id: 'id' }, key: ['line'] }],
        });
        expect(p.detail!.key).toEqual(['line']);
      });

      it('a single-condition filter is kept', async () => {
        const p = await resolvePipeline(db, { baseEntity: 'orders', filter: "total > 0 AND patient <> 'x'" });
        expect(p.config.filter).toBe("total > 0 AND patient <> 'x'");
      });
    });

    describe('attributes', () => {
      it('unqualified names are looked up in the header, then the detail; keys and join columns are always sent', async () => {
        const p = await resolvePipeline(db, { ...ORDERS_WITH_LINES, attributes: ['total', 'qty'] });
        expect(p.header.columns).toEqual(['id', 'total']);
        expect(p.detail!.columns).toEqual(['order_id', 'line', 'qty']);
        expect(p.shape.header.columns.map((c) => c.name)).toEqual(['id', 'total']);
      });

      it('qualified names go to their table', async () => {
        const p = await resolvePipeline(db, {
          ...ORDERS_WITH_LINES,
          attributes: ['order_lines.product', 'orders.created'],
        });
        expect(p.header.columns).toEqual(['id', 'created']);
        expect(p.detail!.columns).toEqual(['order_id', 'line', 'product']);
      });

      it('columns keep table order whatever the order of the attributes', async () => {
        const p = await resolvePipeline(db, { baseEntity: 'orders', attributes: ['created', 'patient', 'total'] });
        expect(p.header.columns).toEqual(['id', 'patient', 'total', 'created']);
      });

      it('a column missing from every table of the pipeline names its attribute', async () => {
        const e = await configError({ ...ORDERS_WITH_LINES, attributes: ['total', 'nope'] });
        expect(e.key).toBe('pipelines[0].attributes[1]');
        expect(e.message).toContain('nope');
      });

      it('a qualified column missing from its table names its attribute', async () => {
        expect((await configError({ ...ORDERS_WITH_LINES, attributes: ['order_lines.total'] })).key).toBe(
          'pipelines[0].attributes[0]',
        );
        expect((await configError({ ...ORDERS_WITH_LINES, attributes: ['qty', 'orders.qty'] })).key).toBe(
          'pipelines[0].attributes[1]',
        );
      });

      it('a table that is not part of the pipeline names its attribute', async () => {
        expect((await configError({ baseEntity: 'orders', attributes: ['victim.id'] })).key).toBe(
          'pipelines[0].attributes[0]',
        );
        expect((await configError({ baseEntity: 'orders', attributes: ['order_lines.qty'] })).key).toBe(
          'pipelines[0].attributes[0]',
        );
      });
    });

    describe('configuration errors name the offending setting', () => {
      it('unknown base table', async () => {
        const e = await configError({ baseEntity: 'no_such_table' });
        expect(e.key).toBe('pipelines[0].baseEntity');
        expect(e.message).toContain('no_such_table');
      });

      it("uses the caller's key prefix", async () => {
        expect((await configError({ baseEntity: 'orders', key: ['nope'] }, 'pipelines[3]')).key).toBe(
          'pipelines[3].key[0]',
        );
        expect(
          (await configError({ baseEntity: 'orders', algorithm: 'crc32' as 'md5' }, 'site.pipelines[1]')).key,
        ).toBe('site.pipelines[1].algorithm');
      });

      it('a table name differing only in case gets a hint', async () => {
        const e = await configError({ baseEntity: 'ORDER_LINES' });
        expect(e.key).toBe('pipelines[0].baseEntity');
        expect(e.message).toMatch(/did you mean "([^"]*\.)?order_lines"/);
      });

      it('unknown detail table', async () => {
        const e = await configError({
          baseEntity: 'orders',
          linkEntities: [{ entity: 'no_lines', join: { order_id: 'id' } }],
        });
        expect(e.key).toMatch(/^pipelines\[0\]\.linkEntities(\[\d+\])?\.entity$/);
        expect(e.message).toContain('no_lines');
      });

      it('a base table named like an injection is an unknown table, and runs nothing', async () => {
        // (in parallel: each unknown table makes the resolver list the whole catalog for its hint, which is slow)
        const names = ['x; DROP TABLE victim', "victim'); DROP TABLE victim; --"];
        const errors = await Promise.all(names.map((baseEntity) => configError({ baseEntity })));
        for (const e of errors) expect(e.key).toBe('pipelines[0].baseEntity');
        await victimSurvives();
      });

      it('a detail table named like an injection is an unknown table, and runs nothing', async () => {
        const entities = ['order_lines; DROP TABLE victim', "x' OR '1'='1'); DROP TABLE victim; --"];
        const errors = await Promise.all(
          entities.map((entity) =>
            configError({ baseEntity: 'orders', linkEntities: [{ entity, join: { order_id: 'id' } }] }),
          ),
        );
        for (const e of errors) expect(e.key).toMatch(/^pipelines\[0\]\.linkEntities(\[\d+\])?\.entity$/);
        await victimSurvives();
      });

      it('a join that does not cover the header key', async () => {
        const partial = await configError({
          baseEntity: 'samples',
          linkEntities: [{ entity: 'sample_results', join: { s_lab: 'lab' } }],
        });
        expect(partial.key).toBe('pipelines[0].linkEntities.join');
        expect(partial.message).toContain('lab, num');
        const wrong = await configError({
          baseEntity: 'orders',
          linkEntities: [{ entity: 'order_lines', join: { product: 'patient' } }],
        });
        expect(wrong.key).toBe('pipelines[0].linkEntities.join');
        const extra = await configError({
          baseEntity: 'orders',
          linkEntities: [{ entity: 'order_lines', join: { order_id: 'id', product: 'patient' } }],
        });
        expect(extra.key).toBe('pipelines[0].linkEntities.join');
      });

      it('a join naming a column that does not exist', async () => {
        const detailSide = await configError({
          baseEntity: 'orders',
          linkEntities: [{ entity: 'order_lines', join: { nope: 'id' } }],
        });
        expect(detailSide.key).toBe('pipelines[0].linkEntities.join');
        const headerSide = await configError({
          baseEntity: 'orders',
          linkEntities: [{ entity: 'order_lines', join: { order_id: 'nope' } }],
        });
        expect(headerSide.key).toBe('pipelines[0].linkEntities.join');
      });

      it('a filter that is more than one condition', async () => {
        for (const filter of ['total > 0; DELETE FROM victim', 'total > 0 -- and the rest', 'total > 0 /* x */']) {
          const e = await configError({ baseEntity: 'orders', filter });
          expect(e.key).toBe('pipelines[0].filter');
        }
        await victimSurvives();
      });

      it('a key column that does not exist, or a table without primary key and no key', async () => {
        expect((await configError({ baseEntity: 'orders', key: ['id', 'nope'] })).key).toBe('pipelines[0].key[1]');
        expect((await configError({ baseEntity: 'nokey' })).key).toBe('pipelines[0].key');
        const detail = await configError({
          baseEntity: 'orders',
          linkEntities: [{ entity: 'nokey', join: { a: 'id' } }],
        });
        expect(detail.key).toMatch(/^pipelines\[0\]\.linkEntities(\[\d+\])?\.key$/);
        const detailKey = await configError({
          baseEntity: 'orders',
          linkEntities: [{ entity: 'order_lines', join: { order_id: 'id' }, key: ['zz'] }],
        });
        expect(detailKey.key).toMatch(/^pipelines\[0\]\.linkEntities(\[\d+\])?\.key\[0\]$/);
      });

      it('more than one detail table, or a detail table without its join', async () => {
        const two = await configError({
          baseEntity: 'samples',
          linkEntities: [
            { entity: 'sample_results', join: { s_lab: 'lab', s_num: 'num' } },
            { entity: 'order_lines', join: { order_id: 'lab', line: 'num' } },
          ],
        });
        expect(two.key).toBe('pipelines[0].linkEntities');
        expect((await configError({ baseEntity: 'orders', linkEntities: ['orders', 'order_lines'] })).key).toBe(
          'pipelines[0].linkEntities',
        );
      });

      it('a hashing file that breaks its schema names the field', async () => {
        expect((await configError({ baseEntity: 'orders', algorithm: 'crc32' as 'md5' })).key).toBe(
          'pipelines[0].algorithm',
        );
        expect((await configError({} as HashingFileInput)).key).toBe('pipelines[0].baseEntity');
        expect((await configError({ baseEntity: 'orders', name: 'bad name' })).key).toBe('pipelines[0].name');
        expect((await configError({ baseEntity: 'orders', attributes: ['ok', ''] })).key).toBe(
          'pipelines[0].attributes.1',
        );
      });
    });
  });
}
