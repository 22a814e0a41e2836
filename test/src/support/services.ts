import { inject } from 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    SITESYNC_TEST_AMQP_URL?: string;
    SITESYNC_TEST_PG_URL?: string;
    SITESYNC_TEST_MYSQL_URL?: string;
    SITESYNC_TEST_MGMT_URL?: string;
    SITESYNC_TEST_MSSQL_URL?: string;
  }
}

/** The broker URL for this run, or undefined (the suite is skipped, and says why). */
export function amqpUrl(): string | undefined {
  return inject('SITESYNC_TEST_AMQP_URL');
}
export function postgresUrl(): string | undefined {
  return inject('SITESYNC_TEST_PG_URL');
}
export function mysqlUrl(): string | undefined {
  return inject('SITESYNC_TEST_MYSQL_URL');
}

/** A SQL Server (master database, sa) for this run: a testcontainer where Docker runs, else undefined. */
export function mssqlUrl(): string | undefined {
  return inject('SITESYNC_TEST_MSSQL_URL');
}

/** The RabbitMQ management API (with credentials), or undefined when the plugin is off. */
/** The databases every integration suite runs on here: SQLite, and PostgreSQL and MariaDB when they answer. */
export function localDbKinds(): Array<'sqlite' | 'postgres' | 'mysql'> {
  return ['sqlite', ...(postgresUrl() ? (['postgres'] as const) : []), ...(mysqlUrl() ? (['mysql'] as const) : [])];
}

export function managementUrl(): string | undefined {
  return inject('SITESYNC_TEST_MGMT_URL');
}

/** Prints why a suite does not run; use with `describe.skipIf(!url)`. */
export function reportSkip(what: string, url: string | undefined): boolean {
  if (!url) console.log(`[sitesync tests] skipping ${what}: no server available`);
  return !url;
}
