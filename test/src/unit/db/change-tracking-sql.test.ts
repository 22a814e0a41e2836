import { describe, expect, it } from 'vitest';
import { changeTrackingTriggers, dialectFor, type ResolvedPipeline } from '@sitesync/db';
import { HashingFileSchema } from '@sitesync/protocol';

/** A resolved two-table pipeline, as resolvePipeline returns it, without a database. */
function pipeline(): ResolvedPipeline {
  const spec = (name: string, type: 'integer' | 'text') => ({ name, type, nullable: false });
  const config = HashingFileSchema.parse({
    name: 'lab',
    baseEntity: 'lab_orders',
    linkEntities: [{ entity: 'lab_results', join: { order_id: 'order_id' } }],
    changeTracking: 'triggers',
  });
  return {
    name: 'lab',
    config,
    header: {
      table: 'lab_orders',
      key: ['order_id'],
      columns: ['order_id', 'status'],
      specs: [spec('order_id', 'integer'), spec('status', 'text')],
    },
    detail: {
      table: 'lab_results',
      key: ['result_id'],
      columns: ['result_id', 'order_id', 'value'],
      specs: [spec('result_id', 'integer'), spec('order_id', 'integer'), spec('value', 'text')],
      join: { order_id: 'order_id' },
      joinColumns: ['order_id'],
    },
    inTable: {},
    shape: { name: 'lab', algorithm: 'md5', header: { key: ['order_id'], columns: [] }, detail: null },
  } as unknown as ResolvedPipeline;
}

describe('change-tracking triggers, statement forms (no server needed)', () => {
  it('SQL Server: one AFTER INSERT, UPDATE, DELETE trigger per table queuing keys from inserted and deleted', () => {
    const sql = changeTrackingTriggers(dialectFor('mssql'), pipeline());
    expect(sql).toHaveLength(2);
    expect(sql[0]).toBe(
      'CREATE OR ALTER TRIGGER [sync_trg_lab_lab_orders_all] ON [lab_orders] AFTER INSERT, UPDATE, DELETE AS BEGIN SET NOCOUNT ON; ' +
        'INSERT INTO [sync_dirty_lab] ([order_id]) SELECT [order_id] FROM inserted UNION SELECT [order_id] FROM deleted; END',
    );
    // The detail table queues its header's key through the join column.
    expect(sql[1]).toContain('ON [lab_results] AFTER INSERT, UPDATE, DELETE');
    expect(sql[1]).toContain('INSERT INTO [sync_dirty_lab] ([order_id]) SELECT [order_id] FROM inserted');
  });

  it('PostgreSQL: a row trigger calling a schema-qualified function, old key queued only when the key changed', () => {
    const sql = changeTrackingTriggers(dialectFor('postgres'), pipeline(), 'site_a');
    expect(sql[0]).toMatch(/^CREATE OR REPLACE FUNCTION "site_a"\."sync_trg_lab_lab_orders_fn"\(\) RETURNS trigger/);
    expect(sql[0]).toContain('INSERT INTO "site_a"."sync_dirty_lab" ("order_id") VALUES (NEW."order_id")');
    expect(sql[0]).toContain('(OLD."order_id") IS DISTINCT FROM (NEW."order_id")');
    expect(sql[2]).toBe(
      'CREATE TRIGGER "sync_trg_lab_lab_orders_all" AFTER INSERT OR UPDATE OR DELETE ON "lab_orders" FOR EACH ROW EXECUTE FUNCTION "site_a"."sync_trg_lab_lab_orders_fn"()',
    );
  });

  it('SQLite and MySQL: one trigger per event, never a statement with a value from the data', () => {
    for (const name of ['sqlite', 'mysql'] as const) {
      const sql = changeTrackingTriggers(dialectFor(name), pipeline());
      const creates = sql.filter((s) => s.startsWith('CREATE TRIGGER'));
      expect(creates, name).toHaveLength(6);
      for (const s of creates) expect(s, name).toMatch(/AFTER (INSERT|UPDATE|DELETE) ON/);
    }
  });
});
