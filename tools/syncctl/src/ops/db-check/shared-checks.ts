import type { TableInfo } from '@sitesync/db';
import { unique, type CheckContext } from './check-context';

/** Checks a site and the central both run: the foreign keys an upgrade adds, interventions in transit. */

/** Existing rows that would violate a foreign key the upgrade's scripts add. */
export async function checkForeignKeys(ctx: CheckContext): Promise<void> {
  for (const fk of ctx.foreignKeys) {
    const child = await ctx.table(fk.table);
    const parent = await ctx.table(fk.referencedTable);
    // A table the upgrade creates holds no rows that could violate the key yet.
    if (!child || !parent) continue;
    const cols = fk.columns.map((c) => liveColumn(child, c));
    const refCols = fk.referencedColumns.map((c) => liveColumn(parent, c));
    if (cols.includes(undefined) || refCols.includes(undefined)) continue;
    const childCols = cols as string[];
    const join = childCols.map((c, i) => `p.${ctx.q(refCols[i]!)} = x.${ctx.q(c)}`).join(' AND ');
    const fromWhere =
      `FROM ${ctx.q(child.name)} x WHERE ${childCols.map((c) => `x.${ctx.q(c)} IS NOT NULL`).join(' AND ')} ` +
      `AND NOT EXISTS (SELECT 1 FROM ${ctx.q(parent.name)} p WHERE ${join})`;
    const shown = unique([...child.primaryKey, ...childCols]);
    const bad = await ctx.sample(fromWhere, [], shown, 'x');
    if (!bad.count) continue;
    const key = `${child.name} (${childCols.join(', ')}) REFERENCES ${parent.name} (${refCols.join(', ')})`;
    ctx.add({
      kind: 'foreign-key',
      where: child.name,
      table: child.name,
      columns: childCols,
      problem: `${bad.count} row(s) violate FOREIGN KEY ${key}, which ${fk.script} adds`,
      count: bad.count,
      keys: bad.keys,
      fix: `add the missing rows to ${parent.name}, or correct or delete those rows of ${child.name}`,
    });
  }
}

/** The live spelling of a column named in a script (unquoted names are case-insensitive). */
function liveColumn(info: TableInfo, name: string): string | undefined {
  return (
    info.columns.find((c) => c.name === name)?.name ??
    info.columns.find((c) => c.name.toLowerCase() === name.toLowerCase())?.name
  );
}

/** Transfer-log states that are waiting for the other side (see TransferState and the site agent). */
const OPEN_TRANSFER_STATES = {
  central: ['accepted', 'requested', 'awaiting-procedure', 'sent'],
  site: ['sent'],
} as const;

/** Interventions and transfers waiting for the other side for longer than `stuckAfterSeconds`: a finding per table. */
export async function checkStuckInterventions(ctx: CheckContext, role: 'central' | 'site'): Promise<void> {
  const cutoff = ctx.timestamp(new Date(ctx.now.getTime() - ctx.stuckAfterSeconds * 1000));
  const states = OPEN_TRANSFER_STATES[role];
  const tables = [
    {
      table: 'intervention',
      waiting: `${ctx.q('state')} <> ?`,
      params: ['active'],
      shown: ['guid', 'state', 'transfer_id'],
    },
    {
      table: 'intervention_transfer',
      waiting: `${ctx.q('state')} IN (${states.map(() => '?').join(', ')})`,
      params: [...states],
      shown: ['transfer_id', 'guid', 'state'],
    },
  ];
  for (const t of tables) {
    if (!(await ctx.table(t.table))) continue;
    const r = await ctx.sample(
      `FROM ${ctx.q(t.table)} WHERE ${t.waiting} AND ${ctx.q('updated_at')} < ?`,
      [...t.params, cutoff],
      t.shown,
    );
    if (!r.count) continue;
    ctx.add({
      kind: 'stuck-interventions',
      where: t.table,
      table: t.table,
      columns: ['state', 'updated_at'],
      problem: `${r.count} row(s) of ${t.table} (${role}) have been in transit for over ${formatSeconds(ctx.stuckAfterSeconds)}`,
      count: r.count,
      keys: r.keys,
      fix:
        'start the agents on both ends and let the transfers finish (`syncctl transfers --guid <guid>`), ' +
        'or cancel a transfer out with `syncctl transfer-cancel <transferId>`, before upgrading',
    });
  }
}

function formatSeconds(s: number): string {
  if (s % 86400 === 0) return `${s / 86400} d`;
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}
