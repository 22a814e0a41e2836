import { lstat, readFile, realpath } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { splitSqlScript, SqlScriptError, type Database, type SqlStatement } from '@sitesync/db';
import { BundleRefusedError, type BundleProblem } from './bundle-errors';
import { unsafePathReason, type BundleContent, type BundleFile, type BundleItem } from './bundle-reader';
import { ImportFileError, parseImportFile, type ImportData, type ImportValue } from './import-data';
import { SchemaModel, type ModelColumn, type ModelTable, type TableOverlay } from './schema-model';
import { sqlEffects } from './sql-effects';

export type BundleEntryKind = 'sql' | 'imports' | 'files';

interface EntryBase {
  /** `003.sql`, `004.imports` */
  name: string;
  number: number;
  /** Applied in an earlier run of the same bundle (journal): skipped, and not checked again. */
  done: boolean;
}

export interface SqlEntryPlan extends EntryBase {
  kind: 'sql';
  statements: SqlStatement[];
  /** Tables whose definition the script changes (CREATE, ALTER, DROP, RENAME). */
  definitionChanges: string[];
  /** Tables whose rows the script changes (DELETE, INSERT, UPDATE, MERGE, TRUNCATE). */
  dataChanges: string[];
}

export interface ImportTablePlan {
  data: ImportData;
  /** The table the rows go to, as named in the database (or by the bundle that creates it). */
  table: string;
  /** An earlier entry of this bundle creates or changes the table: what is there now does not tell what will be added. */
  changedEarlier: boolean;
}

export interface ImportsEntryPlan extends EntryBase {
  kind: 'imports';
  tables: ImportTablePlan[];
}

export interface FileCopyPlan extends BundleFile {
  /** Absolute destination inside the config folder. */
  destination: string;
  state: 'new' | 'replaces' | 'unchanged';
}

export interface FilesEntryPlan extends EntryBase {
  kind: 'files';
  files: FileCopyPlan[];
}

export type EntryPlan = SqlEntryPlan | ImportsEntryPlan | FilesEntryPlan;

/** A bundle that passed every check, in the order its entries run. */
export interface BundlePlan {
  source: string;
  format: BundleContent['format'];
  checksum: string;
  entries: EntryPlan[];
}

export interface PlanOptions {
  /** The agent's config folder, where `NNN.files/` entries are copied; required when the bundle has one. */
  configDir?: string;
  /** Entries the journal shows applied by an earlier run of this bundle. */
  done?: ReadonlySet<string>;
  /** Tables not in the database yet that will be by the time the bundle runs (sitesync's own, on a dry run). */
  overlay?: TableOverlay;
}

/** `001.sql`, `003.database.sql` (a label for people), `002.imports`, `010.files`. */
const ENTRY_NAME = /^(\d+)\.(?:.+\.)?([^.]+)$/;
const KINDS: Record<string, { kind: BundleEntryKind; directory: boolean }> = {
  sql: { kind: 'sql', directory: false },
  imports: { kind: 'imports', directory: true },
  files: { kind: 'files', directory: true },
};
/** Problems listed per data file before "and N more". */
const MAX_VALUE_PROBLEMS = 5;

/**
 * Checks a whole bundle against the target database before anything runs, and returns the plan.
 * Every problem found is listed in one {@link BundleRefusedError}: unknown entry kinds, gaps or
 * duplicates in the numbering, unreadable scripts or data files, transaction control in a script,
 * a definition change of a table that holds rows now (that takes two bundles), imports for unknown
 * tables or columns or with values that do not fit, files that would land outside the config folder.
 */
