import { canonicalRow, HeaderHasher, type HashAlgorithm } from '@sitesync/protocol';
import type { Database } from './database';
import { readHeaderPages, type HeaderSource } from './header-reader';

/** Every header of a source with its verify hash, and how many detail lines they have. */
export interface HeaderHashes {
  /** encoded key -> hash of the header and its details, values in canonical form (see canonicalRow). */
  hashes: Map<string, string>;
  details: number;
}

/**
 * Hashes every header of `src` (with its details) as `syncctl verify` compares them: each value in
 * the canonical form of its column type first, so that the site's rows and the central's copies
 * (whose drivers may return other forms) hash the same when the data is the same. The site agent
 * answering a verify request and syncctl reading the central both call this.
 */
export async function hashHeaders(
  db: Database,
  src: HeaderSource,
  algorithm: HashAlgorithm,
  pageSize = 1000,
): Promise<HeaderHashes> {
  const hashes = new Map<string, string>();
  const hasher = new HeaderHasher(algorithm, src.header.columns, src.detail?.columns);
  const detailSpecs = src.detail?.specs ?? [];
  let details = 0;
  for await (const page of readHeaderPages(db, src, pageSize)) {
    for (const h of page) {
      const header = canonicalRow(h.header, src.header.specs);
      const lines = h.details.map((d) => canonicalRow(d, detailSpecs));
      hashes.set(h.headerKey, hasher.hash(header, lines));
      details += h.details.length;
    }
  }
  return { hashes, details };
}
