import { afterEach, beforeEach } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as amqp from 'amqplib';
import {
  createLogger,
  Topology,
  type Logger,
  parsePeripheralConfig,
  type PeripheralConfigInput,
} from '@sitesync/protocol';
import { Database } from '@sitesync/db';
import { CentralAgent, parseCentralConfig, registerSite } from '@sitesync/central';
import { PeripheralAgent } from '@sitesync/peripheral';
import { createLabTables, labPipeline, seedLabData, type SeedOptions } from './lab-data.js';
import { managementUrl, mssqlUrl, mysqlUrl, postgresUrl } from './services.js';
import { createSqlServerDatabase, dropSqlServerDatabase, sqlServerDatabaseUrl } from './sqlserver.js';

export type DbKind = 'sqlite' | 'postgres' | 'mysql' | 'mssql';

/** Logs of agents under test: silent unless SITESYNC_TEST_LOG names a level. */
export function testLogger(name: string): Logger {
  return createLogger(name, process.env.SITESYNC_TEST_LOG ?? 'silent', false);
}

/**
 * One isolated sitesync world on the shared broker and database servers: its own name prefix,
 * its own SQLite files and PostgreSQL schemas. `teardown()` removes all of it.
 */
export class TestWorld {
  readonly id = randomBytes(4).toString('hex');
  readonly prefix = `t${this.id}.`;
  readonly topology = new Topology({ prefix: this.prefix });
  readonly dir = mkdtempSync(join(tmpdir(), 'sitesync-test-'));
  private readonly closers: Array<() => Promise<void>> = [];
  private readonly schemas: string[] = [];
  private readonly mysqlDatabases: string[] = [];
  private mysqlCreated = 0;
  private readonly sqlServerDatabases: string[] = [];
  private sqlServerCreated = 0;
  private readonly siteIds = new Set<number>();

  constructor(readonly amqpUrl: string) {}

  /** A fresh database URL of `kind` named `name` within this world. */
  /** A central config file for syncctl (`central.json` in the world's folder): this world's broker, prefix and management API, and `dbUrl`. */
  writeCentralConfig(dbUrl: string): string {
    const file = join(this.dir, 'central.json');
    const amqp = { url: this.amqpUrl, prefix: this.prefix, managementUrl: managementUrl() };
    writeFileSync(file, JSON.stringify({ amqp, db: { url: dbUrl } }));
    return file;
  }

