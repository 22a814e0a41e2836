import { createHash, randomUUID } from 'node:crypto';
import { ConfigError } from '@sitesync/protocol';
import { JOURNAL_TABLE, OperationJournal, OperationLock, type Database, type JournalEntry } from '@sitesync/db';
import type { Finding } from './db-check/check-context';
import {
  customisationKey,
  readCustomisations,
  restoreCustomisations,
  storeCustomisations,
  storedCustomisations,
  storeRestoreOutcomes,
  type RestoreOutcome,
} from './customisations';
import {
  addedForeignKeys,
  SCRIPT_PHASES,
  type AddedForeignKey,
  type ScriptPhase,
  type UpgradeScripts,
} from './upgrade-scripts';

/**
 * `syncctl db upgrade`: a database upgrade as journaled steps, after the legacy updater (pre-checks,
 * saving the site's customisations, pre-scripts, schema, post-scripts, restoring customisations,
 * final scripts, verification). Every step and script is recorded in `sync_journal` when it starts
 * and when it ends; the first failure stops the run, and `--continue` resumes it at that step once
 * the operator fixed the cause. A script recorded `ok` with the same checksum never runs again.
 */

export const UPGRADE_STEPS = [
  'pre-checks',
  'save-customisations',
  'pre-scripts',
  'schema',
  'post-scripts',
  'restore-customisations',
  'final-scripts',
  'verification',
] as const;
export type UpgradeStep = (typeof UPGRADE_STEPS)[number];

/** The scripts each step runs (the schema step runs sitesync's migrations first). */
const STEP_SCRIPTS: Partial<Record<UpgradeStep, ScriptPhase>> = {
  'pre-scripts': 'pre',
  schema: 'schema',
  'post-scripts': 'post',
  'final-scripts': 'final',
};

/** The journal item of sitesync's own (TypeORM) migrations within the schema step. */
export const MIGRATIONS_ITEM = 'sitesync migrations';

/** What the upgrade needs to know about the database it upgrades (site or central). */
export interface UpgradeTarget {
  /** The pre-checks; `foreignKeys` are those the scripts add. */
  check(db: Database, foreignKeys: readonly AddedForeignKey[]): Promise<Finding[]>;
  /** Tables whose customisations (indexes, triggers) are kept across the upgrade. */
  ownedTables(db: Database): Promise<string[]>;
}

export interface UpgradeOptions {
  scripts: UpgradeScripts;
  /** Resume the last run, which stopped at a failure, was interrupted, or was paused by `step`. */
  resume?: boolean;
  /** Run only the next pending step, then stop. */
  step?: boolean;
  /** Progress lines for the operator. @default nothing */
  report?: (line: string) => void;
  /** Remove another run's lock first (its process is known to be gone). @default false */
  breakLock?: boolean;
}

export type UpgradeResult =
  | { status: 'up-to-date' }
  | { status: 'completed'; runId: string; customisations: RestoreOutcome[] }
  | { status: 'paused'; runId: string; done: UpgradeStep; next: UpgradeStep }
  | {
      status: 'failed';
      runId: string;
      step: UpgradeStep;
      /** The script (or `sitesync migrations`) that failed, if the step failed on one. */
      item: string | null;
      error: string;
      /** The pre-checks' or the verification's findings, when those failed. */
      findings: Finding[];
    };

/** Where the last run stands, from its journal entries. */
export type RunState =
  | { state: 'none' }
  | { state: 'completed'; runId: string }
  | { state: 'failed'; runId: string; step: string; item: string; error: string | null; interrupted: boolean }
  | { state: 'paused'; runId: string; next: UpgradeStep };

/** Reads the state of the last upgrade run from the journal. */
export async function lastUpgradeState(journal: OperationJournal): Promise<RunState> {
  const run = await journal.lastRun();
  if (!run) return { state: 'none' };
  return runState(run.runId, run.entries);
}

export function runState(runId: string, entries: readonly JournalEntry[]): RunState {
  const latest = latestByItem(entries);
  const open = [...latest.values()].filter((e) => e.result === 'failed' || e.result === 'running');
  if (open.length) {
    // The script that failed says more than the step it failed in.
    const e = open.find((x) => x.item !== '') ?? open[0]!;
    return { state: 'failed', runId, step: e.step, item: e.item, error: e.error, interrupted: e.result === 'running' };
  }
  const next = UPGRADE_STEPS.find((s) => !stepDone(latest, s));
  return next ? { state: 'paused', runId, next } : { state: 'completed', runId };
}

function latestByItem(entries: readonly JournalEntry[]): Map<string, JournalEntry> {
  const latest = new Map<string, JournalEntry>();
  for (const e of entries) latest.set(`${e.step}|${e.item}`, e);
  return latest;
}

function stepDone(latest: Map<string, JournalEntry>, step: UpgradeStep): boolean {
  const r = latest.get(`${step}|`)?.result;
  return r === 'ok' || r === 'skipped';
}

/** A step that failed: the run stops here. */
class StepFailure extends Error {
  override name = 'StepFailure';
  constructor(
    message: string,
    readonly item: string | null,
    readonly findings: Finding[] = [],
  ) {
    super(message);
  }
}

