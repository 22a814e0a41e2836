import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { zipSync } from 'fflate';
import type { Database } from '@sitesync/db';
import { JOURNAL_TABLE, OPERATION_LOCK_TABLE } from '@sitesync/db';
import { syncctl } from '../support/wait.js';

/** Shared helpers of the bundle suites. */

export { SYNCCTL } from '../support/wait.js';

/** `syncctl --db <url> bundle ...args` */
export function syncctlBundle(dbUrl: string, ...args: string[]) {
  return syncctl(['--db', dbUrl, 'bundle', ...args]);
}

/** Writes `files` (path -> text) under `dir`; returns `dir`. */
export function writeTree(dir: string, files: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

/** Zips `files` (path -> text) into `zipFile`, under `wrapper/` when given (as zipping the folder itself does). */
export function writeZip(zipFile: string, files: Record<string, string>, wrapper = ''): string {
  const tree: Record<string, Uint8Array> = {};
  for (const [path, text] of Object.entries(files)) tree[wrapper + path] = new TextEncoder().encode(text);
  writeFileSync(zipFile, zipSync(tree));
  return zipFile;
}

/** Every file under `dir` with its content (empty when the folder does not exist). */
export function snapshotDir(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(dir, p)] = readFileSync(p, 'utf8');
    }
  };
  walk(dir);
  return out;
}

function normalize(v: unknown): unknown {
  if (v instanceof Date) return v.toISOString();
  if (Buffer.isBuffer(v)) return v.toString('hex');
  if (typeof v === 'bigint') return Number(v);
  // Drivers differ on numeric types (strings for bigint/decimal on some): compare as text.
  return v === null || v === undefined ? null : String(v);
}

/**
 * Every table and every row of a database (rows sorted), for "nothing changed" and "ends identical".
 * `journal`: 'include' as is, 'outcome' only step/item/result/checksum (times and run ids differ), 'omit'.
 * An empty `sync_operation_lock` is left out.
 */
export async function snapshotDb(
  db: Database,
  journal: 'include' | 'outcome' | 'omit' = 'include',
): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  // Names with a dot are tables of other schemas (other tests' worlds share the server).
  for (const table of (await db.tableNames()).filter((t) => !t.includes('.')).sort()) {
    const isJournal = table.toLowerCase() === JOURNAL_TABLE;
    if (isJournal && journal === 'omit') continue;
    const rows = await db.query<Record<string, unknown>>(`SELECT * FROM ${db.dialect.quote(table)}`);
    // Created on first use and empty again after every run: only a lock left behind is a difference.
    if (table.toLowerCase() === OPERATION_LOCK_TABLE && rows.length === 0) continue;
    const shaped = rows.map((r) => {
      const pick =
        isJournal && journal === 'outcome' ? { step: r.step, item: r.item, result: r.result, checksum: r.checksum } : r;
      return JSON.stringify(Object.fromEntries(Object.entries(pick).map(([k, v]) => [k.toLowerCase(), normalize(v)])));
    });
    out[table.toLowerCase()] = isJournal && journal === 'outcome' ? shaped : shaped.sort();
  }
  return out;
}

/** The bundle journal of a database, oldest first: `step result` (whole entries only, unless `items`: `step item result`). */
export async function journalLines(db: Database, items = false): Promise<string[]> {
  const rows = await db.query<{ step: string; item: string; result: string }>(
    `SELECT step, item, result FROM ${JOURNAL_TABLE} WHERE operation = ? ORDER BY id`,
    ['bundle'],
  );
  return rows.filter((r) => items || r.item === '').map((r) => `${r.step} ${r.item}${r.item ? ' ' : ''}${r.result}`);
}
