import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Database, OPERATION_LOCK_TABLE, OperationLock, OperationLockedError } from '@sitesync/db';
import { type DbKind, type TestWorld, worldPerTest } from '../support/harness.js';
import { localDbKinds } from '../support/services.js';
import { syncctlBundle, writeTree } from './bundle-support.js';
import { labSite, NO_BROKER, storedTime, syncctl, writeSiteConfig } from './upgrade-fixtures.js';

const kinds: DbKind[] = localDbKinds();

/** A lock row as a run on another machine leaves it (alive, or dead since `expires`). */
async function plantLock(db: Database, expires: Date): Promise<void> {
  await OperationLock.acquire(db, 'upgrade').then((l) => l.release()); // creates the table
  await db.execute(
    `INSERT INTO ${OPERATION_LOCK_TABLE} (name, operation, owner, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
    [
      'database-change',
      'upgrade',
      'other-owner',
      'dbhost-7 pid 4242',
      storedTime(db, new Date('2031-01-02T03:04:05.000Z')),
      storedTime(db, expires),
    ],
  );
}

async function lockRows(db: Database): Promise<number> {
  const [row] = await db.query<{ n: unknown }>(`SELECT COUNT(*) AS n FROM ${OPERATION_LOCK_TABLE}`);
  return Number(row!.n);
}

describe.each(kinds)('one syncctl operation at a time per database (%s)', (kind) => {
  let world: TestWorld;
  worldPerTest(NO_BROKER, (w) => (world = w));

  // Not on SQLite: better-sqlite3 waits for another connection's write lock synchronously, so two
  // connections of one process cannot race (two processes can; the CLI test below covers SQLite).
  it.skipIf(kind === 'sqlite')(
    'of two runs taking the lock at once exactly one gets it; the other is told who holds it and since when',
    async () => {
      const url = world.dbUrl(kind, 'locks');
      const a = await world.open(url, 'site');
      const b = await Database.open(url, { role: 'site', migrate: false });
      world.onTeardown(() => b.close());

      const results = await Promise.allSettled([
        OperationLock.acquire(a, 'upgrade'),
        OperationLock.acquire(b, 'bundle'),
        OperationLock.acquire(b, 'upgrade'),
      ]);
      const held = results.filter((r) => r.status === 'fulfilled');
      const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason);
      expect(held).toHaveLength(1);
      expect(refused).toHaveLength(2);
      for (const err of refused) {
        expect(err).toBeInstanceOf(OperationLockedError);
        expect((err as OperationLockedError).heldBy.holder).toMatch(/ pid \d+$/);
        expect((err as Error).message).toMatch(/holds this database's lock .* pid \d+, since \d{4}-\d\d-\d\dT/);
      }

      await (held[0] as PromiseFulfilledResult<OperationLock>).value.release();
      expect(await lockRows(a)).toBe(0);
      const next = await OperationLock.acquire(b, 'bundle');
      await next.release();
      await next.release();
    },
  );

  it('a lock whose holder died is taken over once it expired, or at once with breakLock', async () => {
    const db = await world.open(world.dbUrl(kind, 'stale'), 'site');
    await plantLock(db, new Date(Date.now() - 1000));
    const taken = await OperationLock.acquire(db, 'upgrade');
    await taken.release();

    await plantLock(db, new Date(Date.now() + 3_600_000));
    await expect(OperationLock.acquire(db, 'upgrade')).rejects.toThrow(/dbhost-7 pid 4242, since 2031-01-02T03:04:05/);
    const broken: string[] = [];
    const forced = await OperationLock.acquire(db, 'upgrade', {
      breakLock: true,
      onBroken: (h) => broken.push(h.holder),
    });
    expect(broken).toEqual(['dbhost-7 pid 4242']);
    await forced.release();
  });

  it('db upgrade and bundle apply refuse to start, exit 2, while another run holds the lock; --break-lock goes on', async () => {
    const { url, db } = await labSite(world, kind, 'site');
    const config = writeSiteConfig(world, url);
    await plantLock(db, new Date(Date.now() + 3_600_000));

    const upgrade = await syncctl(['db', 'upgrade', '--site-config', config]);
    expect(upgrade.code).toBe(2);
    expect(upgrade.stderr).toMatch(
      /another upgrade holds this database's lock \(sync_operation_lock\): dbhost-7 pid 4242, since 2031-01-02T03:04:05\.000Z; the upgrade did not start.*--break-lock/s,
    );
    expect(await db.query(`SELECT id FROM sync_journal`).catch(() => [])).toEqual([]);

    const bundle = writeTree(join(world.dir, 'bundle'), { '001.sql': 'CREATE TABLE from_bundle (n INTEGER);\n' });
    const apply = await syncctlBundle(url, 'apply', bundle);
    expect(apply.code).toBe(2);
    expect(apply.stderr).toContain('dbhost-7 pid 4242');
    expect((await db.tableNames()).map((t) => t.toLowerCase())).not.toContain('from_bundle');

    const forced = await syncctl(['db', 'upgrade', '--site-config', config, '--break-lock']);
    expect(forced.stderr).toBe('');
    expect(forced.code).toBe(0);
    expect(forced.stdout).toContain('removed the lock of upgrade dbhost-7 pid 4242');
    expect(await lockRows(db)).toBe(0);
    const applied = await syncctlBundle(url, 'apply', bundle);
    expect(applied.code).toBe(0);
    expect(await lockRows(db)).toBe(0);
  });
});