  dbUrl(kind: DbKind, name: string): string {
    if (kind === 'sqlite') return `sqlite:${join(this.dir, `${name}.db`)}`;
    if (kind === 'mssql') {
      const ms = mssqlUrl();
      if (!ms) throw new Error('SQL Server not available');
      const database = `t${this.id}_${name}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
      this.sqlServerDatabases.push(database);
      return sqlServerDatabaseUrl(ms, database);
    }
    if (kind === 'mysql') {
      const my = mysqlUrl();
      if (!my) throw new Error('MariaDB not available');
      const database = `t${this.id}_${name}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
      this.mysqlDatabases.push(database);
      return my.replace(/\/[^/?]*(\?|$)/, `/${database}$1`);
    }
    const pg = postgresUrl();
    if (!pg) throw new Error('PostgreSQL not available');
    const schema = `t${this.id}_${name}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
    this.schemas.push(schema);
    return `${pg}${pg.includes('?') ? '&' : '?'}schema=${schema}`;
  }

  onTeardown(fn: () => Promise<void>): void {
    this.closers.push(fn);
  }

  /** MariaDB databases named by dbUrl() are created on first use. */
  private async ensureDatabases(): Promise<void> {
    const ms = mssqlUrl();
    if (ms) {
      for (const d of this.sqlServerDatabases.slice(this.sqlServerCreated)) await createSqlServerDatabase(ms, d);
      this.sqlServerCreated = this.sqlServerDatabases.length;
    }
    const my = mysqlUrl();
    if (!my || this.mysqlCreated === this.mysqlDatabases.length) return;
    const admin = await Database.open(my, { role: 'central', migrate: false });
    try {
      for (const d of this.mysqlDatabases.slice(this.mysqlCreated))
        await admin.query(`CREATE DATABASE IF NOT EXISTS \`${d}\``);
      this.mysqlCreated = this.mysqlDatabases.length;
    } finally {
      await admin.close();
    }
  }

  async startCentral(dbUrl: string, overrides: Record<string, unknown> = {}): Promise<CentralAgent> {
    await this.ensureDatabases();
    const agent = new CentralAgent(
      parseCentralConfig({ amqp: { url: this.amqpUrl, prefix: this.prefix }, db: { url: dbUrl }, ...overrides }),
      testLogger('central'),
    );
    await agent.start();
    this.onTeardown(() => agent.close());
    return agent;
  }

  /** Registers a site in the central's EstadoSyncGeneral (what `syncctl sites add` does). */
  async registerSite(
    central: Database,
    siteId: number,
    opts: { header?: string; detail?: string; user?: string; pipeline?: string } = {},
  ): Promise<void> {
    await registerSite(central, {
      siteId,
      pipeline: opts.pipeline ?? 'lab',
      headerTable: opts.header ?? 'central_orders',
      detailTable: opts.detail ?? 'central_results',
      brokerUser: opts.user ?? 'guest',
    });
  }

  /** Creates and seeds a site's lab tables, then returns its (not yet started) config input. */
  async prepareSite(siteId: number, dbUrl: string, seed?: SeedOptions): Promise<PeripheralConfigInput> {
    await this.ensureDatabases();
    const db = await Database.open(dbUrl, { role: 'site' });
    try {
      await createLabTables(db);
      if (seed) await seedLabData(db, seed);
    } finally {
      await db.close();
    }
    return this.siteConfig(siteId, dbUrl);
  }

  siteConfig(siteId: number, dbUrl: string, overrides: Partial<PeripheralConfigInput> = {}): PeripheralConfigInput {
    this.siteIds.add(siteId);
    return {
      siteId,
      amqp: { url: this.amqpUrl, prefix: this.prefix },
      db: { url: dbUrl },
      pipelines: [labPipeline()],
      ackTimeoutSeconds: 30,
      ...overrides,
    };
  }

  async startSite(input: PeripheralConfigInput): Promise<PeripheralAgent> {
    this.siteIds.add(input.siteId);
    const agent = new PeripheralAgent(parsePeripheralConfig(input), testLogger(`site-${input.siteId}`));
    await agent.start();
    this.onTeardown(() => agent.close());
    return agent;
  }

  /** Opens a database for assertions (closed at teardown). */
  async open(dbUrl: string, role: 'central' | 'site'): Promise<Database> {
    await this.ensureDatabases();
    const db = await Database.open(dbUrl, { role });
    this.onTeardown(() => db.close());
    return db;
  }

  /** A raw amqplib confirm channel for crafting messages. */
  async rawChannel(): Promise<amqp.ConfirmChannel> {
    const conn = await amqp.connect(this.amqpUrl);
    const ch = await conn.createConfirmChannel();
    this.onTeardown(async () => {
      await conn.close().catch(() => undefined);
    });
    return ch;
  }

  async teardown(): Promise<void> {
    for (const fn of this.closers.reverse()) await fn().catch(() => undefined);
    const conn = await amqp.connect(this.amqpUrl).catch(() => undefined);
    if (conn) {
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      const t = this.topology;
      const queues = [t.centralSyncQueue, t.centralInterventionQueue, ...[...this.siteIds].map((s) => t.siteQueue(s))];
      for (const q of queues) {
        for (const name of [q, t.deadLetterQueue(q)]) await ch.deleteQueue(name).catch(() => undefined);
      }
      // What the central rejected from a site (tests also publish as sites they never configured).
      for (const s of new Set([...this.siteIds, 101, 102, 103]))
        await ch.deleteQueue(t.siteRejectsQueue(s)).catch(() => undefined);
      for (const x of [t.up, t.down, t.dlx]) await ch.deleteExchange(x).catch(() => undefined);
      await conn.close().catch(() => undefined);
    }
    const pg = postgresUrl();
    if (pg && this.schemas.length) {
      const db = await Database.open(pg, { role: 'central', migrate: false });
      for (const s of this.schemas) await db.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`).catch(() => undefined);
      await db.close();
    }
    const my = mysqlUrl();
    if (my && this.mysqlDatabases.length) {
      const db = await Database.open(my, { role: 'central', migrate: false });
      for (const d of this.mysqlDatabases) await db.query(`DROP DATABASE IF EXISTS \`${d}\``).catch(() => undefined);
      await db.close();
    }
    const ms = mssqlUrl();
    if (ms) for (const d of this.sqlServerDatabases) await dropSqlServerDatabase(ms, d).catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Closes (server side, like a network cut) every broker connection whose name contains `marker`. */
export async function closeBrokerConnections(marker: string): Promise<number> {
  const { execFile } = await import('node:child_process');
  const run = (args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile('rabbitmqctl', args, { timeout: 30_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
  const out = await run(['-q', 'list_connections', 'pid', 'client_properties']);
  const pids = out
    .split('\n')
    .filter((line) => line.includes(marker))
    .map((line) => line.split('\t')[0]!)
    .filter(Boolean);
  for (const pid of pids) await run(['close_connection', pid, 'test: simulated network cut']);
  return pids.length;
}

/** A fresh TestWorld for each test of the enclosing `describe`, torn down after it (even when it fails). */
export function worldPerTest(amqpUrl: string | undefined, use: (w: TestWorld) => void): void {
  let world: TestWorld | undefined;
  beforeEach(() => {
    world = new TestWorld(amqpUrl!);
    use(world);
  });
  afterEach(async () => {
    await world?.teardown();
  });
}