/**
 * Runs (or resumes) an upgrade of `db`, holding the database's operation lock throughout. Refusals
 * (nothing to resume, an unfinished run) throw ConfigError; another run holding the lock throws
 * OperationLockedError.
 */
export async function upgradeDatabase(
  db: Database,
  target: UpgradeTarget,
  opts: UpgradeOptions,
): Promise<UpgradeResult> {
  const report = opts.report ?? (() => undefined);
  const lock = await OperationLock.acquire(db, 'upgrade', {
    breakLock: opts.breakLock === true,
    onBroken: (h) => report(`removed the lock of ${h.operation} ${h.holder} (since ${h.acquiredAt.toISOString()})`),
  });
  try {
    return await upgradeLocked(db, target, opts, report);
  } finally {
    await lock.release();
  }
}

async function upgradeLocked(
  db: Database,
  target: UpgradeTarget,
  opts: UpgradeOptions,
  report: (line: string) => void,
): Promise<UpgradeResult> {
  const journal = await OperationJournal.open(db, 'upgrade');
  const last = await lastUpgradeState(journal);
  let runId: string;
  if (opts.resume) {
    if (last.state === 'none' || last.state === 'completed') {
      throw new ConfigError(
        'nothing to continue: the last upgrade did not fail (run `syncctl db upgrade` to start one)',
        'continue',
      );
    }
    runId = last.runId;
    await closeInterruptedEntries(journal, runId);
    report(`continuing upgrade ${runId}`);
  } else if (last.state === 'failed') {
    throw new ConfigError(
      `the last upgrade (${last.runId}) ${last.interrupted ? 'was interrupted' : 'failed'} at step ${last.step}` +
        `${last.item ? `, ${last.item}` : ''}${last.error ? `: ${last.error}` : ''}; ` +
        'fix the cause, then run `syncctl db upgrade --continue`',
      'continue',
    );
  } else if (last.state === 'paused') {
    runId = last.runId;
    report(`going on with upgrade ${runId} (paused before ${last.next})`);
  } else {
    const pending = await pendingWork(db, journal, opts.scripts);
    if (!pending.length) return { status: 'up-to-date' };
    runId = randomUUID();
    report(`upgrade ${runId}: ${pending.join('; ')}`);
  }
  return new UpgradeRun(db, target, journal, runId, opts.scripts, report).run(opts.step === true);
}

/** What a new run would do: pending migrations and scripts not applied yet (with this content). */
export async function pendingWork(db: Database, journal: OperationJournal, scripts: UpgradeScripts): Promise<string[]> {
  const out: string[] = [];
  const migrations = await pendingMigrations(db);
  if (migrations.length) out.push(`migrations ${migrations.join(', ')}`);
  for (const phase of SCRIPT_PHASES) {
    const step = stepOfPhase(phase);
    for (const s of scripts[phase]) {
      if (!(await journal.succeeded(step, s.name, s.checksum))) out.push(`script ${s.name}`);
    }
  }
  return out;
}

function stepOfPhase(phase: ScriptPhase): UpgradeStep {
  return Object.entries(STEP_SCRIPTS).find(([, p]) => p === phase)![0] as UpgradeStep;
}

/** Names of sitesync's migrations not yet applied to `db`. */
export async function pendingMigrations(db: Database): Promise<string[]> {
  const table = db.dataSource.options.migrationsTableName ?? 'migrations';
  const all = db.dataSource.migrations.map((m) => m.name ?? m.constructor.name);
  if (!(await db.describeTable(table))) return all;
  const done = new Set(
    (await db.query<{ name: string }>(`SELECT name FROM ${db.dialect.quote(table)}`)).map((r) => r.name),
  );
  return all.filter((n) => !done.has(n));
}

/** Entries left `running` by a process that died: they ended, just not on record. */
async function closeInterruptedEntries(journal: OperationJournal, runId: string): Promise<void> {
  for (const e of await journal.entries(runId)) {
    if (e.result === 'running')
      await journal.finish(e.id, 'failed', 'interrupted: the upgrade stopped before this ended');
  }
}

/** One run of the steps, journaled under `runId`. */
class UpgradeRun {
  constructor(
    private readonly db: Database,
    private readonly target: UpgradeTarget,
    private readonly journal: OperationJournal,
    private readonly runId: string,
    private readonly scripts: UpgradeScripts,
    private readonly report: (line: string) => void,
  ) {}

  async run(oneStep: boolean): Promise<UpgradeResult> {
    const latest = latestByItem(await this.journal.entries(this.runId));
    const remaining = UPGRADE_STEPS.filter((s) => !stepDone(latest, s));
    for (const [i, step] of remaining.entries()) {
      const id = await this.journal.begin(this.runId, step, '');
      this.report(`step ${step}`);
      try {
        await this.runStep(step);
        await this.journal.finish(id, 'ok');
      } catch (err) {
        const failure = err instanceof StepFailure ? err : new StepFailure((err as Error).message, null);
        await this.journal.finish(id, 'failed', failure.message);
        return {
          status: 'failed',
          runId: this.runId,
          step,
          item: failure.item,
          error: failure.message,
          findings: failure.findings,
        };
      }
      const next = remaining[i + 1];
      if (oneStep && next) return { status: 'paused', runId: this.runId, done: step, next };
    }
    return { status: 'completed', runId: this.runId, customisations: await this.outcomes() };
  }

