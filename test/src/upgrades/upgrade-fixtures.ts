import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Database } from '@sitesync/db';
import type { DbKind, TestWorld } from '../support/harness.js';
import { createLabTables, seedLabData } from '../support/lab-data.js';
import { amqpUrl, mssqlUrl, mysqlUrl, postgresUrl } from '../support/services.js';
import { createSqlServerDatabase } from '../support/sqlserver.js';
import { type PeripheralConfigInput } from '@sitesync/protocol';

/** Shared setup of the `syncctl db check` / `db upgrade` suites. */

/** The broker is not used; TestWorld's teardown only tries it. */
export const NO_BROKER = amqpUrl() ?? 'amqp://127.0.0.1:1';

/** SQLite always; the servers that answer. SQL Server only where Docker gave one. */
export function upgradeKinds(): DbKind[] {
  const kinds: DbKind[] = ['sqlite'];
  if (postgresUrl()) kinds.push('postgres');
  else console.log('[sitesync tests] db check/upgrade on PostgreSQL skipped: no server available');
  if (mysqlUrl()) kinds.push('mysql');
  else console.log('[sitesync tests] db check/upgrade on MariaDB skipped: no server available');
  if (mssqlUrl()) kinds.push('mssql');
  else console.log('[sitesync tests] db check/upgrade on SQL Server skipped: no Docker engine');
  return kinds;
}

/** A text column type of `n` characters in `kind`'s SQL. */
export function textType(kind: DbKind, n: number): string {
  return kind === 'sqlite' ? 'TEXT' : kind === 'mssql' ? `NVARCHAR(${n})` : `VARCHAR(${n})`;
}

/**
 * Opens a fresh database of the world WITHOUT sitesync's migrations (an upgrade applies them),
 * creating the server-side database first where the server needs one.
 */
export async function openBare(world: TestWorld, kind: DbKind, url: string): Promise<Database> {
  if (kind === 'mysql') {
    const admin = await Database.open(mysqlUrl()!, { role: 'central', migrate: false, poolSize: 1 });
    await admin
      .query(`CREATE DATABASE IF NOT EXISTS \`${new URL(url).pathname.slice(1)}\``)
      .finally(() => admin.close());
  }
  if (kind === 'mssql') await createSqlServerDatabase(mssqlUrl()!, new URL(url).pathname.slice(1));
  const db = await Database.open(url, { role: 'site', migrate: false });
  world.onTeardown(() => db.close());
  return db;
}

/** A site database with the lab tables seeded (sitesync's migrations applied only when `migrated`). */
export async function labSite(
  world: TestWorld,
  kind: DbKind,
  name: string,
  opts: { orders?: number; migrated?: boolean } = {},
): Promise<{ url: string; db: Database }> {
  const url = world.dbUrl(kind, name);
  const db = await openBare(world, kind, url);
  await createLabTables(db);
  await seedLabData(db, { orders: opts.orders ?? 20 });
  if (opts.migrated) await db.migrate();
  return { url, db };
}

/** Writes a peripheral config file for the site database `url` (lab pipeline unless overridden). */
export function writeSiteConfig(
  world: TestWorld,
  url: string,
  overrides: Partial<PeripheralConfigInput> = {},
  file = 'site.json',
): string {
  const path = join(world.dir, file);
  writeFileSync(path, JSON.stringify(world.siteConfig(101, url, overrides), null, 2));
  return path;
}

/** Writes an upgrade scripts folder: `{ pre: { '010-x.sql': 'SQL' }, ... }`. */
export function writeScripts(world: TestWorld, name: string, scripts: Record<string, Record<string, string>>): string {
  const folder = join(world.dir, name);
  for (const [phase, files] of Object.entries(scripts)) {
    mkdirSync(join(folder, phase), { recursive: true });
    for (const [file, sql] of Object.entries(files)) writeFileSync(join(folder, phase, file), sql);
  }
  mkdirSync(folder, { recursive: true });
  return folder;
}

export { SYNCCTL, syncctl } from '../support/wait.js';

/** A timestamp as the dialect stores it (SQLite keeps ISO text). */
export function storedTime(db: Database, d: Date): unknown {
  return db.dialect.name === 'sqlite' ? d.toISOString() : d;
}
