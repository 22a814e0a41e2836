import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { SyncError } from '@sitesync/protocol';
import type { Database } from './database';
import type { Dialect } from './dialects';
import type { JournalOperation } from './journal';

/**
 * The lock that keeps two `syncctl db upgrade` / `bundle apply` runs off one database at the same
 * time (two upgrades would run the same scripts twice; an upgrade and a bundle would change one
 * schema from two sides). A row of `sync_operation_lock`, inserted only when absent, so the
 * database itself decides who holds it on every dialect. The holder renews its expiry while it
 * runs; a holder that died leaves a row that expires, or that `--break-lock` removes at once.
 *
 * Created with plain DDL like `sync_journal`: the upgrade takes it before any migration runs (the
 * site's own `sync_lock` comes with a migration, and the central has none).
 */

/** The table of operation locks. */
export const OPERATION_LOCK_TABLE = 'sync_operation_lock';
/** The one lock all syncctl operations that change a database take. */
const LOCK_NAME = 'database-change';
/** What takes a lock: a syncctl operation, or the central's periodic retention purge (its own lock name). */
export type LockedOperation = JournalOperation | 'retention';
/** How long a lock lasts unless its holder renews it. @default 10 minutes */
export const DEFAULT_LOCK_TTL_MS = 10 * 60_000;

/** Who holds the lock, as recorded in its row. */
export interface LockHolder {
  operation: string;
  /** Host and process id of the holder. */
  holder: string;
  acquiredAt: Date;
  expiresAt: Date;
}

/** Another run holds the lock: the operation must not start. */
export class OperationLockedError extends SyncError {
  override name = 'OperationLockedError';
  constructor(
    readonly operation: LockedOperation,
    readonly heldBy: LockHolder,
  ) {
    super(
      `another ${heldBy.operation} holds this database's lock (${OPERATION_LOCK_TABLE}): ${heldBy.holder}, ` +
        `since ${heldBy.acquiredAt.toISOString()}; the ${operation} did not start. If that process is gone, ` +
        `the lock expires at ${heldBy.expiresAt.toISOString()}, or run again with --break-lock to remove it now`,
      'OPERATION_LOCKED',
    );
  }
}

export interface OperationLockOptions {
  /** Remove the lock whoever holds it (its holder is known to be gone). @default false */
  breakLock?: boolean;
  /** Lifetime of the lock between renewals. @default {@link DEFAULT_LOCK_TTL_MS} */
  ttlMs?: number;
  /** Told who held a lock that `breakLock` removed. */
  onBroken?: (previous: LockHolder) => void;
  /**
   * Which lock: work that must only keep to one runner at a time, not off the database changes,
   * takes its own name. @default the syncctl operations' `database-change`
   */
  name?: string;
}

interface LockRow {
  operation: string;
  owner: string;
  holder: string;
  acquired_at: unknown;
  expires_at: unknown;
}

/** A held lock; {@link release} it in a `finally`. */
export class OperationLock {
  private renewal: NodeJS.Timeout | undefined;
  private released: Promise<void> | undefined;

  private constructor(
    private readonly db: Database,
    private readonly owner: string,
    private readonly ttlMs: number,
    private readonly name: string,
  ) {}

