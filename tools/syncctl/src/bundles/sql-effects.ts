import type { DialectName, SqlStatement, SqlToken } from '@sitesync/db';

/** A table name as written: its dot-separated parts, quotes removed (`dbo.T100` -> ['dbo', 'T100']). */
export type TableName = string[];

/** What a statement does to tables, as far as a bundle's checks need to know. */
export type SqlEffect =
  | {
      kind: 'create-table';
      table: TableName;
      ifNotExists: boolean;
      /** Column names, or null when they could not be read (`CREATE TABLE ... AS SELECT`). */
      columns: string[] | null;
      primaryKey: string[];
    }
  | { kind: 'drop-table'; table: TableName }
  | {
      kind: 'alter-table';
      table: TableName;
      addColumns: string[];
      dropColumns: string[];
      renameColumns: Array<[string, string]>;
      renameTo: TableName | null;
      /** Some action was not understood: the table's columns are unknown from here on. */
      unknownActions: boolean;
    }
  | { kind: 'rename-table'; table: TableName; to: TableName }
  | { kind: 'data'; table: TableName; verb: string }
  | { kind: 'transaction-control'; verb: string };

const word = (t: SqlToken | undefined, ...ws: string[]): boolean =>
  t?.kind === 'word' && ws.includes(t.value.toUpperCase());
const sym = (t: SqlToken | undefined, s: string): boolean => t?.kind === 'symbol' && t.value === s;

/** Words that start a table constraint, not a column, inside `CREATE TABLE (...)`. */
const CONSTRAINT_WORDS = [
  'CONSTRAINT',
  'PRIMARY',
  'UNIQUE',
  'FOREIGN',
  'CHECK',
  'KEY',
  'INDEX',
  'FULLTEXT',
  'SPATIAL',
  'EXCLUDE',
  'LIKE',
  'PERIOD',
];

/**
 * The table effects of one statement (on SQL Server, one batch). Only what a bundle is checked for:
 * definition changes (CREATE, ALTER, DROP, RENAME of a table, sp_rename), data changes (for the
 * plan) and transaction control (which would break the entry's own transaction).
 */
export function sqlEffects(stmt: SqlStatement, dialect: DialectName): SqlEffect[] {
  const t = stmt.tokens;
  if (dialect !== 'mssql') return effectAt(t, 0, dialect);
  // A T-SQL batch holds many statements without delimiters; a routine's definition must be alone in
  // its batch, and its body runs later (not now), so it changes no table here.
  if (word(t[0], 'CREATE', 'ALTER') && definesRoutine(t)) return [];
  const out: SqlEffect[] = [];
  for (let i = 0; i < t.length; i++) {
    if (t[i]!.kind === 'word' && (i === 0 || !sym(t[i - 1], '.'))) out.push(...effectAt(t, i, dialect));
  }
  return out;
}

function definesRoutine(t: SqlToken[]): boolean {
  let i = 1;
  if (word(t[i], 'OR')) i += 2; // CREATE OR ALTER
  return word(t[i], 'PROC', 'PROCEDURE', 'FUNCTION', 'TRIGGER', 'VIEW');
}

/** Reads a possibly qualified name at `i`; returns it and the index after it. */
function nameAt(t: SqlToken[], i: number): [TableName, number] | undefined {
  const parts: string[] = [];
  for (;;) {
    const tok = t[i];
    if (!tok || (tok.kind !== 'word' && tok.kind !== 'identifier' && !(tok.kind === 'string' && parts.length === 0)))
      return parts.length ? [parts, i] : undefined;
    parts.push(tok.value);
    i++;
    if (!sym(t[i], '.')) return [parts, i];
    i++;
  }
}

function effectAt(t: SqlToken[], i: number, dialect: DialectName): SqlEffect[] {
  const w = t[i]?.kind === 'word' ? t[i]!.value.toUpperCase() : '';
  switch (w) {
    case 'CREATE':
      return createTable(t, i + 1);
    case 'DROP':
      return dropTable(t, i + 1);
    case 'ALTER':
      return alterTable(t, i + 1);
    case 'RENAME':
      return renameTable(t, i + 1);
    case 'EXEC':
    case 'EXECUTE':
      return spRename(t, i + 1);
    case 'DELETE':
    case 'INSERT':
    case 'MERGE':
      return dataChange(t, word(t[i + 1], 'FROM', 'INTO') ? i + 2 : i + 1, w);
    case 'UPDATE':
      return dataChange(t, i + 1, w);
    case 'TRUNCATE':
      return dataChange(t, word(t[i + 1], 'TABLE') ? i + 2 : i + 1, w);
    default:
      return transactionControl(t, i, w, dialect);
  }
}

