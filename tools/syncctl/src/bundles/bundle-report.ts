import type { Database } from '@sitesync/db';
import { countMissingRows } from './table-import';
import type { BundlePlan, EntryPlan } from './bundle-validator';

/** One line per entry of what applying the plan would do (`syncctl bundle apply --dry-run`). */
export async function describePlan(db: Database, plan: BundlePlan): Promise<string[]> {
  const lines = [
    `bundle ${plan.source} (${plan.format}, sha256 ${plan.checksum.slice(0, 12)}): ${plan.entries.length} entries, checked, nothing changed`,
  ];
  for (const e of plan.entries) lines.push(`  ${e.name.padEnd(16)} ${e.kind.padEnd(8)} ${await entryLine(db, e)}`);
  return lines;
}

async function entryLine(db: Database, e: EntryPlan): Promise<string> {
  if (e.done) return 'applied by an earlier run of this bundle: skipped';
  switch (e.kind) {
    case 'sql': {
      const parts = [`${e.statements.length} statement${e.statements.length === 1 ? '' : 's'}`];
      if (e.definitionChanges.length) parts.push(`changes the definition of ${e.definitionChanges.join(', ')}`);
      if (e.dataChanges.length) parts.push(`changes rows of ${e.dataChanges.join(', ')}`);
      return parts.join('; ');
    }
    case 'imports': {
      const parts: string[] = [];
      for (const t of e.tables) {
        const rows = `${t.data.rows.length} row${t.data.rows.length === 1 ? '' : 's'} in ${t.data.file}`;
        if (t.changedEarlier)
          parts.push(`${t.table}: ${rows}, missing ones added (an earlier entry changes the table first)`);
        else {
          const missing = await countMissingRows(db, t).catch(() => undefined);
          parts.push(`${t.table}: ${rows}, ${missing === undefined ? 'missing ones' : missing} to add`);
        }
      }
      return parts.join('; ');
    }
    case 'files':
      return e.files.map((f) => `${f.path} (${f.state})`).join(', ');
  }
}
