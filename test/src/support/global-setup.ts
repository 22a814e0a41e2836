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

export default async function setup(project: TestProject): Promise<void> {
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
}
