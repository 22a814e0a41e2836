import { randomUUID } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { ColumnInfo, Database, Dialect, OperationJournal, Queryable, TableInfo } from '@sitesync/db';
import { BundleEntryFailedError } from './bundle-errors';
import type {
  BundlePlan,
  EntryPlan,
  FilesEntryPlan,
  ImportTablePlan,
  ImportsEntryPlan,
  SqlEntryPlan,
} from './bundle-validator';
import { valueMismatch } from './bundle-validator';
import type { ImportRow, ImportValue } from './import-data';

export interface ApplyOptions {
  /** Groups this run's journal rows. @default a new UUID */
  runId?: string;
  /** Called with one line per entry as it ends (for the command's output). */
  progress?: (line: string) => void;
}

export interface EntryOutcome {
  name: string;
  result: 'applied' | 'skipped';
  detail: string;
}

export interface ApplyOutcome {
  runId: string;
  entries: EntryOutcome[];
}

/** The whole entry (as opposed to one table of an imports entry or one statement on MySQL). */
const WHOLE_ENTRY = '';

/**
 * Runs a checked bundle's entries in order, journaling each (operation `bundle`, keyed by the bundle
 * checksum): entries applied by an earlier run of the same bundle are skipped, so a run that stopped
 * at a failed entry resumes there once the cause is fixed. Each SQL entry runs in one transaction
 * (MySQL commits DDL at once, so there each statement is journaled instead), each imported table in
 * one transaction. The first failure stops the run with a {@link BundleEntryFailedError}.
 */
export async function applyBundle(
  db: Database,
  plan: BundlePlan,
  journal: OperationJournal,
  opts: ApplyOptions = {},
): Promise<ApplyOutcome> {
  const runId = opts.runId ?? randomUUID();
  const run = new EntryRunner(db, journal, runId, plan.checksum);
  const outcome: ApplyOutcome = { runId, entries: [] };
  for (const entry of plan.entries) {
    const o = await run.entry(entry);
    outcome.entries.push(o);
    opts.progress?.(`${o.name}: ${o.result === 'skipped' ? 'skipped, ' : ''}${o.detail}`);
  }
  return outcome;
}

class EntryRunner {
  constructor(
    private readonly db: Database,
    private readonly journal: OperationJournal,
    private readonly runId: string,
    private readonly checksum: string,
  ) {}

  async entry(e: EntryPlan): Promise<EntryOutcome> {
    if (e.done || (await this.journal.succeeded(e.name, WHOLE_ENTRY, this.checksum))) {
      await this.journal.finish(await this.journal.begin(this.runId, e.name, WHOLE_ENTRY, this.checksum), 'skipped');
      return { name: e.name, result: 'skipped', detail: 'applied by an earlier run of this bundle' };
    }
    const detail = await this.journaled(e.name, WHOLE_ENTRY, () => {
      if (e.kind === 'sql') return this.sql(e);
      if (e.kind === 'imports') return this.imports(e);
      return this.files(e);
    });
    return { name: e.name, result: 'applied', detail };
  }

  /** Runs `work` between a `running` journal row and its `ok` or `failed` end. */
  private async journaled<T>(step: string, item: string, work: () => Promise<T>): Promise<T> {
    const id = await this.journal.begin(this.runId, step, item, this.checksum);
    try {
      const result = await work();
      await this.journal.finish(id, 'ok');
      return result;
    } catch (err) {
      await this.journal.finish(id, 'failed', errorText(err)).catch(() => undefined);
      throw err;
    }
  }

  private async sql(e: SqlEntryPlan): Promise<string> {
    const n = e.statements.length;
    const summary = `${n} statement${n === 1 ? '' : 's'} run`;
    if (this.db.dialect.name !== 'mysql') {
      await this.db.transaction(async (tx) => {
        for (const [i, stmt] of e.statements.entries()) {
          await tx.runVerbatim(stmt.text).catch((cause: unknown) => {
            throw new BundleEntryFailedError(
              `${e.name} statement ${i + 1} (line ${stmt.line}) failed: ${errorText(cause)}. ` +
                `Nothing of ${e.name} was applied (rolled back); ${resumeHint(e.name)}`,
              e.name,
              `statement ${i + 1}`,
              { cause },
            );
          });
        }
      });
      return summary;
    }
    // MySQL commits each DDL statement on its own: journal statement by statement, so a re-run
    // starts at the statement that failed instead of repeating the ones that took effect.
    for (const [i, stmt] of e.statements.entries()) {
      const item = `statement ${i + 1}`;
      if (await this.journal.succeeded(e.name, item, this.checksum)) continue;
      await this.journaled(e.name, item, () => this.db.transaction((tx) => tx.runVerbatim(stmt.text))).catch(
        (cause: unknown) => {
          throw new BundleEntryFailedError(
            `${e.name} statement ${i + 1} (line ${stmt.line}) failed: ${errorText(cause)}. ` +
              `The statements before it in ${e.name} took effect (MySQL commits DDL at once); ${resumeHint(e.name)}`,
            e.name,
            item,
            { cause },
          );
        },
      );
    }
    return summary;
  }

  private async imports(e: ImportsEntryPlan): Promise<string> {
    const added: string[] = [];
    for (const t of e.tables) {
      const item = t.data.file;
      if (await this.journal.succeeded(e.name, item, this.checksum)) {
        added.push(`${t.table} done earlier`);
        continue;
      }
      const n = await this.journaled(e.name, item, () => importTable(this.db, t)).catch((cause: unknown) => {
        throw new BundleEntryFailedError(
          `${e.name}/${item} failed: ${errorText(cause)}. Nothing of ${item} was added (rolled back); ${resumeHint(e.name)}`,
          e.name,
          item,
          { cause },
        );
      });
      added.push(`${t.table} +${n} of ${t.data.rows.length} rows`);
    }
    return added.join(', ');
  }

