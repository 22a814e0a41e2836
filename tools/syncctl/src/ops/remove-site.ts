import type { Database, Queryable } from '@sitesync/db';
import { INBOX_TABLE, LEDGER_TABLE, REJECTED_TABLE, SESSION_TABLE, SITE_TABLE } from '@sitesync/db';
import { ConfigError, Topology, siteUserName } from '@sitesync/protocol';
import { SITE_COLUMN } from '@sitesync/central';
import { managementApiOf, type BrokerAccess } from './provision-site';

/**
 * The central's tables that hold a site's registration and sync state, each with its site column.
 * All of it goes with the site: it only describes that site's sessions and rows. The transfer log
 * (`intervention_transfer`) stays: it is the history of where interventions went, which outlives
 * the site; the interventions the central holds stay too (they are the central's own now).
 */
const SITE_STATE_TABLES: ReadonlyArray<{ table: string; column: string; what: string }> = [
  { table: SITE_TABLE, column: 'id_efector', what: 'registration and sync state (one row per pipeline)' },
  { table: SESSION_TABLE, column: 'id_efector', what: 'sessions' },
  { table: LEDGER_TABLE, column: 'id_efector', what: 'row versions merged' },
  { table: INBOX_TABLE, column: 'id_efector', what: 'processed message ids' },
  { table: REJECTED_TABLE, column: 'id_efector', what: 'rejected batches' },
  { table: 'site_procedure', column: 'id_efector', what: 'procedure versions the site holds' },
];

/** Transfer states still in progress: a site named by one cannot be removed (the intervention's home would be lost). */
const OPEN_TRANSFER_STATES = ['requested', 'awaiting-procedure', 'sent', 'accepted'] as const;

/** What `syncctl sites remove` deletes (or, on a dry run, would). */
export interface SiteRemovalPlan {
  siteId: number;
  /** The site's broker user; `exists` false when it is gone already. */
  brokerUser: { name: string; exists: boolean };
  /** The site's queues that exist, with the messages they hold. */
  queues: Array<{ name: string; messages: number }>;
  /** Rows of the central's own tables that name the site. */
  state: Array<{ table: string; what: string; rows: number }>;
  /** With `purgeRows`: the site's rows in its central header/detail tables. */
  targetRows: Array<{ table: string; rows: number }>;
}

/** Removing a site is refused: something still depends on it. */
export class SiteRemovalRefusedError extends ConfigError {
  override name = 'SiteRemovalRefusedError';
}

/**
 * Reads what removing the site would delete, and refuses (SiteRemovalRefusedError) when it cannot
 * be removed safely: a transfer in progress names it, or another site's row names its broker user.
 */
export async function planSiteRemoval(
  db: Database,
  siteId: number,
  broker: BrokerAccess,
  opts: { purgeRows: boolean },
): Promise<SiteRemovalPlan> {
  const d = db.dialect;
  const rows = await db.query<{ broker_user: string | null; tabla_encabezado: string; tabla_detalle: string | null }>(
    `SELECT broker_user, tabla_encabezado, tabla_detalle FROM ${d.quote(SITE_TABLE)} WHERE id_efector = ?`,
    [siteId],
  );
  const users = [...new Set(rows.map((r) => r.broker_user ?? siteUserName(siteId)))];
  if (users.length > 1)
    throw new SiteRemovalRefusedError(
      `site ${siteId}'s rows name several broker users (${users.join(', ')})`,
      'siteId',
    );
  const user = users[0] ?? siteUserName(siteId);
  const others = await db.query<{ id_efector: number | string; broker_user: string | null }>(
    `SELECT DISTINCT id_efector, broker_user FROM ${d.quote(SITE_TABLE)} WHERE id_efector <> ?`,
    [siteId],
  );
  const sharing = others.filter((o) => (o.broker_user ?? siteUserName(Number(o.id_efector))) === user);
  if (sharing.length) {
    throw new SiteRemovalRefusedError(
      `broker user ${user} of site ${siteId} also speaks for site(s) ${sharing.map((s) => s.id_efector).join(', ')}: ` +
        `not removed (give site ${siteId} its own user first)`,
      'siteId',
    );
  }
  const open = await db.query<{ transfer_id: string; state: string }>(
    `SELECT transfer_id, state FROM intervention_transfer WHERE (from_site = ? OR to_site = ?) AND state IN (${OPEN_TRANSFER_STATES.map(() => '?').join(', ')})`,
    [siteId, siteId, ...OPEN_TRANSFER_STATES],
  );
  if (open.length) {
    throw new SiteRemovalRefusedError(
      `site ${siteId} is named by transfer(s) in progress: ${open.map((t) => `${t.transfer_id} (${t.state})`).join(', ')}; ` +
        `let them finish or withdraw them (syncctl transfer-cancel) first`,
      'siteId',
    );
  }

  const state: SiteRemovalPlan['state'] = [];
  for (const t of SITE_STATE_TABLES)
    state.push({ table: t.table, what: t.what, rows: await countSiteRows(db, t.table, t.column, siteId) });
  const targetRows: SiteRemovalPlan['targetRows'] = [];
  if (opts.purgeRows) {
    for (const table of await siteTargetTables(db, rows)) {
      targetRows.push({ table, rows: await countSiteRows(db, table, SITE_COLUMN, siteId) });
    }
  }

  const api = managementApiOf(broker);
  const existing = await api.queues();
  const queues = siteQueueNames(broker, siteId)
    .filter((q) => existing.has(q))
    .map((q) => ({ name: q, messages: existing.get(q)!.messages }));
  return { siteId, brokerUser: { name: user, exists: await api.userExists(user) }, queues, state, targetRows };
}

