import { randomUUID } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Database, OperationJournal, Transaction } from '@sitesync/db';
import { BundleEntryFailedError } from './bundle-errors';
import type { BundlePlan, EntryPlan, FilesEntryPlan, ImportsEntryPlan, SqlEntryPlan } from './bundle-validator';
import { addMissingRows, prepareImport } from './table-import';

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
    // A transactional SQL entry records itself `ok` in its own transaction; the others are made of
    // items (imported tables, MySQL statements) journaled that way, or of files copied again whole.
    const work =
      e.kind === 'sql' && this.db.dialect.name !== 'mysql'
        ? this.journaledTransaction(e.name, WHOLE_ENTRY, (tx) => this.sqlInTransaction(e, tx))
        : this.journaled(e.name, WHOLE_ENTRY, () => {
            if (e.kind === 'sql') return this.sqlStatementByStatement(e);
            if (e.kind === 'imports') return this.imports(e);
            return this.files(e);
          });
    const detail = await work.catch((cause: unknown) => {
      if (cause instanceof BundleEntryFailedError) throw cause;
      // Not the entry's own statements, rows or files: the journal (or the connection) failed.
      throw new BundleEntryFailedError(`${e.name} failed: ${errorText(cause)}; ${resumeHint(e.name)}`, e.name, '', {
        cause,
      });
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

  /**
   * Runs `work` in one transaction that also records the journal row `ok`: the work and its record
   * commit together, so a crash between them cannot make a resumed run do the work twice.
   * `prepare` runs first, outside the transaction (SQLite's one connection is the transaction's).
   */
  private async journaledTransaction<T, P = undefined>(
    step: string,
    item: string,
    work: (tx: Transaction, prepared: P) => Promise<T>,
    prepare: () => Promise<P> = () => Promise.resolve(undefined as P),
  ): Promise<T> {
    const id = await this.journal.begin(this.runId, step, item, this.checksum);
    try {
      const prepared = await prepare();
      return await this.db.transaction(async (tx) => {
        const result = await work(tx, prepared);
        await this.journal.finish(id, 'ok', undefined, tx);
        return result;
      });
    } catch (err) {
      await this.journal.finish(id, 'failed', errorText(err)).catch(() => undefined);
      throw err;
    }
  }

  /** The whole entry in the caller's transaction. */
  private async sqlInTransaction(e: SqlEntryPlan, tx: Transaction): Promise<string> {
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
    return statementSummary(e);
  }

  /**
   * MySQL commits each DDL statement on its own: journal statement by statement (each in its own
   * transaction with its `ok`), so a re-run starts at the statement that failed instead of
   * repeating the ones that took effect. A DDL statement still commits before its `ok` does.
   */
  private async sqlStatementByStatement(e: SqlEntryPlan): Promise<string> {
    for (const [i, stmt] of e.statements.entries()) {
      const item = `statement ${i + 1}`;
      if (await this.journal.succeeded(e.name, item, this.checksum)) continue;
      await this.journaledTransaction(e.name, item, (tx) => tx.runVerbatim(stmt.text)).catch((cause: unknown) => {
        throw new BundleEntryFailedError(
          `${e.name} statement ${i + 1} (line ${stmt.line}) failed: ${errorText(cause)}. ` +
            `The statements before it in ${e.name} took effect (MySQL commits DDL at once); ${resumeHint(e.name)}`,
          e.name,
          item,
          { cause },
        );
      });
    }
    return statementSummary(e);
  }

  private async imports(e: ImportsEntryPlan): Promise<string> {
    const added: string[] = [];
    for (const t of e.tables) {
      const item = t.data.file;
      if (await this.journal.succeeded(e.name, item, this.checksum)) {
        added.push(`${t.table} done earlier`);
        continue;
      }
      const n = await this.journaledTransaction(e.name, item, addMissingRows, () => prepareImport(this.db, t)).catch(
        (cause: unknown) => {
          throw new BundleEntryFailedError(
            `${e.name}/${item} failed: ${errorText(cause)}. Nothing of ${item} was added (rolled back); ${resumeHint(e.name)}`,
            e.name,
            item,
            { cause },
          );
        },
      );
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

function statementSummary(e: SqlEntryPlan): string {
  const n = e.statements.length;
  return `${n} statement${n === 1 ? '' : 's'} run`;
}

function resumeHint(entry: string): string {
  return `fix the cause and run the same bundle again: it resumes at ${entry}`;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
