import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  BatchMerger,
  RETENTION_LOCK,
  RetentionPurge,
  TargetTables,
  parseCentralConfig,
  registerSite,
} from '@sitesync/central';
import {
  INBOX_TABLE,
  LEDGER_TABLE,
  OperationLock,
  REJECTED_TABLE,
  SESSION_TABLE,
  SITE_TABLE,
  type Database,
} from '@sitesync/db';
import { deliveredBatch, labBatch, senderChecked, tableRows } from '../support/messages.js';
import { reportSkip } from '../support/services.js';
import { backendUrl, scratchPerTest, type BackendName } from '../unit/db/scratch-databases.js';

const BACKENDS: BackendName[] = ['sqlite', 'postgres', 'mysql', 'mssql'];
const SITE_ID = 101;
const OTHER_SITE = 102;
const HEADERS = 'central_orders';
const DETAILS = 'central_results';
const DAY_MS = 86_400_000;
/** A year of hourly-ish sessions would be 8,760; this many spread over the year keeps the test quick. */
const OLD_SESSIONS = 3000;
const RETENTION = parseCentralConfig({ amqp: { url: 'amqp://x' }, db: { url: 'sqlite::memory:' } }).retention;

const daysAgo = (now: Date, days: number) => new Date(now.getTime() - days * DAY_MS);

async function insertMany(db: Database, table: string, columns: string[], rows: unknown[][]): Promise<void> {
  const d = db.dialect;
  const chunk = d.chunkSize(columns.length, 10, 200);
  for (let i = 0; i < rows.length; i += chunk) await db.run(d.insertRows(table, columns, rows.slice(i, i + chunk)));
}

async function count(db: Database, table: string, where = '1 = 1', params: unknown[] = []): Promise<number> {
  const r = await db.query<{ n: unknown }>(
    `SELECT COUNT(*) AS n FROM ${db.dialect.quote(table)} WHERE ${where}`,
    params,
  );
  return Number(r[0]!.n);
}