export async function planBundle(db: Database, content: BundleContent, opts: PlanOptions = {}): Promise<BundlePlan> {
  const problems: BundleProblem[] = [];
  const named = content.items.flatMap((item) => {
    const parsed = parseEntryName(item);
    if ('problem' in parsed) {
      problems.push({ where: item.name, message: parsed.problem });
      return [];
    }
    return [{ item, ...parsed }];
  });
  problems.push(...numberingProblems(named.map((n) => ({ name: n.item.name, number: n.number }))));
  if (content.items.length === 0) problems.push({ message: 'the bundle has no entries' });
  if (problems.length) throw new BundleRefusedError(content.source, problems);

  const model = await SchemaModel.load(db, opts.overlay);
  const checker = new EntryChecker(db, model, problems, opts);
  const entries: EntryPlan[] = [];
  for (const n of named.sort((a, b) => a.number - b.number)) {
    const base = { name: n.item.name, number: n.number, done: opts.done?.has(n.item.name) ?? false };
    // Applied already: the database shows its effects, so it is neither checked nor followed again.
    if (base.done) entries.push(donePlan(base, n.kind));
    else if (n.kind === 'sql') entries.push(await checker.sql(base, n.item));
    else if (n.kind === 'imports') entries.push(await checker.imports(base, n.item, entries));
    else entries.push(await checker.files(base, n.item));
  }
  if (problems.length) throw new BundleRefusedError(content.source, problems);
  return { source: content.source, format: content.format, checksum: content.checksum, entries };
}

function donePlan(base: EntryBase, kind: BundleEntryKind): EntryPlan {
  if (kind === 'sql') return { ...base, kind, statements: [], definitionChanges: [], dataChanges: [] };
  if (kind === 'imports') return { ...base, kind, tables: [] };
  return { ...base, kind, files: [] };
}

function parseEntryName(item: BundleItem): { number: number; kind: BundleEntryKind } | { problem: string } {
  const m = ENTRY_NAME.exec(item.name);
  if (!m) return { problem: 'not a bundle entry: entries are named NNN.sql, NNN.imports/ or NNN.files/' };
  const k = KINDS[m[2]!.toLowerCase()];
  if (!k) return { problem: `unknown entry kind ".${m[2]}" (known: .sql files, .imports/ and .files/ folders)` };
  if (k.directory !== item.directory)
    return { problem: `a .${k.kind} entry must be a ${k.directory ? 'folder' : 'file'}` };
  return { number: Number(m[1]), kind: k.kind };
}

/** Entries are numbered 1, 2, 3, ... with no gaps, and no number twice (`002.sql` and `002.imports`). */
function numberingProblems(entries: ReadonlyArray<{ name: string; number: number }>): BundleProblem[] {
  const byNumber = new Map<number, string[]>();
  for (const e of entries) byNumber.set(e.number, [...(byNumber.get(e.number) ?? []), e.name]);
  const problems: BundleProblem[] = [];
  for (const [n, names] of byNumber) {
    if (names.length > 1)
      problems.push({ where: names.join(', '), message: `number ${n} is used by ${names.length} entries` });
  }
  const max = Math.max(0, ...byNumber.keys());
  const missing: number[] = [];
  for (let n = 1; n <= max; n++) if (!byNumber.has(n)) missing.push(n);
  if (missing.length)
    problems.push({
      message: `numbering has a gap: no entry ${missing.map((n) => String(n).padStart(3, '0')).join(', ')} (entries are numbered from 001 with no gaps)`,
    });
  return problems;
}

/** Checks entries in order, following the schema changes of the SQL entries before each import. */
class EntryChecker {
  constructor(
    private readonly db: Database,
    private readonly model: SchemaModel,
    private readonly problems: BundleProblem[],
    private readonly opts: PlanOptions,
  ) {}

  private problem(where: string, message: string): void {
    this.problems.push({ where, message });
  }

  async sql(base: EntryBase, item: BundleItem): Promise<SqlEntryPlan> {
    const plan: SqlEntryPlan = { ...base, kind: 'sql', statements: [], definitionChanges: [], dataChanges: [] };
    try {
      plan.statements = splitSqlScript(Buffer.from(item.files[0]!.data).toString('utf8'), this.db.dialect.name);
    } catch (err) {
      if (!(err instanceof SqlScriptError)) throw err;
      this.problem(base.name, err.message);
      return plan;
    }
    if (plan.statements.length === 0) this.problem(base.name, 'holds no SQL statement');
    for (const [i, stmt] of plan.statements.entries()) {
      const where = `${base.name} statement ${i + 1} (line ${stmt.line})`;
      for (const effect of sqlEffects(stmt, this.db.dialect.name)) {
        if (effect.kind === 'transaction-control') {
          this.problem(where, `${effect.verb}: each SQL entry runs in its own transaction; remove it`);
          continue;
        }
        const tableName = effect.table.join('.');
        if (effect.kind === 'data') {
          if (!plan.dataChanges.includes(tableName)) plan.dataChanges.push(tableName);
          continue;
        }
        if (!plan.definitionChanges.includes(tableName)) plan.definitionChanges.push(tableName);
        await this.checkDefinitionChange(
          where,
          effect.kind,
          effect.table,
          'ifNotExists' in effect && effect.ifNotExists,
        );
        await this.model.apply(effect);
      }
    }
    return plan;
  }

