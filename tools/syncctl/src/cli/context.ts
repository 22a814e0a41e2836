import { type Command, InvalidArgumentError } from 'commander';
import { ConfigError, createLogger, formatTable, type ConfigOrigin, type Logger } from '@sitesync/protocol';
import { Database } from '@sitesync/db';
import {
  hasCentralConfig,
  loadCentralConfigWithOrigin,
  loadSitesOfUser,
  MessageSigner,
  type CentralConfig,
  type DeadLetterContext,
} from '@sitesync/central';

/** syncctl's global options (`-c, --config`, `--db`). */
export interface GlobalOptions {
  config?: string;
  db?: string;
}

/**
 * What every command group shares: the global options (read when a command runs, after parsing)
 * and the central config, loaded from them and the environment the entry point hands in.
 */
export class SyncctlContext {
  constructor(
    private readonly program: Command,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  get options(): GlobalOptions {
    return this.program.opts<GlobalOptions>();
  }

  /** The central config: `--config`, else `SYNC_CONFIG`, plus `SYNC_*` overrides. */
  centralConfig(): CentralConfig {
    return this.centralConfigWithOrigin().config;
  }

  /** The central config and where its keys came from; with neither a file nor `SYNC_AMQP_URL`, says what to give. */
  private centralConfigWithOrigin(): { config: CentralConfig; origin: ConfigOrigin } {
    if (!hasCentralConfig(this.options.config, this.env)) {
      throw new ConfigError(
        "this command needs the central's configuration: pass --config <central.json>, set SYNC_CONFIG, " +
          'or give --db <url> (and --amqp <url> for broker commands)',
        'config',
      );
    }
    return loadCentralConfigWithOrigin(this.options.config, this.env);
  }

  /** The central config, or undefined where neither the options nor the environment give one. */
  optionalCentralConfig(): CentralConfig | undefined {
    return hasCentralConfig(this.options.config, this.env) ? this.centralConfig() : undefined;
  }

  /** `--db`, else the central config's `db.url`; with where it was set, for errors to name. */
  centralDb(): DatabaseTarget {
    if (this.options.db !== undefined) return { url: this.options.db, urlSource: '--db' };
    const { config, origin } = this.centralConfigWithOrigin();
    return { url: config.db.url, urlSource: origin.whereSet('db.url') };
  }

  /**
   * Runs `fn` on the central database, closed afterwards. `readOnly`: for commands that only read
   * (a check): opened so that nothing can be written, and not migrated.
   */
  async withCentralDb<T>(fn: (db: Database) => Promise<T>, opts: { readOnly?: boolean } = {}): Promise<T> {
    const { url, urlSource } = this.centralDb();
    const db = await Database.open(url, { role: 'central', urlSource, readOnly: opts.readOnly === true });
    try {
      return await fn(db);
    } finally {
      await db.close();
    }
  }
}

/** A database URL and where it was set (`--db`, `db.url in <file>`, ...): what `Database.open` names in its errors. */
export interface DatabaseTarget {
  url: string;
  urlSource: string;
}

/** What reading dead letters needs from the central database: who signs and which user speaks for which sites. */
export async function deadLetterSources(db: Database): Promise<Omit<DeadLetterContext, 'topology'>> {
  return { signer: await MessageSigner.forDatabase(db), sitesOfUser: await loadSitesOfUser(db) };
}

/** syncctl's own log (the broker connection's, provisioning's): plain lines on stderr. */
export function syncctlLog(level: 'silent' | 'warn'): Logger {
  return createLogger('syncctl', level, false);
}

/** Argument parser: a site id (efector id). */
export function siteId(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('a site id is a positive integer (efector id)');
  return n;
}

/** Argument parser: a table name syncctl puts into SQL. */
export function identifier(v: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(v)) throw new InvalidArgumentError('letters, digits and _ only');
  return v;
}

export function positiveInt(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${what} is a positive integer`);
  return n;
}

/** `--json` output: indented JSON on stdout. */
export function writeJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Rows as a text table on stdout. */
export function writeTable(rows: ReadonlyArray<Record<string, unknown>>): void {
  process.stdout.write(`${formatTable(rows)}\n`);
}

/** Rows as JSON with `--json`, else as a text table. */
export function writeRows(rows: ReadonlyArray<Record<string, unknown>>, json: boolean | undefined): void {
  if (json) writeJson(rows);
  else writeTable(rows);
}
