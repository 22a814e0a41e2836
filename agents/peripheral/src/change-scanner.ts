import {
  MAX_HEADER_KEY_LENGTH,
  decodeKey,
  encodeKey,
  HeaderHasher,
  toWireValues,
  type HeaderChange,
  type WireValue,
} from '@sitesync/protocol';
import {
  readHeaderPages,
  readHeadersByKeys,
  type Database,
  type HeaderSource,
  type HeaderWithDetails,
  type ResolvedPipeline,
  ROW_STATE_TABLE,
} from '@sitesync/db';
import { readRowState, type RowState } from './row-state';

const NOTHING_KNOWN: ReadonlyMap<string, RowState> = new Map();

/** A header whose hash differs from what the central acknowledged, or that vanished. */
export type DirtyHeader = HeaderChange & { headerKey: string; rows: number };

export interface ScanStats {
  scanned: number;
  dirty: number;
  deleted: number;
}

/**
 * Streams one pipeline's dirty headers in key order, a page at a time, so memory stays bounded
 * whatever the table size: changed and new headers (each with its full detail set), then deletions.
 */
export class ChangeScanner {
  readonly stats: ScanStats = { scanned: 0, dirty: 0, deleted: 0 };
  private readonly hasher: HeaderHasher;

  constructor(
    private readonly db: Database,
    private readonly p: ResolvedPipeline,
    private readonly pageSize: number,
  ) {
    this.hasher = new HeaderHasher(p.config.algorithm, p.header.columns, p.detail?.columns);
  }

  private get q() {
    return (c: string) => this.db.dialect.quote(c);
  }

  async *scan(): AsyncGenerator<DirtyHeader> {
    const known = await this.db.query<{ n: number | string }>(
      `SELECT COUNT(*) AS n FROM ${this.q(ROW_STATE_TABLE)} WHERE pipeline = ?`,
      [this.p.name],
    );
    const knownBefore = Number(known[0]?.n ?? 0);
    let seenKnown = 0;
    for await (const page of readHeaderPages(this.db, this.source, this.pageSize)) {
      // A side table that knew nothing of this pipeline (a first load) has nothing to read: every
      // header is new. What this session marks meanwhile is of keys already read.
      const state =
        knownBefore === 0
          ? NOTHING_KNOWN
          : await readRowState(
              this.db,
              this.p.name,
              page.map((h) => h.headerKey),
            );
      seenKnown += page.filter((h) => state.has(h.headerKey)).length;
      yield* this.dirtyOf(page, state);
    }
    // Every header the side table knows was seen again: nothing was deleted, skip the existence pass.
    if (seenKnown === knownBefore) return;
    yield* this.scanDeletions();
  }

  /**
   * Only the headers of `keys` (candidates from change tracking, and rows whose last send is not
   * acknowledged): changed ones as upserts, vanished ones the central has as deletions.
   */
  async *scanKeys(keys: readonly WireValue[][]): AsyncGenerator<DirtyHeader> {
    const found = new Set<string>();
    for await (const page of readHeadersByKeys(this.db, this.source, keys)) {
      for (const h of page) found.add(h.headerKey);
      yield* this.dirtyOf(
        page,
        await readRowState(
          this.db,
          this.p.name,
          page.map((h) => h.headerKey),
        ),
      );
    }
    const gone = keys.map((key) => ({ key, headerKey: encodeKey(key) })).filter((g) => !found.has(g.headerKey));
    const known = await readRowState(
      this.db,
      this.p.name,
      gone.map((g) => g.headerKey),
    );
    for (const g of gone) {
      if (!known.has(g.headerKey)) continue;
      this.stats.deleted++;
      yield { op: 'delete', key: g.key, headerKey: g.headerKey, rows: 1 };
    }
  }

  /** Keys whose last send the central has not acknowledged yet: a session must look at them again. */
  async unacknowledgedKeys(): Promise<WireValue[][]> {
    const rows = await this.db.query<{ header_key: string }>(
      `SELECT header_key FROM ${this.q(ROW_STATE_TABLE)} WHERE pipeline = ? AND pending_batch IS NOT NULL`,
      [this.p.name],
    );
    return rows.map((r) => decodeKey(r.header_key));
  }

  private get source(): HeaderSource {
    return {
      header: this.p.header,
      detail: this.p.detail,
      ...(this.p.config.filter ? { headerFilter: this.p.config.filter } : {}),
    };
  }

  /** The headers of a page whose hash is not what the central acknowledged (or that are in flight with another). */
  private *dirtyOf(page: HeaderWithDetails[], state: ReadonlyMap<string, RowState>): Generator<DirtyHeader> {
    for (const { key, headerKey, header, details: rows } of page) {
      if (headerKey.length > MAX_HEADER_KEY_LENGTH) {
        throw new Error(
          `pipeline ${this.p.name}: header key ${headerKey.slice(0, 60)}... is longer than ${MAX_HEADER_KEY_LENGTH} characters`,
        );
      }
      const hash = this.hasher.hash(header, rows);
      this.stats.scanned++;
      const st = state.get(headerKey);
      // Clean only if the central acknowledged this hash AND nothing different is still in flight
      // (an unacknowledged send of another hash or a deletion may already be merged centrally).
      if (
        st &&
        st.target === hash &&
        (st.pendingBatchMessageId === null || (!st.pendingDelete && st.pendingHash === hash))
      )
        continue;
      this.stats.dirty++;
      yield { op: 'upsert', key, hash, header, details: rows, headerKey, rows: 1 + rows.length };
    }
  }

  /** Headers the side table knows that are no longer in the source (or no longer match the filter). */
  private async *scanDeletions(): AsyncGenerator<DirtyHeader> {
    const d = this.db.dialect;
    const h = this.p.header;
    // bound as the key columns hold them (a binary key is `base64:` text on the wire)
    const bindKey = d.keyBinder(h.specs, h.key);
    let after = '';
    for (;;) {
      const known = await this.db.query<{ header_key: string }>(
        d.selectLimit(
          `header_key FROM ${this.q(ROW_STATE_TABLE)} WHERE pipeline = ? AND header_key > ? ORDER BY header_key`,
          this.pageSize,
        ),
        [this.p.name, after],
      );
      if (known.length === 0) return;
      after = known[known.length - 1]!.header_key;
      const keys = known.map((r) => JSON.parse(r.header_key) as WireValue[]);
      const pred = d.keyPredicate(h.key, keys.map(bindKey));
      // read as the scan reads keys (queryArrays: a SQLite int64 beyond ±2^53 exactly)
      const present = await this.db.queryArrays(
        `SELECT ${h.key.map(this.q).join(', ')} FROM ${this.q(h.table)} WHERE ${pred.sql}` +
          (this.p.config.filter ? ` AND (${this.p.config.filter})` : ''),
        pred.params,
        h.key,
      );
      const presentKeys = new Set(present.map((r) => encodeKey(toWireValues(r))));
      for (let i = 0; i < known.length; i++) {
        const headerKey = known[i]!.header_key;
        if (presentKeys.has(headerKey)) continue;
        this.stats.deleted++;
        yield { op: 'delete', key: keys[i]!, headerKey, rows: 1 };
      }
      if (known.length < this.pageSize) return;
    }
  }
}