  /** The two-bundle rule: a table's definition may only change while it holds no rows (counted now). */
  private async checkDefinitionChange(
    where: string,
    kind: string,
    table: string[],
    ifNotExists: boolean,
  ): Promise<void> {
    if (!this.model.existsNow(table)) return;
    if (kind === 'create-table' && ifNotExists) return;
    const live = await this.model.liveRows(table);
    if (!live) return;
    const verb = {
      'create-table': 'CREATE TABLE',
      'drop-table': 'DROP TABLE',
      'alter-table': 'ALTER TABLE',
      'rename-table': 'RENAME',
    }[kind];
    if (live.rows > 0) {
      this.problem(
        where,
        `${verb} ${live.table} changes the definition of a table that holds ${live.rows} row${live.rows === 1 ? '' : 's'}: ` +
          `split it into two bundles, one that clears ${live.table} and then one that changes its definition`,
      );
    } else if (kind === 'create-table') {
      this.problem(where, `CREATE TABLE ${live.table}: the table exists already (drop it first, or use IF NOT EXISTS)`);
    }
  }

  async imports(base: EntryBase, item: BundleItem, earlier: readonly EntryPlan[]): Promise<ImportsEntryPlan> {
    const plan: ImportsEntryPlan = { ...base, kind: 'imports', tables: [] };
    if (item.files.length === 0) this.problem(base.name, 'holds no data file');
    const seen = new Map<string, string>();
    for (const f of item.files) {
      const where = `${base.name}/${f.path}`;
      let data: ImportData;
      try {
        data = parseImportFile(f);
      } catch (err) {
        if (!(err instanceof ImportFileError)) throw err;
        this.problem(where, err.message);
        continue;
      }
      const table = await this.model.table(data.table);
      if (!table) {
        this.problem(where, `imports for unknown table ${data.table}`);
        continue;
      }
      const other = seen.get(table.name.toLowerCase());
      if (other) this.problem(where, `table ${table.name} is imported twice in this entry (also by ${other})`);
      seen.set(table.name.toLowerCase(), f.path);
      const changedEarlier = earlier.some(
        (e) =>
          e.kind === 'sql' &&
          [...e.definitionChanges, ...e.dataChanges].some(
            (t) => t.split('.').pop()!.toLowerCase() === table.name.toLowerCase(),
          ),
      );
      this.checkImport(where, data, table);
      plan.tables.push({ data, table: table.name, changedEarlier });
    }
    return plan;
  }

  /** Columns exist, the primary key is given in every row and once, values fit the column types. */
  private checkImport(where: string, data: ImportData, table: ModelTable): void {
    if (!table.columns) return; // reshaped by the bundle in a way not followed: checked when it runs
    const byName = new Map(table.columns.map((c) => [c.name.toLowerCase(), c]));
    const unknown = data.columns.filter((c) => !byName.has(c.toLowerCase()));
    if (unknown.length) {
      this.problem(
        where,
        `unknown column${unknown.length === 1 ? '' : 's'} ${unknown.join(', ')} in table ${table.name} (it has ${table.columns.map((c) => c.name).join(', ')})`,
      );
      return;
    }
    const pk = table.primaryKey ?? [];
    if (table.primaryKey && pk.length === 0) {
      this.problem(where, `table ${table.name} has no primary key: an import cannot tell which rows exist already`);
      return;
    }
    const valueProblems: string[] = [];
    const keys = new Map<string, number>();
    data.rows.forEach((row, i) => {
      const rowNo = i + 1;
      const key = pk.map((k) => keyValue(row, k));
      const missing = pk.filter((_, j) => key[j] === null);
      if (missing.length) valueProblems.push(`row ${rowNo}: no value for primary key column ${missing.join(', ')}`);
      else {
        const k = JSON.stringify(key);
        const first = keys.get(k);
        if (first !== undefined) valueProblems.push(`row ${rowNo}: same primary key as row ${first}`);
        else keys.set(k, rowNo);
      }
      for (const [col, v] of Object.entries(row)) {
        const why = valueMismatch(v, byName.get(col.toLowerCase())!);
        if (why) valueProblems.push(`row ${rowNo}, column ${col}: ${why}`);
      }
    });
    if (valueProblems.length) {
      const more = valueProblems.length - MAX_VALUE_PROBLEMS;
      this.problem(
        where,
        valueProblems.slice(0, MAX_VALUE_PROBLEMS).join('; ') + (more > 0 ? `; and ${more} more` : ''),
      );
    }
  }

