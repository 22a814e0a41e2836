import { connect } from 'node:net';
import type { TestProject } from 'vitest/node';

/** Services the integration suites use: an environment URL when given, else a local server if one answers. */
function answers(host: string, port: number, timeoutMs = 1500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Stops what the setup started (vitest calls the returned function after the run). */
type Teardown = () => Promise<void>;

/**
 * SQL Server for the integration suites: SITESYNC_TEST_MSSQL_URL when given, else a container
 * started through testcontainers when a Docker engine answers, else none (the suites say so).
 */
async function sqlServer(): Promise<{ url?: string; teardown?: Teardown; why?: string }> {
  if (process.env.SITESYNC_TEST_MSSQL_URL) return { url: process.env.SITESYNC_TEST_MSSQL_URL };
  const { getContainerRuntimeClient } = await import('testcontainers');
  try {
    await getContainerRuntimeClient();
  } catch (err) {
    return { why: `no Docker engine for testcontainers (${(err as Error).message})` };
  }
  const { MSSQLServerContainer } = await import('@testcontainers/mssqlserver');
  const container = await new MSSQLServerContainer('mcr.microsoft.com/mssql/server:2022-latest')
    .acceptLicense()
    .start();
  const url = `mssql://${container.getUsername()}:${encodeURIComponent(container.getPassword())}@${container.getHost()}:${container.getFirstMappedPort()}/master?encrypt=false`;
  return { url, teardown: async () => void (await container.stop()) };
}

export default async function setup(project: TestProject): Promise<Teardown | undefined> {
  const env = process.env;
  const found: Record<string, string | undefined> = {
    SITESYNC_TEST_AMQP_URL:
      env.SITESYNC_TEST_AMQP_URL ??
      ((await answers('127.0.0.1', 5672)) ? 'amqp://guest:guest@127.0.0.1:5672' : undefined),
    SITESYNC_TEST_PG_URL:
      env.SITESYNC_TEST_PG_URL ??
      ((await answers('127.0.0.1', 5432)) ? 'postgres://postgres@127.0.0.1:5432/test' : undefined),
    SITESYNC_TEST_MYSQL_URL:
      env.SITESYNC_TEST_MYSQL_URL ??
      ((await answers('127.0.0.1', 3306)) ? 'mysql://root@127.0.0.1:3306/test' : undefined),
    SITESYNC_TEST_MGMT_URL:
      env.SITESYNC_TEST_MGMT_URL ??
      ((await answers('127.0.0.1', 15672)) ? 'http://guest:guest@127.0.0.1:15672' : undefined),
  };
  for (const [k, v] of Object.entries(found)) {
    if (v) project.provide(k as never, v as never);
    else console.log(`[sitesync tests] ${k} not set and no local server answers: suites that need it are skipped`);
  }
  const mssql = await sqlServer();
  if (mssql.url) project.provide('SITESYNC_TEST_MSSQL_URL', mssql.url);
  else
    console.log(
      `[sitesync tests] SQL Server suites skipped: ${mssql.why}; set SITESYNC_TEST_MSSQL_URL to use a server`,
    );
  return mssql.teardown;
}
