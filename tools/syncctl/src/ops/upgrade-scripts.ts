import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '@sitesync/protocol';
import { splitSqlScript, SqlScriptError, type DialectName, type SqlStatement, type SqlToken } from '@sitesync/db';

/**
 * The scripts folder a release ships with an upgrade (`syncctl db upgrade --scripts <folder>`):
 *
 *   pre/     run before the schema migrations (adapt data so the new schema can be applied)
 *   schema/  run after sitesync's own migrations (the release's schema changes)
 *   post/    run after the schema (fill new columns, move data)
 *   final/   run last, after the site's customisations were restored
 *
 * Each holds `*.sql` files run in name order. Every subfolder is optional.
 */

export const SCRIPT_PHASES = ['pre', 'schema', 'post', 'final'] as const;
export type ScriptPhase = (typeof SCRIPT_PHASES)[number];

export interface UpgradeScript {
  phase: ScriptPhase;
  /** `<phase>/<file>`: how the journal and the operator name it. */
  name: string;
  path: string;
  text: string;
  /** sha256 of the file's bytes: a script changed since it ran is run again. */
  checksum: string;
  statements: SqlStatement[];
}

export type UpgradeScripts = Record<ScriptPhase, UpgradeScript[]>;

export function emptyScripts(): UpgradeScripts {
  return { pre: [], schema: [], post: [], final: [] };
}

/**
 * Reads and splits every script of `folder` for `dialect`. Refuses, before anything runs, a folder
 * that does not exist, an unexpected entry (a typo like `posts/` would otherwise be skipped
 * silently) and a script the splitter cannot read.
 */
export function readUpgradeScripts(folder: string, dialect: DialectName): UpgradeScripts {
  if (!existsSync(folder) || !statSync(folder).isDirectory()) {
    throw new ConfigError(`--scripts ${folder}: not a folder`, 'scripts');
  }
  const scripts = emptyScripts();
  for (const entry of readdirSync(folder).sort()) {
    if (entry.startsWith('.')) continue;
    const phase = SCRIPT_PHASES.find((p) => p === entry);
    if (!phase || !statSync(join(folder, entry)).isDirectory()) {
      throw new ConfigError(
        `--scripts ${folder}: unexpected entry ${JSON.stringify(entry)} (expected the folders ${SCRIPT_PHASES.join(', ')})`,
        'scripts',
      );
    }
    scripts[phase] = readPhase(folder, phase, dialect);
  }
  return scripts;
}

function readPhase(folder: string, phase: ScriptPhase, dialect: DialectName): UpgradeScript[] {
  const dir = join(folder, phase);
  const out: UpgradeScript[] = [];
  for (const file of readdirSync(dir).sort()) {
    if (file.startsWith('.')) continue;
    const path = join(dir, file);
    if (!file.toLowerCase().endsWith('.sql') || !statSync(path).isFile()) {
      throw new ConfigError(`--scripts: ${phase}/${file} is not a .sql file`, 'scripts');
    }
    const bytes = readFileSync(path);
    const text = bytes.toString('utf8');
    let statements: SqlStatement[];
    try {
      statements = splitSqlScript(text, dialect);
    } catch (err) {
      if (err instanceof SqlScriptError)
        throw new ConfigError(`--scripts: ${phase}/${file}: ${err.message}`, 'scripts');
      throw err;
    }
    out.push({
      phase,
      name: `${phase}/${file}`,
      path,
      text,
      checksum: createHash('sha256').update(bytes).digest('hex'),
      statements,
    });
  }
  return out;
}

/** A `FOREIGN KEY (columns) REFERENCES table (columns)` that a script adds to an existing table. */
export interface AddedForeignKey {
  /** The script that adds it. */
  script: string;
  table: string;
  columns: string[];
  referencedTable: string;
  referencedColumns: string[];
}

/**
 * The foreign keys the scripts add to existing tables with `ALTER TABLE t ADD [CONSTRAINT c] FOREIGN
 * KEY (...) REFERENCES r (...)`: existing rows must satisfy them or the script fails mid-upgrade.
 * Skipped: keys added `WITH NOCHECK` (SQL Server) or `NOT VALID` (PostgreSQL), which leave existing
 * rows alone, and keys in `CREATE TABLE` (a new table has no rows yet).
 */
export function addedForeignKeys(scripts: UpgradeScripts): AddedForeignKey[] {
  const out: AddedForeignKey[] = [];
  for (const phase of SCRIPT_PHASES) {
    for (const script of scripts[phase]) {
      for (const st of script.statements) out.push(...foreignKeysOf(st.tokens, script.name));
    }
  }
  return out;
}

const upper = (t: SqlToken | undefined) => (t?.kind === 'word' ? t.value.toUpperCase() : undefined);

function foreignKeysOf(tokens: readonly SqlToken[], script: string): AddedForeignKey[] {
  if (upper(tokens[0]) !== 'ALTER' || upper(tokens[1]) !== 'TABLE') return [];
  if (tokens.some((t) => upper(t) === 'NOCHECK')) return [];
  const table = readName(tokens, 2);
  if (!table) return [];
  const out: AddedForeignKey[] = [];
  for (let i = table.next; i < tokens.length; i++) {
    if (upper(tokens[i]) !== 'FOREIGN' || upper(tokens[i + 1]) !== 'KEY') continue;
    const cols = readColumnList(tokens, i + 2);
    if (!cols || upper(tokens[cols.next]) !== 'REFERENCES') continue;
    const ref = readName(tokens, cols.next + 1);
    const refCols = ref && readColumnList(tokens, ref.next);
    if (!ref || !refCols || refCols.columns.length !== cols.columns.length) continue;
    if (isNotValid(tokens, refCols.next)) continue;
    out.push({
      script,
      table: table.name,
      columns: cols.columns,
      referencedTable: ref.name,
      referencedColumns: refCols.columns,
    });
    i = refCols.next - 1;
  }
  return out;
}

/** `NOT VALID` before the next comma (the end of this constraint). */
function isNotValid(tokens: readonly SqlToken[], from: number): boolean {
  for (let i = from; i < tokens.length && tokens[i]!.value !== ','; i++) {
    if (upper(tokens[i]) === 'NOT' && upper(tokens[i + 1]) === 'VALID') return true;
  }
  return false;
}

const isName = (t: SqlToken | undefined) => t?.kind === 'word' || t?.kind === 'identifier';

/** `name` or `schema.name` (the last part is kept: names are resolved in the URL's schema). */
function readName(tokens: readonly SqlToken[], at: number): { name: string; next: number } | undefined {
  if (upper(tokens[at]) === 'ONLY') at++; // PostgreSQL: ALTER TABLE ONLY t
  if (!isName(tokens[at])) return undefined;
  let name = tokens[at]!.value;
  let next = at + 1;
  while (tokens[next]?.value === '.' && isName(tokens[next + 1])) {
    name = tokens[next + 1]!.value;
    next += 2;
  }
  return { name, next };
}

function readColumnList(tokens: readonly SqlToken[], at: number): { columns: string[]; next: number } | undefined {
  if (tokens[at]?.value !== '(') return undefined;
  const columns: string[] = [];
  let i = at + 1;
  while (i < tokens.length) {
    if (!isName(tokens[i])) return undefined;
    columns.push(tokens[i]!.value);
    const sep = tokens[i + 1]?.value;
    if (sep === ')') return { columns, next: i + 2 };
    if (sep !== ',') return undefined;
    i += 2;
  }
  return undefined;
}
