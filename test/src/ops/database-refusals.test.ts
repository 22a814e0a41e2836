import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { labPipeline } from '../support/lab-data.js';
import { mysqlUrl, postgresUrl } from '../support/services.js';
import { runBin, syncctl } from '../support/wait.js';

const CENTRAL = 'agents/central/bin/sync-central.js';
const PERIPHERAL = 'agents/peripheral/bin/sync-peripheral.js';
/** Never reached: the database fails first. */
const BROKER = 'amqp://guest:guest@127.0.0.1:1';
const PASSWORD = 'Sup3r-secret-pw';

const dir = mkdtempSync(join(tmpdir(), 'sitesync-dbrefusal-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The test process's environment without any SYNC_* variable, plus `extra`. */
function envWith(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SYNC_')));
  return { ...env, ...extra };
}

function writeConfig(config: Record<string, unknown>): string {
  const file = join(dir, `${randomUUID()}.json`);
  writeFileSync(file, JSON.stringify(config));
  return file;
}

const centralConfig = (dbUrl: string) => writeConfig({ amqp: { url: BROKER }, db: { url: dbUrl } });
const siteConfig = (dbUrl: string) =>
  writeConfig({ siteId: 101, amqp: { url: BROKER }, db: { url: dbUrl }, pipelines: [labPipeline()] });

/** `base` (a server URL of the test services) pointing at `database` with `password`. */
function serverUrl(base: string, changes: { database?: string; password?: string; port?: number }): string {
  const u = new URL(base);
  if (changes.database) u.pathname = `/${changes.database}`;
  if (changes.password) u.password = changes.password;
  if (changes.port) u.port = String(changes.port);
  if (!u.username) u.username = u.protocol.startsWith('postgres') ? 'postgres' : 'root';
  return u.toString();
}

/** A database name no server holds. */
const missingDatabase = () => `nodb_${randomUUID().replace(/-/g, '').slice(0, 12)}`;

describe('a database that refuses the agent names the key and where it was set', () => {
  it.skipIf(!postgresUrl())(
    'the central: a PostgreSQL database that does not exist is a configuration error naming db.url in the file',
    async () => {
      const file = centralConfig(serverUrl(postgresUrl()!, { database: missingDatabase(), password: PASSWORD }));
      const r = await runBin(CENTRAL, ['run', '-c', file], envWith());
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('cannot open the central database at postgres://');
      expect(r.stderr).toContain('(password hidden)');
      expect(r.stderr).toContain(`check db.url in ${file} (or SYNC_DB_URL)`);
      expect(r.stdout + r.stderr).not.toContain(PASSWORD);
    },
  );

  it.skipIf(!mysqlUrl())(
    'the central: a MariaDB password refused, the URL from SYNC_DB_URL, is a configuration error naming SYNC_DB_URL',
    async () => {
      const file = centralConfig('sqlite::memory:');
      const url = serverUrl(mysqlUrl()!, { password: PASSWORD });
      const r = await runBin(CENTRAL, ['run', '-c', file], envWith({ SYNC_DB_URL: url }));
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('cannot open the central database at mysql://');
      expect(r.stderr).toContain('Access denied');
      expect(r.stderr).toContain(`check SYNC_DB_URL, which overrides db.url in ${file}`);
      expect(r.stdout + r.stderr).not.toContain(PASSWORD);
    },
  );

  it('the site: a SQLite file that cannot be created is a configuration error naming db.url in the file', async () => {
    // A regular file where the database's folder should be: refused even to root.
    const notAFolder = join(dir, 'not-a-folder');
    writeFileSync(notAFolder, '');
    const file = siteConfig(`sqlite:${join(notAFolder, 'site.db')}`);
    const r = await runBin(PERIPHERAL, ['run', '-c', file], envWith());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`cannot open the site database at sqlite:${join(notAFolder, 'site.db')}`);
    expect(r.stderr).toContain(`check db.url in ${file} (or SYNC_DB_URL)`);
  });

  it('the site: an unreachable PostgreSQL server stays transient (exit 1), naming SYNC_DB_URL', async () => {
    const file = siteConfig('sqlite::memory:');
    const url = `postgres://sync:${PASSWORD}@127.0.0.1:1/site`;
    const r = await runBin(PERIPHERAL, ['run', '-c', file], envWith({ SYNC_DB_URL: url }));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('cannot open the site database at postgres://sync@127.0.0.1:1/site (password hidden)');
    expect(r.stderr).toContain(`check SYNC_DB_URL, which overrides db.url in ${file}`);
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
  });

  it.skipIf(!postgresUrl())(
    'syncctl: a central database that does not exist names db.url in the config file, and --db when given',
    async () => {
      const url = serverUrl(postgresUrl()!, { database: missingDatabase(), password: PASSWORD });
      const file = centralConfig(url);
      const fromFile = await syncctl(['-c', file, 'status'], envWith());
      expect(fromFile.code).toBe(2);
      expect(fromFile.stderr).toContain(`check db.url in ${file} (or SYNC_DB_URL)`);
      expect(fromFile.stdout + fromFile.stderr).not.toContain(PASSWORD);
      const fromOption = await syncctl(['--db', url, 'status'], envWith());
      expect(fromOption.code).toBe(2);
      expect(fromOption.stderr).toContain('— check --db');
      expect(fromOption.stdout + fromOption.stderr).not.toContain(PASSWORD);
    },
  );

  it('syncctl db and bundle commands name where their database URL was set: the site config, the central config, --db', async () => {
    const notAFolder = join(dir, 'not-a-folder-either');
    writeFileSync(notAFolder, '');
    const badUrl = `sqlite:${join(notAFolder, 'x.db')}`;
    const site = siteConfig(badUrl);
    const check = await syncctl(['db', 'check', '--role', 'site', '--site-config', site], envWith());
    expect(check.code).toBe(2);
    expect(check.stderr).toContain(`cannot open the site database at ${badUrl}`);
    expect(check.stderr).toContain(`check db.url in ${site} (or SYNC_DB_URL)`);

    const central = centralConfig(badUrl);
    const upgrade = await syncctl(['-c', central, 'db', 'upgrade'], envWith());
    expect(upgrade.code).toBe(2);
    expect(upgrade.stderr).toContain(`check db.url in ${central} (or SYNC_DB_URL)`);
    const pipelineFile = writeConfig(labPipeline());
    const exported = await syncctl(
      ['-c', central, 'bundle', 'export', join(dir, 'out'), '--site', '101', '--pipeline-file', pipelineFile],
      envWith(),
    );
    expect(exported.code).toBe(2);
    expect(exported.stderr).toContain(`check db.url in ${central} (or SYNC_DB_URL)`);

    const bundleDir = join(dir, 'bundle');
    mkdirSync(bundleDir, { recursive: true });
    writeFileSync(join(bundleDir, '001.sql'), 'CREATE TABLE ref (id INTEGER);\n');
    const applied = await syncctl(['--db', badUrl, 'bundle', 'apply', bundleDir], envWith());
    expect(applied.code).toBe(2);
    expect(applied.stderr).toContain(`cannot open the site database at ${badUrl}`);
    expect(applied.stderr).toContain('— check --db');
  });
});

describe('syncctl without a configuration', () => {
  it('says how to give one, and exits 2', async () => {
    const r = await syncctl(['status'], envWith());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("needs the central's configuration: pass --config <central.json>, set SYNC_CONFIG");
    expect(r.stderr).toContain('--db <url>');
    expect(r.stderr).not.toContain('config key "amqp"');
  });
});