  private async runStep(step: UpgradeStep): Promise<void> {
    switch (step) {
      case 'pre-checks':
        return this.preChecks();
      case 'save-customisations':
        return this.saveCustomisations();
      case 'schema':
        await this.migrations();
        return this.runScripts(step);
      case 'restore-customisations':
        return this.restore();
      case 'verification':
        return this.verify();
      default:
        return this.runScripts(step);
    }
  }

  private async preChecks(): Promise<void> {
    const findings = await this.target.check(this.db, addedForeignKeys(this.scripts));
    if (findings.length) {
      throw new StepFailure(
        `${findings.length} inconsistenc${findings.length === 1 ? 'y' : 'ies'} found (\`syncctl db check\` lists them)`,
        null,
        findings,
      );
    }
  }

  private async saveCustomisations(): Promise<void> {
    const found = await readCustomisations(this.db, await this.target.ownedTables(this.db));
    await storeCustomisations(this.db, this.runId, found);
    this.report(
      `  recorded ${found.length} customisation(s)${found.length ? `: ${found.map((c) => c.name).join(', ')}` : ''}`,
    );
  }

  private async migrations(): Promise<void> {
    const pending = await pendingMigrations(this.db);
    if (!pending.length) return;
    // The checksum column holds 64 characters: a digest of the names, which the report prints in full.
    const checksum = createHash('sha256').update(pending.join(',')).digest('hex');
    const id = await this.journal.begin(this.runId, 'schema', MIGRATIONS_ITEM, checksum);
    try {
      await this.db.migrate();
    } catch (err) {
      const message = (err as Error).message;
      await this.journal.finish(id, 'failed', message);
      throw new StepFailure(message, MIGRATIONS_ITEM);
    }
    await this.journal.finish(id, 'ok');
    this.report(`  applied ${pending.join(', ')}`);
  }

  /**
   * The step's scripts in name order, each in one transaction that also records it `ok`, so a script
   * is never on record as pending once its work committed (MySQL/MariaDB commit DDL at once: there a
   * crash right after a DDL statement can still leave it pending). One already applied (same
   * checksum) is skipped.
   */
  private async runScripts(step: UpgradeStep): Promise<void> {
    const phase = STEP_SCRIPTS[step];
    if (!phase) return;
    for (const script of this.scripts[phase]) {
      if (await this.journal.succeeded(step, script.name, script.checksum)) {
        this.report(`  ${script.name}: already applied`);
        continue;
      }
      const id = await this.journal.begin(this.runId, step, script.name, script.checksum);
      let where = '';
      try {
        await this.db.transaction(async (tx) => {
          for (const st of script.statements) {
            where = `line ${st.line}`;
            await tx.runVerbatim(st.text);
          }
          where = `recording it in ${JOURNAL_TABLE} (rolled back with it)`;
          await this.journal.finish(id, 'ok', undefined, tx);
        });
      } catch (err) {
        const message = `${script.name} ${where}: ${(err as Error).message}`;
        await this.journal.finish(id, 'failed', message);
        throw new StepFailure(message, script.name);
      }
      this.report(`  ${script.name}: ok`);
    }
  }

  private async restore(): Promise<void> {
    const recorded = await storedCustomisations(this.db, this.runId);
    const outcomes = await restoreCustomisations(this.db, recorded);
    await storeRestoreOutcomes(this.db, this.runId, outcomes);
    for (const o of outcomes) {
      if (o.outcome !== 'present')
        this.report(`  ${o.kind} ${o.name} on ${o.table}: ${o.outcome}${o.reason ? ` (${o.reason})` : ''}`);
    }
  }

  private async verify(): Promise<void> {
    const findings = await this.target.check(this.db, addedForeignKeys(this.scripts));
    if (findings.length) {
      throw new StepFailure(
        `${findings.length} inconsistenc${findings.length === 1 ? 'y' : 'ies'} after the upgrade`,
        null,
        findings,
      );
    }
    const pending = await pendingMigrations(this.db);
    if (pending.length) throw new StepFailure(`migrations still pending: ${pending.join(', ')}`, null);
    const recorded = await storedCustomisations(this.db, this.runId);
    const current = await readCustomisations(this.db, [...new Set(recorded.map((c) => c.table))]);
    const have = new Set(current.map(customisationKey));
    const lost = recorded.filter((c) => c.outcome !== 'not-applicable' && !have.has(customisationKey(c)));
    if (lost.length) {
      throw new StepFailure(
        `customisations missing after the upgrade: ${lost.map((c) => `${c.kind} ${c.name} on ${c.table}`).join(', ')}`,
        null,
      );
    }
  }

  private async outcomes(): Promise<RestoreOutcome[]> {
    return (await storedCustomisations(this.db, this.runId)).map((c) => ({
      ...c,
      outcome: c.outcome ?? 'present',
      reason: c.reason,
    }));
  }
}
