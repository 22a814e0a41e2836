import { RUN_LOG_TABLE } from '@sitesync/db';
import { randomUUID } from 'node:crypto';
import { TransientError } from '@sitesync/protocol';
import type { Database } from '@sitesync/db';

const LOCK_NAME = 'session';
const VERSION_COUNTER = 'version';

/** A session's outcome in the run log; `refused`: the central refused the whole session (site not registered or disabled). */
export type SessionStatus = 'running' | 'ok' | 'incomplete' | 'unconfirmed' | 'failed' | 'abandoned' | 'refused';

export interface SessionCounts {
  batches: number;
  headers: number;
  details: number;
  deletions: number;
  acked: number;
}

/**
 * The site's run log (`LAB_SyncStatus`), session lock and version counter. What the acks write into
 * the run log (`headers_acked`, a late outcome) is written by session-acks.ts, in the ack's transaction.
 */
export class RunLog {
  readonly owner = randomUUID();

  constructor(private readonly db: Database) {}

  private q(c: string): string {
    return this.db.dialect.quote(c);
  }

  /** When the last session the central confirmed complete started (everything older is central). */
  async lastCompleteStart(): Promise<Date | undefined> {
    const rows = await this.db.query<{ started: unknown }>(
      `SELECT MAX(started_at) AS started FROM ${this.db.dialect.quote(RUN_LOG_TABLE)} WHERE status = 'ok'`,
    );
    const v = rows[0]?.started;
    if (v === null || v === undefined) return undefined;
    const d = v instanceof Date ? v : new Date(String(v));
    return Number.isNaN(d.getTime()) ? undefined : d;
  }

  /** The next monotonic version of this site (survives restarts: kept in the site database). */
  async nextVersion(): Promise<number> {
    return this.db.transaction(async (tx) => {
      const n = await tx.execute(`UPDATE sync_counter SET value = value + 1 WHERE name = ?`, [VERSION_COUNTER]);
      if (n === 0) await tx.execute(`INSERT INTO sync_counter (name, value) VALUES (?, ?)`, [VERSION_COUNTER, 1]);
      const rows = await tx.query<{ value: number | string }>(`SELECT value FROM sync_counter WHERE name = ?`, [
        VERSION_COUNTER,
      ]);
      return Number(rows[0]!.value);
    });
  }

  /**
   * Takes the site's session lock, so two agents (or a cron `--once` beside a scheduled agent)
   * never run sessions of one site at once. The lock expires if its holder dies.
   */
  async acquireLock(ttlMs: number): Promise<boolean> {
    const d = this.db.dialect;
    const expires = d.name === 'sqlite' ? new Date(Date.now() + ttlMs).toISOString() : new Date(Date.now() + ttlMs);
    return this.db.transaction(async (tx) => {
      const taken = await tx.execute(
        `UPDATE sync_lock SET owner = ?, expires_at = ? WHERE name = ? AND (owner = ? OR expires_at < ?)`,
        [this.owner, expires, LOCK_NAME, this.owner, d.now()],
      );
      if (taken > 0) return true;
      const exists = await tx.query(`SELECT owner FROM sync_lock WHERE name = ?`, [LOCK_NAME]);
      if (exists.length > 0) return false;
      await tx.execute(`INSERT INTO sync_lock (name, owner, expires_at) VALUES (?, ?, ?)`, [
        LOCK_NAME,
        this.owner,
        expires,
      ]);
      return true;
    });
  }

  async releaseLock(): Promise<void> {
    await this.db.execute(`DELETE FROM sync_lock WHERE name = ? AND owner = ?`, [LOCK_NAME, this.owner]);
  }

  /**
   * Called with the lock held: a run log entry still `running` belongs to a session whose agent
   * died (its lock expired). Say so, rather than leave it running forever.
   */
  async markAbandoned(): Promise<number> {
    return this.db.execute(
      `UPDATE ${this.q(RUN_LOG_TABLE)} SET status = ?, finished_at = ?, error = ? WHERE status = ?`,
      [
        'abandoned',
        this.db.dialect.now(),
        'the agent stopped during this session; its changes are sent again',
        'running',
      ],
    );
  }

  async start(sessionId: string, version: number, startedAt: Date): Promise<void> {
    const d = this.db.dialect;
    await this.db.execute(
      `INSERT INTO ${this.q(RUN_LOG_TABLE)} (session_id, version, started_at, status) VALUES (?, ?, ?, ?)`,
      [sessionId, version, d.name === 'sqlite' ? startedAt.toISOString() : startedAt, 'running'],
    );
  }

  /** Writes the session's sent counts (what the broker confirmed so far); the status is left alone. */
  async progress(sessionId: string, c: Omit<SessionCounts, 'acked'>): Promise<void> {
    await this.db.execute(
      `UPDATE ${this.q(RUN_LOG_TABLE)} SET batches_sent = ?, headers_sent = ?, details_sent = ?, deletions_sent = ? WHERE session_id = ?`,
      [c.batches, c.headers, c.details, c.deletions, sessionId],
    );
  }

  async finish(
    sessionId: string,
    status: SessionStatus,
    c: Omit<SessionCounts, 'acked'>,
    error?: string,
  ): Promise<void> {
    const d = this.db.dialect;
    // 'unconfirmed' never overwrites an outcome another process already recorded from a late ack.
    const keep = status === 'unconfirmed' ? `CASE WHEN status IN ('ok', 'incomplete') THEN status ELSE ? END` : '?';
    await this.db.execute(
      `UPDATE ${this.q(RUN_LOG_TABLE)} SET finished_at = ?, status = ${keep}, batches_sent = ?, headers_sent = ?, ` +
        `details_sent = ?, deletions_sent = ?, error = ? WHERE session_id = ?`,
      [d.now(), status, c.batches, c.headers, c.details, c.deletions, error ? error.slice(0, 2000) : null, sessionId],
    );
  }
}

/**
 * The sent counts of one session's run log entry, kept current as the broker confirms its batches:
 * a site agent killed mid-session leaves an entry that says what it had sent. One UPDATE runs at a
 * time; batches confirmed meanwhile are written together by the next one. The session's outcome
 * goes through the same queue, so no count written before it can land after it.
 */
export class SentCounts {
  private readonly counts = { batches: 0, headers: 0, details: 0, deletions: 0 };
  private tail: Promise<void> = Promise.resolve();
  private queued = false;

  constructor(
    private readonly runLog: RunLog,
    private readonly sessionId: string,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** What the broker confirmed so far. */
  get confirmed(): Omit<SessionCounts, 'acked'> {
    return { ...this.counts };
  }

  /** Counts a batch the broker confirmed, and has the run log say so. */
  add(c: Omit<SessionCounts, 'acked' | 'batches'>): void {
    this.counts.batches++;
    this.counts.headers += c.headers;
    this.counts.details += c.details;
    this.counts.deletions += c.deletions;
    if (this.queued) return;
    this.queued = true;
    this.tail = this.tail.then(() => {
      this.queued = false;
      return this.runLog.progress(this.sessionId, this.confirmed).catch(this.onError);
    });
  }

  /** Writes the outcome with the counts confirmed by then, after any write still queued. */
  finish(status: SessionStatus, error?: string): Promise<void> {
    const done = this.tail.then(() => this.runLog.finish(this.sessionId, status, this.confirmed, error));
    this.tail = done.catch(() => undefined);
    return done;
  }
}

export class SessionLockedError extends TransientError {
  override name = 'SessionLockedError';
  constructor(message = 'another session of this site is running') {
    super(message, 'SESSION_LOCKED');
  }
}