function transactionControl(t: SqlToken[], i: number, w: string, dialect: DialectName): SqlEffect[] {
  const next = t[i + 1];
  const alone = next === undefined || sym(next, ';');
  const tx = (verb: string): SqlEffect[] => [{ kind: 'transaction-control', verb }];
  if (w === 'COMMIT' || w === 'ROLLBACK' || w === 'SAVEPOINT') return tx(w);
  if (w === 'START' && word(next, 'TRANSACTION')) return tx('START TRANSACTION');
  if (w === 'BEGIN') {
    // T-SQL's BEGIN ... END blocks and BEGIN TRY are not transactions; BEGIN TRAN is.
    if (word(next, 'TRAN', 'TRANSACTION', 'WORK', 'DEFERRED', 'IMMEDIATE', 'EXCLUSIVE', 'ISOLATION'))
      return tx('BEGIN');
    if (alone && dialect !== 'mssql' && i === 0) return tx('BEGIN');
  }
  if (w === 'END' && i === 0 && dialect === 'postgres' && (alone || word(next, 'TRANSACTION', 'WORK')))
    return tx('END');
  return [];
}

function createTable(t: SqlToken[], i: number): SqlEffect[] {
  if (word(t[i], 'OR') && word(t[i + 1], 'REPLACE')) i += 2;
  if (word(t[i], 'GLOBAL', 'LOCAL')) i++;
  // Temporary tables vanish with the session: nothing of the site's schema changes.
  if (word(t[i], 'TEMP', 'TEMPORARY')) return [];
  if (word(t[i], 'UNLOGGED')) i++;
  if (!word(t[i], 'TABLE')) return [];
  i++;
  let ifNotExists = false;
  if (word(t[i], 'IF') && word(t[i + 1], 'NOT') && word(t[i + 2], 'EXISTS')) {
    ifNotExists = true;
    i += 3;
  }
  const named = nameAt(t, i);
  if (!named) return [];
  const [table, after] = named;
  if (table[table.length - 1]!.startsWith('#')) return []; // SQL Server temporary table
  const shape = sym(t[after], '(') ? columnList(t, after) : { columns: null, primaryKey: [] };
  return [{ kind: 'create-table', table, ifNotExists, ...shape }];
}

/** Column names and primary key of a `(...)` column list starting at `open`. */
function columnList(t: SqlToken[], open: number): { columns: string[] | null; primaryKey: string[] } {
  const columns: string[] = [];
  const primaryKey: string[] = [];
  let depth = 0;
  let itemStart = open + 1;
  for (let i = open; i < t.length; i++) {
    if (sym(t[i], '(')) depth++;
    else if (sym(t[i], ')')) depth--;
    const endsItem = (depth === 1 && sym(t[i], ',')) || depth === 0;
    if (!endsItem) continue;
    const item = t.slice(itemStart, i);
    itemStart = i + 1;
    const first = item[0];
    if (first && !word(first, ...CONSTRAINT_WORDS) && (first.kind === 'word' || first.kind === 'identifier')) {
      columns.push(first.value);
      const pk = item.findIndex((x, k) => word(x, 'PRIMARY') && word(item[k + 1], 'KEY'));
      if (pk > 0) primaryKey.push(first.value);
    } else {
      // PRIMARY KEY (a, b) or CONSTRAINT pk PRIMARY KEY (a, b)
      const pk = item.findIndex((x, k) => word(x, 'PRIMARY') && word(item[k + 1], 'KEY'));
      if (pk >= 0) {
        for (const x of item.slice(pk + 2)) if (x.kind === 'word' || x.kind === 'identifier') primaryKey.push(x.value);
      }
    }
    if (depth === 0) return { columns, primaryKey };
  }
  return { columns: null, primaryKey: [] };
}

function dropTable(t: SqlToken[], i: number): SqlEffect[] {
  if (!word(t[i], 'TABLE')) return [];
  i++;
  if (word(t[i], 'IF') && word(t[i + 1], 'EXISTS')) i += 2;
  const out: SqlEffect[] = [];
  for (;;) {
    const named = nameAt(t, i);
    if (!named) return out;
    out.push({ kind: 'drop-table', table: named[0] });
    if (!sym(t[named[1]], ',')) return out;
    i = named[1] + 1;
  }
}