  private async files(e: FilesEntryPlan): Promise<string> {
    for (const f of e.files) {
      try {
        await mkdir(dirname(f.destination), { recursive: true });
        // Write beside it and rename: an agent reading the file never sees half of it.
        const tmp = `${f.destination}.sitesync-${process.pid}.tmp`;
        await writeFile(tmp, f.data);
        await rename(tmp, f.destination);
      } catch (cause) {
        throw new BundleEntryFailedError(
          `${e.name}/${f.path} could not be copied: ${errorText(cause)}; ${resumeHint(e.name)}`,
          e.name,
          f.path,
          { cause },
        );
      }
    }
    return `${e.files.length} file${e.files.length === 1 ? '' : 's'} copied`;
  }
}

function resumeHint(entry: string): string {
  return `fix the cause and run the same bundle again: it resumes at ${entry}`;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The table as it is when its import runs, checked again (an earlier entry may have created it). */
async function liveShape(
  db: Database,
  t: ImportTablePlan,
): Promise<{ info: TableInfo; columns: Map<string, ColumnInfo> }> {
  const info = await db.describeTable(t.table);
  if (!info) throw new Error(`table ${t.table} does not exist`);
  const columns = new Map(info.columns.map((c) => [c.name.toLowerCase(), c]));
  const unknown = t.data.columns.filter((c) => !columns.has(c.toLowerCase()));
  if (unknown.length) throw new Error(`table ${info.name} has no column ${unknown.join(', ')}`);
  if (info.primaryKey.length === 0)
    throw new Error(`table ${info.name} has no primary key: an import cannot tell which rows exist already`);
  for (const [i, row] of t.data.rows.entries()) {
    for (const [c, v] of Object.entries(row)) {
      const why = valueMismatch(v, columns.get(c.toLowerCase())!);
      if (why) throw new Error(`row ${i + 1}, column ${c}: ${why}`);
    }
  }
  return { info, columns };
}

/** Adds the rows whose primary key is not in the table yet, in one transaction; returns how many. */
export async function importTable(db: Database, t: ImportTablePlan): Promise<number> {
  const { info, columns } = await liveShape(db, t);
  return db.transaction(async (tx) => {
    let added = 0;
    for (const row of t.data.rows) {
      if (await rowExists(tx, info, columns, row)) continue;
      const names = Object.keys(row);
      const cols = names.map((n) => columns.get(n.toLowerCase())!);
      await tx.run(insertStatement(info.name, cols, row, names, tx.dialect));
      added++;
    }
    return added;
  });
}

function insertStatement(
  table: string,
  cols: ColumnInfo[],
  row: ImportRow,
  names: string[],
  d: Dialect,
): { sql: string; params: unknown[] } {
  return {
    sql: `INSERT INTO ${quotedTable(table, d)} (${cols.map((c) => d.quote(c.name)).join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`,
    params: cols.map((c, i) => bindImportValue(row[names[i]!] ?? null, c, d)),
  };
}

/** Rows of `t` whose primary key is not in its table now (for a dry run's plan). */
export async function countMissingRows(db: Database, t: ImportTablePlan): Promise<number> {
  const { info, columns } = await liveShape(db, t);
  let missing = 0;
  for (const row of t.data.rows) if (!(await rowExists(db, info, columns, row))) missing++;
  return missing;
}

/** Compared by the database itself, so its own rules (collation, type conversion) decide what "exists" means. */
async function rowExists(
  q: Queryable,
  info: TableInfo,
  columns: Map<string, ColumnInfo>,
  row: ImportRow,
): Promise<boolean> {
  const d = q.dialect;
  const lower = new Map(Object.entries(row).map(([k, v]) => [k.toLowerCase(), v]));
  const key = info.primaryKey.map((k) => columns.get(k.toLowerCase())!);
  const found = await q.query(
    d.selectLimit(
      `1 AS x FROM ${quotedTable(info.name, d)} WHERE ${key.map((c) => `${d.quote(c.name)} = ?`).join(' AND ')}`,
      1,
    ),
    key.map((c) => bindImportValue(lower.get(c.name.toLowerCase()) ?? null, c, d)),
  );
  return found.length > 0;
}

function quotedTable(name: string, d: Dialect): string {
  return name
    .split('.')
    .map((p) => d.quote(p))
    .join('.');
}

/** A value from a data file made bindable for its column: numbers, booleans and zoned times converted. */
export function bindImportValue(v: ImportValue, col: ColumnInfo, d: Dialect): unknown {
  if (v === null) return null;
  switch (col.type) {
    case 'integer':
    case 'number': {
      if (typeof v === 'boolean') return v ? 1 : 0;
      const n = Number(v);
      // Beyond 2^53 a JS number loses digits: the database parses the text instead.
      return Number.isSafeInteger(n) || col.type === 'number' ? n : String(v).trim();
    }
    case 'boolean':
      return d.bool(typeof v === 'boolean' ? v : /^(true|t|1)$/i.test(String(v).trim()));
    case 'timestamp':
      // A time with a zone is an instant: the driver writes it in the database's terms. SQLite keeps text.
      return d.name !== 'sqlite' && /(Z|[+-]\d\d:?\d\d)$/.test(String(v)) ? new Date(String(v)) : v;
    default:
      return d.bindValue(typeof v === 'string' ? v : String(v), col.type);
  }
}