  async files(base: EntryBase, item: BundleItem): Promise<FilesEntryPlan> {
    const plan: FilesEntryPlan = { ...base, kind: 'files', files: [] };
    if (item.files.length === 0) this.problem(base.name, 'holds no file');
    const dir = this.opts.configDir;
    if (!dir) {
      this.problem(base.name, 'copies files into the config folder: give --config-dir');
      return plan;
    }
    for (const f of item.files) {
      const where = `${base.name}/${f.path}`;
      const unsafe = unsafePathReason(f.path);
      const destination = resolve(dir, f.path);
      if (unsafe || !isInside(resolve(dir), destination)) {
        this.problem(where, `would be written outside the config folder (${unsafe ?? 'escapes it'})`);
        continue;
      }
      if (!(await staysInside(dir, destination))) {
        this.problem(where, 'would be written outside the config folder (through a symbolic link in it)');
        continue;
      }
      plan.files.push({ ...f, destination, state: await copyState(destination, f.data) });
    }
    return plan;
  }
}

function keyValue(row: Record<string, ImportValue>, column: string): ImportValue {
  const k = Object.keys(row).find((c) => c.toLowerCase() === column.toLowerCase());
  return k === undefined ? null : (row[k] ?? null);
}

const BOOLEAN_TEXT = /^(true|false|t|f|0|1)$/i;

/** Why `v` cannot go into `col`, or undefined. Only cheap checks: the database has the last word. */
export function valueMismatch(v: ImportValue, col: ModelColumn): string | undefined {
  if (v === null) return col.nullable ? undefined : 'NULL in a NOT NULL column';
  const text = String(v).trim();
  switch (col.type) {
    case 'integer':
      // true/false go into integer flag columns (SQLite has no boolean type) as 1/0.
      return typeof v === 'boolean' ||
        (typeof v === 'number' && Number.isInteger(v)) ||
        (typeof v === 'string' && /^[-+]?\d+$/.test(text))
        ? undefined
        : `${JSON.stringify(v)} is not an integer`;
    case 'number':
      return typeof v !== 'boolean' && text !== '' && Number.isFinite(Number(text))
        ? undefined
        : `${JSON.stringify(v)} is not a number`;
    case 'boolean':
      return typeof v === 'boolean' || BOOLEAN_TEXT.test(text) ? undefined : `${JSON.stringify(v)} is not a boolean`;
    case 'timestamp':
      return typeof v === 'string' && !Number.isNaN(Date.parse(text))
        ? undefined
        : `${JSON.stringify(v)} is not a date/time`;
    case 'binary':
      return typeof v === 'string' && v.startsWith('base64:') ? undefined : 'binary values are written base64:<data>';
    default:
      return undefined;
  }
}

function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel);
}

/** The nearest existing folder of `destination` resolves (links followed) inside the config folder. */
async function staysInside(configDir: string, destination: string): Promise<boolean> {
  let root: string;
  try {
    root = await realpath(configDir);
  } catch {
    return true; // created on apply: nothing in it can point elsewhere yet
  }
  let p = dirname(destination);
  for (;;) {
    try {
      const real = await realpath(p);
      return real === root || isInside(root, real);
    } catch {
      p = dirname(p);
    }
  }
}

async function copyState(destination: string, data: Uint8Array): Promise<FileCopyPlan['state']> {
  try {
    const st = await lstat(destination);
    if (!st.isFile()) return 'replaces';
    const current = await readFile(destination);
    return Buffer.compare(current, Buffer.from(data)) === 0 ? 'unchanged' : 'replaces';
  } catch {
    return 'new';
  }
}