function alterTable(t: SqlToken[], i: number): SqlEffect[] {
  if (!word(t[i], 'TABLE')) return [];
  i++;
  if (word(t[i], 'IF') && word(t[i + 1], 'EXISTS')) i += 2;
  if (word(t[i], 'ONLY')) i++;
  const named = nameAt(t, i);
  if (!named) return [];
  const effect = {
    kind: 'alter-table' as const,
    table: named[0],
    addColumns: [] as string[],
    dropColumns: [] as string[],
    renameColumns: [] as Array<[string, string]>,
    renameTo: null as TableName | null,
    unknownActions: false,
  };
  let lastVerb = '';
  for (const action of topLevelItems(t, named[1])) {
    let k = 0;
    let verb = word(action[0], 'ADD', 'DROP', 'RENAME') ? action[0]!.value.toUpperCase() : '';
    if (verb) k++;
    // SQL Server: ALTER TABLE t ADD a int, b int  (one ADD for a list)
    else if (lastVerb === 'ADD') verb = 'ADD';
    lastVerb = verb;
    if (word(action[k], 'COLUMN')) k++;
    if (word(action[k], 'IF')) k += word(action[k + 1], 'NOT') ? 3 : 2;
    const target = action[k];
    const isName = target?.kind === 'word' || target?.kind === 'identifier';
    if (verb === 'ADD' && isName && !word(target, ...CONSTRAINT_WORDS)) effect.addColumns.push(target.value);
    else if (verb === 'ADD' && word(target, ...CONSTRAINT_WORDS)) continue;
    else if (verb === 'DROP' && isName && !word(target, 'CONSTRAINT', 'INDEX', 'KEY', 'PRIMARY', 'FOREIGN', 'CHECK'))
      effect.dropColumns.push(target.value);
    else if (verb === 'DROP' && isName) continue;
    else if (verb === 'RENAME' && word(target, 'TO', 'AS')) effect.renameTo = nameAt(action, k + 1)?.[0] ?? null;
    else if (verb === 'RENAME' && isName && word(action[k + 1], 'TO') && action[k + 2])
      effect.renameColumns.push([target.value, action[k + 2]!.value]);
    else effect.unknownActions = true;
  }
  return [effect];
}

/** The comma-separated parts of the rest of a statement (to its end or the next `;`), outside parentheses. */
function topLevelItems(t: SqlToken[], from: number): SqlToken[][] {
  const items: SqlToken[][] = [[]];
  let depth = 0;
  for (let i = from; i < t.length && !sym(t[i], ';'); i++) {
    const tok = t[i]!;
    if (sym(tok, '(')) depth++;
    if (sym(tok, ')')) depth--;
    if (depth === 0 && sym(tok, ',')) items.push([]);
    else items[items.length - 1]!.push(tok);
  }
  return items.filter((x) => x.length);
}

/** MySQL: RENAME TABLE a TO b [, c TO d] */
function renameTable(t: SqlToken[], i: number): SqlEffect[] {
  if (!word(t[i], 'TABLE')) return [];
  const out: SqlEffect[] = [];
  for (const item of topLevelItems(t, i + 1)) {
    const from = nameAt(item, 0);
    if (!from || !word(item[from[1]], 'TO')) continue;
    const to = nameAt(item, from[1] + 1);
    if (to) out.push({ kind: 'rename-table', table: from[0], to: to[0] });
  }
  return out;
}

/** SQL Server: EXEC sp_rename 'dbo.old', 'new' [, 'COLUMN'] */
function spRename(t: SqlToken[], i: number): SqlEffect[] {
  const proc = nameAt(t, i);
  if (!proc || proc[0][proc[0].length - 1]!.toLowerCase() !== 'sp_rename') return [];
  const args = topLevelItems(t, proc[1]).map((a) => a.find((x) => x.kind === 'string')?.value);
  const [from, to, kind] = args;
  if (!from || !to) return [];
  const parts = from.split('.');
  if (kind?.toUpperCase() === 'COLUMN') {
    return [
      {
        kind: 'alter-table',
        table: parts.slice(0, -1),
        addColumns: [],
        dropColumns: [],
        renameColumns: [[parts[parts.length - 1]!, to]],
        renameTo: null,
        unknownActions: false,
      },
    ];
  }
  if (kind && kind.toUpperCase() !== 'OBJECT') return [];
  return [{ kind: 'rename-table', table: parts, to: [to] }];
}

function dataChange(t: SqlToken[], i: number, verb: string): SqlEffect[] {
  const named = nameAt(t, i);
  return named && named[0][0]!.toUpperCase() !== 'TOP' ? [{ kind: 'data', table: named[0], verb }] : [];
}
