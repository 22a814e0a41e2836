import { randomBytes } from 'node:crypto';
import { afterEach } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Database, type DatabaseRole } from '@sitesync/db';
import { mssqlUrl, mysqlUrl, postgresUrl } from '../../support/services.js';
import { createSqlServerDatabase, dropSqlServerDatabase, sqlServerDatabaseUrl } from '../../support/sqlserver.js';

/** The database servers a suite can run against; `url` is undefined when that server is not reachable. */
export type BackendName = 'sqlite' | 'postgres' | 'mysql' | 'mssql';

export interface Scratch {
  /** A URL naming a fresh, empty place (file, schema or database) that belongs to this test only. */
  url: string;
  /** Removes that place and everything in it. */
  drop(): Promise<void>;
}

export function uniqueName(prefix = 't'): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** Base URL of a backend for this run, or undefined when it cannot run here. */
export function backendUrl(name: BackendName): string | undefined {
  switch (name) {
    case 'sqlite':
      return 'sqlite::memory:';
    case 'postgres':
      return postgresUrl();
    case 'mysql':
      return mysqlUrl();
    case 'mssql':
      return mssqlUrl();
  }
}

/**
 * A fresh, isolated database location: a temp-file SQLite database, a PostgreSQL schema
 * (`?schema=t_<random>`) or a MariaDB database (`t_<random>`).
 */
export async function createScratch(name: BackendName): Promise<Scratch> {
  switch (name) {
    case 'sqlite': {
      const dir = await mkdtemp(join(tmpdir(), 'sitesync-unit-'));
      return { url: `sqlite:${join(dir, 'test.db')}`, drop: () => rm(dir, { recursive: true, force: true }) };
    }
    case 'postgres': {
      const base = postgresUrl();
      if (!base) throw new Error('no PostgreSQL server for this run');
      const schema = uniqueName();
      const u = new URL(base);
      u.searchParams.set('schema', schema);
      return {
        url: u.toString(),
        drop: () =>
          withAdmin(
            base,
            async (db) => void (await db.query(`DROP SCHEMA IF EXISTS ${db.dialect.quote(schema)} CASCADE`)),
          ),
      };
    }
    case 'mysql': {
      const base = mysqlUrl();
      if (!base) throw new Error('no MariaDB/MySQL server for this run');
      const database = uniqueName();
      await withAdmin(base, (db) => db.query(`CREATE DATABASE ${db.dialect.quote(database)}`));
      const u = new URL(base);
      u.pathname = `/${database}`;
      return {
        url: u.toString(),
        drop: () =>
          withAdmin(base, async (db) => void (await db.query(`DROP DATABASE IF EXISTS ${db.dialect.quote(database)}`))),
      };
    }
    case 'mssql': {
      const base = mssqlUrl();
      if (!base) throw new Error('no SQL Server for this run');
      const database = uniqueName();
      await createSqlServerDatabase(base, database);
      return { url: sqlServerDatabaseUrl(base, database), drop: () => dropSqlServerDatabase(base, database) };
    }
  }
}

/** Opens a Database on `url` (no migrations), runs `fn`, closes it. */
async function withAdmin<T>(url: string, fn: (db: Database) => Promise<T>): Promise<T> {
  const db = await Database.open(url, { role: 'central', migrate: false, poolSize: 1 });
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

/** Opens a scratch database of `role` on `backend`, and remembers how to remove it. */
export async function openScratch(
  backend: BackendName,
  role: DatabaseRole,
  migrate = true,
): Promise<{ db: Database; scratch: Scratch }> {
  const scratch = await createScratch(backend);
  try {
    const db = await Database.open(scratch.url, { role, migrate, poolSize: 4 });
    return { db, scratch };
  } catch (err) {
    await scratch.drop().catch(() => undefined);
    throw err;
  }
}

/**
 * Registers an `afterEach` that closes and drops what the returned function opened: a scratch
 * database of `backend` for one test (call it inside the test).
 */
export function scratchPerTest(backend: BackendName): (role: DatabaseRole) => Promise<Database> {
  let opened: { db: Database; scratch: Scratch } | undefined;
  afterEach(async () => {
    await opened?.db.close();
    await opened?.scratch.drop();
    opened = undefined;
  });
  return async (role) => {
    opened = await openScratch(backend, role);
    return opened.db;
  };
}
