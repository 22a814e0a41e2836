import { Database } from '@sitesync/db';

/** Creates a SQL Server database through the server's `master` URL. */
export async function createSqlServerDatabase(adminUrl: string, database: string): Promise<void> {
  const db = await Database.open(adminUrl, { role: 'central', migrate: false, poolSize: 1 });
  try {
    await db.query(`IF DB_ID(N'${database}') IS NULL CREATE DATABASE ${db.dialect.quote(database)}`);
  } finally {
    await db.close();
  }
}

/** Drops a SQL Server database even while pooled connections still hold it. */
export async function dropSqlServerDatabase(adminUrl: string, database: string): Promise<void> {
  const db = await Database.open(adminUrl, { role: 'central', migrate: false, poolSize: 1 });
  try {
    const q = db.dialect.quote(database);
    await db.query(`IF DB_ID(N'${database}') IS NOT NULL ALTER DATABASE ${q} SET SINGLE_USER WITH ROLLBACK IMMEDIATE`);
    await db.query(`IF DB_ID(N'${database}') IS NOT NULL DROP DATABASE ${q}`);
  } finally {
    await db.close();
  }
}

/** The URL of `database` on the server of `adminUrl`. */
export function sqlServerDatabaseUrl(adminUrl: string, database: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${database}`;
  return u.toString();
}
