import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as amqp from 'amqplib';
import pg from 'pg';
import { Topology } from '@sitesync/protocol';
import type { DialectName } from './options.js';
import { RawDb } from './raw-db.js';

/**
 * Everything one bench run creates, so it can all be removed at the end: a broker name prefix
 * (exchanges and queues), a temporary directory (SQLite files, config files), and PostgreSQL
 * schemas named `bench_<random>_<role>`.
 */
export class BenchWorld {
  readonly id = randomBytes(4).toString('hex');
  readonly prefix = `bench-${this.id}.`;
  readonly topology = new Topology({ prefix: this.prefix });
  readonly dir = mkdtempSync(join(tmpdir(), 'sitesync-bench-'));
  private readonly schemas = new Set<string>();
  private readonly siteIds = new Set<number>();
  private readonly extraQueues = new Set<string>();
  private torndown: Promise<void> | undefined;

  constructor(
    readonly amqpUrl: string,
    readonly pgUrl: string,
  ) {}

  schemaName(name: string): string {
    return `bench_${this.id}_${name}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  }

  /** A sitesync database URL for `name` (a SQLite file or a PostgreSQL schema of this run). */
  dbUrl(dialect: DialectName, name: string): string {
    if (dialect === 'sqlite') return `sqlite:${this.sqlitePath(name)}`;
    const schema = this.schemaName(name);
    this.schemas.add(schema);
    return `${this.pgUrl}${this.pgUrl.includes('?') ? '&' : '?'}schema=${schema}`;
  }

  sqlitePath(name: string): string {
    return join(this.dir, `${name}.db`);
  }

  /** Direct driver access to the same database as dbUrl(dialect, name). */
  raw(dialect: DialectName, name: string): Promise<RawDb> {
    if (dialect === 'sqlite') return RawDb.open('sqlite', { path: this.sqlitePath(name) });
    const schema = this.schemaName(name);
    this.schemas.add(schema);
    return RawDb.open('postgres', { pgUrl: this.pgUrl, schema });
  }

  /** Remembers a site whose queue must be deleted at the end. */
  site(siteId: number): number {
    this.siteIds.add(siteId);
    return siteId;
  }

  queue(name: string): string {
    this.extraQueues.add(name);
    return name;
  }

  /** Deletes this run's queues, exchanges, schemas and files. Safe to call more than once. */
  teardown(): Promise<void> {
    this.torndown ??= this.doTeardown();
    return this.torndown;
  }

  private async doTeardown(): Promise<void> {
    const conn = await amqp.connect(this.amqpUrl).catch(() => undefined);
    if (conn) {
      conn.on('error', () => undefined);
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      const t = this.topology;
      const queues = [
        t.centralSyncQueue,
        t.centralInterventionQueue,
        ...[...this.siteIds].map((s) => t.siteQueue(s)),
      ].flatMap((q) => [q, t.deadLetterQueue(q)]);
      for (const q of [...queues, ...this.extraQueues]) await ch.deleteQueue(q).catch(() => undefined);
      for (const x of [t.up, t.down, t.dlx]) await ch.deleteExchange(x).catch(() => undefined);
      await conn.close().catch(() => undefined);
    }
    if (this.schemas.size) {
      const client = new pg.Client({ connectionString: this.pgUrl });
      try {
        await client.connect();
        for (const s of this.schemas) await client.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
      } catch {
        /* PostgreSQL gone: nothing of ours is left on it */
      } finally {
        await client.end().catch(() => undefined);
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
