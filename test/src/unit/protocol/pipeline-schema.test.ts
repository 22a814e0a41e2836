import { describe, expect, it } from 'vitest';
import {
  DEFAULT_FIELD_SOURCE_HASH,
  DEFAULT_FIELD_SYNC_HASH,
  DEFAULT_FIELD_TARGET_HASH,
  DEFAULT_HASH_ALGORITHM,
  HASH_ALGORITHMS,
  HashingFileSchema,
} from '@sitesync/protocol';

function issuePaths(input: unknown): string[] {
  const r = HashingFileSchema.safeParse(input);
  return r.success ? [] : r.error.issues.map((i) => i.path.join('.'));
}

describe('hashing file', () => {
  it('needs only the base table; everything else has the documented default', () => {
    const cfg = HashingFileSchema.parse({ baseEntity: 'Orders' });
    expect(cfg).toEqual({
      name: 'main',
      algorithm: 'md5',
      baseEntity: 'Orders',
      linkEntities: [],
      changeTracking: 'none',
      fullScanHours: 24,
      fieldSourceHash: 'SourceHash',
      fieldTargetHash: 'TargetHash',
      fieldSyncHash: 'IsSync',
    });
    expect(cfg.attributes).toBeUndefined();
    expect(cfg.filter).toBeUndefined();
    expect(DEFAULT_HASH_ALGORITHM).toBe('md5');
    expect([DEFAULT_FIELD_SOURCE_HASH, DEFAULT_FIELD_TARGET_HASH, DEFAULT_FIELD_SYNC_HASH]).toEqual([
      'SourceHash',
      'TargetHash',
      'IsSync',
    ]);
  });

  it('accepts md5, sha1 and sha256 and nothing else', () => {
    expect([...HASH_ALGORITHMS]).toEqual(['md5', 'sha1', 'sha256']);
    for (const algorithm of HASH_ALGORITHMS) {
      expect(HashingFileSchema.parse({ baseEntity: 'T', algorithm }).algorithm).toBe(algorithm);
    }
    expect(issuePaths({ baseEntity: 'T', algorithm: 'crc32' })).toEqual(['algorithm']);
    expect(issuePaths({ baseEntity: 'T', algorithm: 'MD5' })).toEqual(['algorithm']);
  });

  it('takes a full seed-style file: base entity listed among the link entities, a detail with its join', () => {
    const cfg = HashingFileSchema.parse({
      name: 'lab-orders',
      algorithm: 'sha1',
      baseEntity: 'LAB_Orden',
      key: ['idOrden'],
      linkEntities: ['LAB_Orden', { entity: 'LAB_OrdenDetalle', join: { idOrden: 'idOrden' }, key: ['idDetalle'] }],
      attributes: ['LAB_Orden.fecha', 'estado', 'LAB_OrdenDetalle.resultado'],
      filter: "estado <> 'X'",
      fieldSourceHash: 'SH',
      fieldTargetHash: 'TH',
      fieldSyncHash: 'SYNC',
    });
    expect(cfg.linkEntities).toHaveLength(2);
    expect(cfg.fieldSyncHash).toBe('SYNC');
  });

  it('requires a base entity', () => {
    expect(issuePaths({})).toEqual(['baseEntity']);
    expect(issuePaths({ baseEntity: '' })).toEqual(['baseEntity']);
  });

  it('rejects unknown keys, so a misspelt setting is not silently ignored', () => {
    expect(issuePaths({ baseEntity: 'T', Algorithm: 'sha1' })).toEqual(['']);
    expect(issuePaths({ baseEntity: 'T', linkEntities: [{ entity: 'D', join: { a: 'b' }, on: 'x' }] })).toEqual([
      'linkEntities.0',
    ]);
  });

  it('a detail table needs a join of at least one column', () => {
    expect(issuePaths({ baseEntity: 'T', linkEntities: [{ entity: 'D', join: {} }] })).toEqual(['linkEntities.0.join']);
    expect(issuePaths({ baseEntity: 'T', linkEntities: [{ entity: 'D' }] })[0]).toMatch(/^linkEntities\.0/);
  });

  it('limits pipeline names to letters, digits, _ and -', () => {
    expect(HashingFileSchema.parse({ baseEntity: 'T', name: 'Orders_2024-b' }).name).toBe('Orders_2024-b');
    for (const name of ['', 'a b', 'a.b', "x'--", 'x'.repeat(65)]) {
      expect(issuePaths({ baseEntity: 'T', name })).toEqual(['name']);
    }
  });

  it('bounds identifier length (128, as SQL Server does)', () => {
    expect(issuePaths({ baseEntity: 'x'.repeat(128) })).toEqual([]);
    expect(issuePaths({ baseEntity: 'x'.repeat(129) })).toEqual(['baseEntity']);
    expect(issuePaths({ baseEntity: 'T', attributes: ['ok', ''] })).toEqual(['attributes.1']);
    expect(issuePaths({ baseEntity: 'T', key: [] })).toEqual(['key']);
  });

  it('an empty filter is refused rather than meaning "no filter"', () => {
    expect(issuePaths({ baseEntity: 'T', filter: '' })).toEqual(['filter']);
  });
});