  /** Takes the lock for `operation`, or throws {@link OperationLockedError} naming its holder. */
  static async acquire(
    db: Database,
    operation: LockedOperation,
    opts: OperationLockOptions = {},
  ): Promise<OperationLock> {
    const d = db.dialect;
    const name = opts.name ?? LOCK_NAME;
    const ttlMs = opts.ttlMs ?? DEFAULT_LOCK_TTL_MS;
    const owner = randomUUID();
    const table = d.quote(OPERATION_LOCK_TABLE);
    const create = createOperationLockTableSql(d);
    // Two first runs at once: PostgreSQL's CREATE TABLE IF NOT EXISTS can fail in the one that
    // loses the race (a duplicate catalogue row); once the winner's table is there it succeeds.
    await db.query(create).catch(() => db.query(create));
    if (opts.breakLock) {
      const previous = await readHolder(db, name);
      await db.execute(`DELETE FROM ${table} WHERE name = ?`, [name]);
      if (previous) opts.onBroken?.(toHolder(previous));
    }
    const now = new Date();
    // A live holder is refused on a read: a write would wait for its transaction (SQLite's one
    // writer) and fail with "database is locked" instead of naming it.
    const current = await readHolder(db, name);
    if (current && toDate(current.expires_at) > now) throw new OperationLockedError(operation, toHolder(current));
    const holder = `${hostname()} pid ${process.pid}`.slice(0, 255);
    await db.run(
      d.insertIgnore(
        OPERATION_LOCK_TABLE,
        ['name', 'operation', 'owner', 'holder', 'acquired_at', 'expires_at'],
        [name, operation, owner, holder, stored(d, now), stored(d, new Date(now.getTime() + ttlMs))],
      ),
    );
    // A holder that died: its lock expired, take it over (one statement, so only one taker wins).
    await db.execute(
      `UPDATE ${table} SET operation = ?, owner = ?, holder = ?, acquired_at = ?, expires_at = ? ` +
        `WHERE name = ? AND expires_at < ?`,
      [operation, owner, holder, stored(d, now), stored(d, new Date(now.getTime() + ttlMs)), name, stored(d, now)],
    );
    const row = await readHolder(db, name);
    if (!row || row.owner !== owner) {
      // No row at all: its holder released it just now; the caller may simply run again.
      throw new OperationLockedError(
        operation,
        row ? toHolder(row) : { operation, holder: 'a run that just ended', acquiredAt: now, expiresAt: now },
      );
    }
    const lock = new OperationLock(db, owner, ttlMs, name);
    lock.scheduleRenewal();
    return lock;
  }

  /** Gives the lock up (only if this run still holds it). May be called more than once. */
  release(): Promise<void> {
    this.released ??= (async () => {
      clearTimeout(this.renewal);
      await this.db.execute(`DELETE FROM ${this.db.dialect.quote(OPERATION_LOCK_TABLE)} WHERE name = ? AND owner = ?`, [
        this.name,
        this.owner,
      ]);
    })();
    return this.released;
  }

  /** Pushes the expiry forward every third of its lifetime while the run goes on. */
  private scheduleRenewal(): void {
    this.renewal = setTimeout(() => {
      const d = this.db.dialect;
      this.db
        .execute(`UPDATE ${d.quote(OPERATION_LOCK_TABLE)} SET expires_at = ? WHERE name = ? AND owner = ?`, [
          stored(d, new Date(Date.now() + this.ttlMs)),
          this.name,
          this.owner,
        ])
        // A renewal that fails (connection lost) is retried at the next one; the run itself will fail too.
        .catch(() => undefined)
        .finally(() => {
          if (!this.released) this.scheduleRenewal();
        });
    }, this.ttlMs / 3);
    this.renewal.unref();
  }
}

/** `CREATE TABLE sync_operation_lock` when missing, in the dialect's own form. */
export function createOperationLockTableSql(d: Dialect): string {
  return d.createTableIfMissing(
    OPERATION_LOCK_TABLE,
    [
      { name: 'name', type: d.textType(64), nullable: false },
      { name: 'operation', type: d.textType(20), nullable: false },
      { name: 'owner', type: d.textType(64), nullable: false },
      { name: 'holder', type: d.textType(255), nullable: false },
      { name: 'acquired_at', type: d.timestampType(), nullable: false },
      { name: 'expires_at', type: d.timestampType(), nullable: false },
    ],
    ['name'],
  );
}

async function readHolder(db: Database, name: string): Promise<LockRow | undefined> {
  const rows = await db.query<LockRow>(
    `SELECT operation, owner, holder, acquired_at, expires_at FROM ${db.dialect.quote(OPERATION_LOCK_TABLE)} WHERE name = ?`,
    [name],
  );
  return rows[0];
}

function toHolder(r: LockRow): LockHolder {
  return {
    operation: r.operation,
    holder: r.holder,
    acquiredAt: toDate(r.acquired_at),
    expiresAt: toDate(r.expires_at),
  };
}

function stored(d: Dialect, t: Date): unknown {
  return d.time(t);
}

function toDate(v: unknown): Date {
  return v instanceof Date ? v : new Date(String(v));
}