/**
 * Removes what the plan lists: the broker user first (RabbitMQ closes its open connections with
 * it: the site can no longer connect or publish),
 * then its queues, then its database state and, with the plan's target rows, its rows, in one
 * transaction. Each step is idempotent, and the user is known from the rows that the last step
 * deletes: a run stopped half-way is finished by running it again.
 */
export async function removeSite(db: Database, plan: SiteRemovalPlan, broker: BrokerAccess): Promise<void> {
  const api = managementApiOf(broker);
  await api.deleteUser(plan.brokerUser.name);
  for (const q of siteQueueNames(broker, plan.siteId)) await api.deleteQueue(q);
  await db.transaction(async (tx) => {
    for (const t of plan.targetRows) await deleteSiteRows(tx, t.table, SITE_COLUMN, plan.siteId);
    // EstadoSyncGeneral last: until it goes, a re-run still finds the target tables and the user.
    for (const t of [...SITE_STATE_TABLES].reverse()) await deleteSiteRows(tx, t.table, t.column, plan.siteId);
  });
}

/** The site's work queue, its dead-letter queue, and the central's rejects queue for it. */
function siteQueueNames(broker: BrokerAccess, siteId: number): string[] {
  const t = new Topology({ prefix: broker.prefix, deliveryLimit: broker.deliveryLimit });
  return [...t.siteQueues(siteId), t.siteRejectsQueue(siteId)];
}

/** The site's central header/detail tables that exist and carry the site column. */
async function siteTargetTables(
  db: Database,
  rows: ReadonlyArray<{ tabla_encabezado: string; tabla_detalle: string | null }>,
): Promise<string[]> {
  const names = [
    ...new Set(rows.flatMap((r) => [r.tabla_detalle, r.tabla_encabezado]).filter((t): t is string => !!t)),
  ];
  const out: string[] = [];
  for (const name of names) {
    const info = await db.describeTable(name);
    if (info?.columns.some((c) => c.name.toLowerCase() === SITE_COLUMN)) out.push(info.name);
  }
  return out;
}

async function countSiteRows(q: Queryable, table: string, column: string, siteId: number): Promise<number> {
  const r = await q.query<{ n: number | string }>(
    `SELECT COUNT(*) AS n FROM ${q.dialect.quote(table)} WHERE ${q.dialect.quote(column)} = ?`,
    [siteId],
  );
  return Number(r[0]?.n ?? 0);
}

async function deleteSiteRows(q: Queryable, table: string, column: string, siteId: number): Promise<void> {
  await q.execute(`DELETE FROM ${q.dialect.quote(table)} WHERE ${q.dialect.quote(column)} = ?`, [siteId]);
}
