import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import type { DialectName } from './options.js';

/**
 * Direct driver access to a database the agents also use, for the work that is NOT sitesync:
 * seeding, the legacy algorithm, the raw upsert/COPY baselines, and reading results. SQL is written
 * with `?` placeholders (rendered as `$n` for PostgreSQL).
 */
export abstract class RawDb {
  abstract readonly dialect: DialectName;
  /** Runs one or more statements without parameters. */
  abstract exec(sql: string): Promise<void>;
  abstract all<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  /** Rows as arrays of values, in column order. */
  abstract rows(sql: string, params?: readonly unknown[]): Promise<unknown[][]>;
  /** Runs one statement; returns affected rows. */
  abstract run(sql: string, params?: readonly unknown[]): Promise<number>;
  abstract transaction<T>(fn: () => Promise<T>): Promise<T>;
  abstract close(): Promise<void>;

  static async open(dialect: DialectName, location: { path?: string; pgUrl?: string; schema?: string }) {
    if (dialect === 'sqlite') return new RawSqlite(location.path!);
    const db = new RawPg(location.pgUrl!, location.schema!);
    await db.connect();
    return db;
  }
}

export class RawSqlite extends RawDb {
  readonly dialect = 'sqlite' as const;
  readonly db: BetterSqlite3.Database;
  private readonly statements = new Map<string, BetterSqlite3.Statement>();

  constructor(path: string) {
    super();
    this.db = new BetterSqlite3(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 10000');
  }

  prepare(sql: string): BetterSqlite3.Statement {
    let s = this.statements.get(sql);
    if (!s) this.statements.set(sql, (s = this.db.prepare(sql)));
    return s;
  }

  exec(sql: string): Promise<void> {
    this.db.exec(sql);
    return Promise.resolve();
  }
  all<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    return Promise.resolve(this.prepare(sql).all(...params) as T[]);
  }
  rows(sql: string, params: readonly unknown[] = []): Promise<unknown[][]> {
    return Promise.resolve(
      this.prepare(sql)
        .raw(true)
        .all(...params) as unknown[][],
    );
  }
  run(sql: string, params: readonly unknown[] = []): Promise<number> {
    return Promise.resolve(this.prepare(sql).run(...params).changes);
  }
  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    this.db.exec('BEGIN');
    try {
      const r = await fn();
      this.db.exec('COMMIT');
      return r;
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
  }
  close(): Promise<void> {
    this.statements.clear();
    this.db.close();
    return Promise.resolve();
  }
}

function render(sql: string): string {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
}

export class RawPg extends RawDb {
  readonly dialect = 'postgres' as const;
  readonly client: pg.Client;

  constructor(
    readonly url: string,
    readonly schema: string,
  ) {
    super();
    this.client = new pg.Client({ connectionString: url, options: `-c search_path=${schema}` });
  }

  async connect(): Promise<void> {
    await this.client.connect();
    await this.client.query(`CREATE SCHEMA IF NOT EXISTS "${this.schema}"`);
  }

  async exec(sql: string): Promise<void> {
    await this.client.query(sql);
  }
  async all<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    const r = await this.client.query(render(sql), params as unknown[]);
    return r.rows as T[];
  }
  async rows(sql: string, params: readonly unknown[] = []): Promise<unknown[][]> {
    const r = await this.client.query({ text: render(sql), values: params as unknown[], rowMode: 'array' });
    return r.rows as unknown[][];
  }
  async run(sql: string, params: readonly unknown[] = []): Promise<number> {
    const r = await this.client.query(render(sql), params as unknown[]);
    return r.rowCount ?? 0;
  }
  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    await this.client.query('BEGIN');
    try {
      const r = await fn();
      await this.client.query('COMMIT');
      return r;
    } catch (err) {
      await this.client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }
  async close(): Promise<void> {
    await this.client.end();
  }

  /** COPY ... FROM STDIN fed by `source` (COPY text format chunks). */
  async copyIn(sql: string, source: AsyncIterable<string | Buffer>): Promise<void> {
    await pipeline(source, this.client.query(copyFrom(sql)));
  }

  /**
   * Streams `COPY (select) TO STDOUT` of `from` straight into `COPY ... FROM STDIN` here, as a
   * linked-server copy does; returns the bytes that crossed.
   */
  async copyAcross(from: RawPg, selectSql: string, intoSql: string): Promise<number> {
    let bytes = 0;
    const count = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        bytes += chunk.length;
        cb(null, chunk);
      },
    });
    await pipeline(
      from.client.query(copyTo(`COPY (${selectSql}) TO STDOUT`)),
      count,
      this.client.query(copyFrom(intoSql)),
    );
    return bytes;
  }
}

/** COPY text-format field. */
export function copyField(v: unknown): string {
  if (v === null || v === undefined) return '\\N';
  const s = String(v);
  return /[\\\t\n\r]/.test(s)
    ? s.replace(/[\\\t\n\r]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c]!)
    : s;
}

/** Bytes a row's values take as driver parameters: UTF-8 text, 8 per number, 0 for NULL. */
export function paramBytes(row: readonly unknown[]): number {
  let n = 0;
  for (const v of row) {
    if (v === null || v === undefined) continue;
    n += typeof v === 'string' ? Buffer.byteLength(v) : 8;
  }
  return n;
}