describe.each(BACKENDS)('retention on %s', (backend) => {
  const url = backendUrl(backend);
  const openDb = scratchPerTest(backend);

  it.skipIf(reportSkip(`retention on ${backend}`, url))(
    'a year of control rows is bounded by the purge: old finished rows go, open, recent and shown ones stay, and an old batch merged again changes nothing',
    async () => {
      const db = await openDb('central');
      const d = db.dialect;
      const t = (x: Date) => d.time(x);
      const now = new Date();
      await registerSite(db, { siteId: SITE_ID, pipeline: 'lab', headerTable: HEADERS, detailTable: DETAILS });
      await registerSite(db, { siteId: OTHER_SITE, pipeline: 'lab', headerTable: 'other_orders', detailTable: null });
      const merger = senderChecked(db, new BatchMerger(db, new TargetTables(db)));

      // Real merges: orders 1-3 at version 1, then order 1 deleted at version 2 (its tombstone).
      const oldSession = randomUUID();
      const lastSession = randomUUID();
      const first = deliveredBatch(
        labBatch(SITE_ID, [{ orderId: 1 }, { orderId: 2 }, { orderId: 3 }], { version: 1, sessionId: oldSession }),
      );
      const deletion = deliveredBatch({
        ...labBatch(SITE_ID, [], { version: 2, sessionId: lastSession }),
        changes: [{ op: 'delete', key: [1] }],
      });
      expect((await merger.merge(first)).status).toBe('applied');
      expect((await merger.merge(deletion)).status).toBe('applied');
      // Both merged 200 days ago: the inbox forgets them, the tombstone (365 days) is kept.
      await db.execute(`UPDATE ${INBOX_TABLE} SET processed_at = ?`, [t(daysAgo(now, 200))]);
      await db.execute(`UPDATE ${LEDGER_TABLE} SET updated_at = ?`, [t(daysAgo(now, 200))]);
      const sessionCols = [
        'session_id',
        'id_efector',
        'version',
        'site_started_at',
        'status',
        'acked_at',
        'created_at',
      ];
      await insertMany(db, SESSION_TABLE, sessionCols, [
        [oldSession, SITE_ID, 1, t(daysAgo(now, 201)), 'complete', t(daysAgo(now, 200)), t(daysAgo(now, 200))],
        [lastSession, SITE_ID, 2, t(daysAgo(now, 200)), 'incomplete', t(daysAgo(now, 200)), t(daysAgo(now, 200))],
      ]);

      // A year of sessions fast-forwarded: finished ones over the whole year, a few open old ones, recent ones.
      const sessions: unknown[][] = [];
      const createdAt: Date[] = [];
      const inbox: unknown[][] = [];
      const rejected: unknown[][] = [];
      const statuses = ['complete', 'incomplete', 'abandoned'];
      for (let i = 0; i < OLD_SESSIONS; i++) {
        const at = daysAgo(now, 1 + (364 * i) / OLD_SESSIONS);
        const id = randomUUID();
        const site = i % 2 ? SITE_ID : OTHER_SITE;
        sessions.push([id, site, 100 + i, t(at), statuses[i % 3], t(at), t(at)]);
        createdAt.push(at);
        inbox.push([randomUUID(), site, 'batch', id, 'lab', 1, 2, 0, t(at)]);
        if (i % 10 === 0) rejected.push([randomUUID(), id, site, 'bad-content', t(at)]);
      }
      const openIds: string[] = [];
      for (let i = 0; i < 20; i++) {
        const at = daysAgo(now, 150 + i);
        const id = randomUUID();
        openIds.push(id);
        sessions.push([id, SITE_ID, 10 + i, t(at), 'open', null, t(at)]);
        inbox.push([randomUUID(), SITE_ID, 'batch', id, 'lab', 1, 2, 0, t(at)]);
        rejected.push([randomUUID(), id, SITE_ID, 'bad-content', t(at)]);
      }
      await insertMany(db, SESSION_TABLE, sessionCols, sessions);
      await insertMany(
        db,
        INBOX_TABLE,
        // A batch row as `claimInbox` writes it: id, site, type, session, pipeline, headers, details, deletions, time.
        'message_id id_efector message_type session_id pipeline headers details deletions processed_at'.split(' '),
        inbox,
      );
      await insertMany(
        db,
        REJECTED_TABLE,
        ['message_id', 'session_id', 'id_efector', 'reason', 'rejected_at'],
        rejected,
      );
      // Tombstones of another site: 1,000 of them over the year beyond the 365 days, 500 younger; live rows of any age.
      const ledger: unknown[][] = [];
      for (let i = 0; i < 1500; i++) {
        const age = i < 1000 ? 366 + (i % 300) : 10 + (i % 300);
        ledger.push([OTHER_SITE, 'lab', `[${i}]`, 1, null, d.bool(true), t(daysAgo(now, age))]);
        ledger.push([OTHER_SITE, 'lab', `[${10_000 + i}]`, 1, 'h', d.bool(false), t(daysAgo(now, 400))]);
      }
      await insertMany(
        db,
        LEDGER_TABLE,
        ['id_efector', 'pipeline', 'header_key', 'version', 'row_hash', 'deleted', 'updated_at'],
        ledger,
      );
      // The transfer log: old finished, old in progress, and an intervention moved twice (its newest move stays).
      const transfers: unknown[][] = [];
      const transfer = (state: string, age: number, guid = randomUUID()) =>
        transfers.push([
          randomUUID(),
          guid,
          null,
          OTHER_SITE,
          1,
          null,
          'P',
          1,
          state,
          null,
          'op',
          t(daysAgo(now, age)),
          t(daysAgo(now, age)),
        ]);
      for (let i = 0; i < 600; i++)
        transfer(['completed', 'rejected', 'conflict', 'refused', 'cancelled'][i % 5]!, 400 + (i % 100));
      for (const state of ['accepted', 'requested', 'awaiting-procedure', 'sent']) transfer(state, 500);
      for (let i = 0; i < 10; i++) transfer('refused', 30);
      const moved = randomUUID();
      transfer('completed', 450, moved);
      transfer('completed', 420, moved);
      await insertMany(
        db,
        'intervention_transfer',
        [
          'transfer_id',
          'guid',
          'from_site',
          'to_site',
          'from_local_id',
          'to_local_id',
          'procedure_code',
          'procedure_version',
          'state',
          'reason',
          'requested_by',
          'created_at',
          'updated_at',
        ],
        transfers,
      );

      const target = () => tableRows(db, HEADERS, 'order_id', SITE_ID);
      const details = () => tableRows(db, DETAILS, 'result_id', SITE_ID);
      const siteRow = () => tableRows(db, SITE_TABLE, 'pipeline', SITE_ID);
      const before = { headers: await target(), details: await details(), site: await siteRow() };
      expect(before.headers.map((r) => Number(r.order_id))).toEqual([2, 3]);
      const totalSessions = await count(db, SESSION_TABLE);
      expect(totalSessions).toBe(OLD_SESSIONS + 22);

      const removed = await new RetentionPurge(db, { ...RETENTION, batchSize: 250 }).run(now);
      expect(removed).toBeDefined();

      // Sessions: none older than 90 days survives unless open, a site's last one, or a site's newest complete one.
      const staleKept = await db.query<{ session_id: string; status: string }>(
        `SELECT session_id, status FROM ${SESSION_TABLE} WHERE created_at < ?`,
        [t(daysAgo(now, RETENTION.sessionDays))],
      );
      const kept = new Set(staleKept.map((r) => r.session_id));
      for (const id of openIds) expect(kept.has(id)).toBe(true);
      expect(kept.has(lastSession)).toBe(true);
      expect(staleKept.filter((r) => r.status !== 'open').map((r) => r.session_id)).toEqual([lastSession]);
      const recent = createdAt.filter((at) => at >= daysAgo(now, RETENTION.sessionDays)).length;
      expect(recent).toBeGreaterThan(0);
      expect(await count(db, SESSION_TABLE, 'created_at >= ?', [t(daysAgo(now, RETENTION.sessionDays))])).toBe(recent);
      expect(await count(db, SESSION_TABLE)).toBeLessThan(totalSessions / 3);
      expect(removed!.sessions).toBe(totalSessions - (await count(db, SESSION_TABLE)));

      // Inbox and rejected marks: only the open sessions' old rows remain, and the last session's.
      const oldInbox = await db.query<{ session_id: string }>(
        `SELECT session_id FROM ${INBOX_TABLE} WHERE processed_at < ?`,
        [t(daysAgo(now, RETENTION.inboxDays))],
      );
      expect(new Set(oldInbox.map((r) => r.session_id))).toEqual(new Set([...openIds, lastSession]));
      expect(await count(db, REJECTED_TABLE, 'rejected_at < ?', [t(daysAgo(now, RETENTION.rejectedDays))])).toBe(20);

      // Tombstones: only those younger than 365 days; live ledger rows of any age stay.
      expect(await count(db, LEDGER_TABLE, `id_efector = ? AND deleted = ${d.boolLiteral(true)}`, [OTHER_SITE])).toBe(
        500,
      );
      expect(await count(db, LEDGER_TABLE, `id_efector = ? AND deleted = ${d.boolLiteral(false)}`, [OTHER_SITE])).toBe(
        1500,
      );
      expect(removed!.tombstones).toBe(1000);

      // Transfers: in progress stay whatever their age, recent finished ones stay, and the moved intervention's newest move.
      const left = await db.query<{ guid: string; state: string; updated_at: unknown }>(
        `SELECT guid, state, updated_at FROM intervention_transfer`,
      );
      // Of the 600 old finished ones, the 120 completed stay: each is its intervention's newest move.
      expect(
        left
          .filter((r) => r.state !== 'completed')
          .map((r) => r.state)
          .sort(),
      ).toEqual(['accepted', 'awaiting-procedure', 'requested', 'sent', ...Array<string>(10).fill('refused')].sort());
      expect(left.filter((r) => r.state === 'completed')).toHaveLength(121);
      expect(left.filter((r) => r.guid === moved)).toHaveLength(1);
      expect(removed!.transfers).toBe(480 + 1);

      // A late redelivery of the first batch (its inbox row is gone) merges again and changes nothing:
      // orders 2 and 3 are the same version, order 1's tombstone (version 2) beats its upsert.
      expect(await count(db, INBOX_TABLE, 'message_id = ?', [first.messageId])).toBe(0);
      const again = await merger.merge(first);
      // SQLite and PostgreSQL learn the winners from the upsert itself: none. MariaDB and SQL Server find
      // them by version and operation afterwards, so orders 2 and 3 (same version) are written again, with
      // the same content: the merge is idempotent. Order 1 loses on every dialect.
      const rewritten = d.name === 'mysql' || d.name === 'mssql' ? 2 : 0;
      expect(again).toMatchObject({ status: 'applied', headers: rewritten, stale: 3 - rewritten });
      // The last session's batch is still known to the inbox: a duplicate, counted nowhere.
      expect((await merger.merge(deletion)).status).toBe('duplicate');
      expect(await target()).toEqual(before.headers);
      expect(await details()).toEqual(before.details);
      expect(await siteRow()).toEqual(before.site);

      // A second run finds nothing more.
      expect(await new RetentionPurge(db, RETENTION).run(now)).toEqual({
        inbox: 0,
        sessions: 0,
        rejected: 0,
        transfers: 0,
        tombstones: 0,
      });
    },
    120_000,
  );

  it.skipIf(reportSkip(`retention floor on ${backend}`, url))(
    'a batch no newer than a purged tombstone is refused stale-batch and cannot bring the deleted row back; newer ones merge',
    async () => {
      const db = await openDb('central');
      const now = new Date();
      const old = db.dialect.time(daysAgo(now, RETENTION.tombstoneDays + 10));
      await registerSite(db, { siteId: SITE_ID, pipeline: 'lab', headerTable: HEADERS, detailTable: DETAILS });
      const merger = senderChecked(db, new BatchMerger(db, new TargetTables(db)));
      const first = deliveredBatch(labBatch(SITE_ID, [{ orderId: 1 }, { orderId: 2 }], { version: 1 }));
      const deletion = deliveredBatch({
        ...labBatch(SITE_ID, [], { version: 2 }),
        changes: [{ op: 'delete', key: [1] }],
      });
      expect((await merger.merge(first)).status).toBe('applied');
      expect((await merger.merge(deletion)).status).toBe('applied');
      // Both a year and more ago: the inbox and the tombstone are purged.
      await db.execute(`UPDATE ${INBOX_TABLE} SET processed_at = ?`, [old]);
      await db.execute(`UPDATE ${LEDGER_TABLE} SET updated_at = ?`, [old]);
      const removed = await new RetentionPurge(db, RETENTION).run(now);
      expect(removed).toMatchObject({ tombstones: 1 });
      expect(Number((await tableRows(db, SITE_TABLE, 'pipeline', SITE_ID))[0]!.tombstone_floor)).toBe(2);

      // The first batch, replayed from a dead-letter queue a year late: without the floor, order 1 would be back.
      const target = async () => (await tableRows(db, HEADERS, 'order_id', SITE_ID)).map((r) => Number(r.order_id));
      await expect(merger.merge(first)).rejects.toMatchObject({
        reason: 'stale-batch',
        message: expect.stringMatching(/version 1 of site 101 .*up to version 2/),
      });
      await expect(merger.merge(deletion)).rejects.toMatchObject({ reason: 'stale-batch' });
      expect(await target()).toEqual([2]);

      // The site's newer sessions merge as ever, re-adding order 1 included.
      const later = deliveredBatch(labBatch(SITE_ID, [{ orderId: 1 }, { orderId: 3 }], { version: 3 }));
      expect(await merger.merge(later)).toMatchObject({ status: 'applied', headers: 2 });
      expect(await target()).toEqual([1, 2, 3]);
    },
  );

  it.skipIf(reportSkip(`retention lock on ${backend}`, url))(
    'only one central purges at a time: while another holds the purge lock, a run skips',
    async () => {
      const db = await openDb('central');
      const other = await OperationLock.acquire(db, 'retention', { name: RETENTION_LOCK });
      expect(await new RetentionPurge(db, RETENTION).run()).toBeUndefined();
      // syncctl's own lock is another row: an upgrade is not kept waiting by a purge, nor the reverse.
      await OperationLock.acquire(db, 'upgrade').then((l) => l.release());
      await other.release();
      expect(await new RetentionPurge(db, RETENTION).run()).toEqual({
        inbox: 0,
        sessions: 0,
        rejected: 0,
        transfers: 0,
        tombstones: 0,
      });
    },
  );
});
