import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type DbKind, type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl, localDbKinds } from '../support/services.js';
import { syncctlBundle, writeTree } from './bundle-support.js';

const kinds: DbKind[] = localDbKinds();

describe.each(kinds)('bundle imports in chunks (%s)', (kind) => {
  let world: TestWorld;
  worldPerTest(amqpUrl(), (w) => (world = w));

  it('adds exactly the missing rows of a file larger than a chunk, never overwriting, with the database deciding what exists', async () => {
    const url = world.dbUrl(kind, 'site');
    const db = await world.open(url, 'site');
    await db.query(
      `CREATE TABLE ward (code VARCHAR(20) NOT NULL PRIMARY KEY, name VARCHAR(80) NOT NULL, beds INTEGER)`,
    );
    // W-1500 is there already; w-0007 differs from the file's W-0007 only in case.
    await db.execute(`INSERT INTO ward (code, name, beds) VALUES (?, ?, ?), (?, ?, ?)`, [
      'W-1500',
      'kept',
      1,
      'w-0007',
      'lower case',
      2,
    ]);
    const rows = Array.from({ length: 2500 }, (_, i) => `W-${String(i).padStart(4, '0')},Ward ${i},${i % 30}`);
    const bundle = writeTree(join(world.dir, 'bundle'), {
      '001.imports/ward.csv': `code,name,beds\n${rows.join('\n')}\n`,
    });

    const r = await syncctlBundle(url, 'apply', bundle);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // MariaDB's default collation is case-insensitive: there W-0007 exists already.
    const added = kind === 'mysql' ? 2498 : 2499;
    expect(r.stdout).toContain(`ward +${added} of 2500 rows`);
    const [count] = await db.query<{ n: unknown }>(`SELECT COUNT(*) AS n FROM ward`);
    expect(Number(count!.n)).toBe(added + 2);
    expect(await db.query(`SELECT name FROM ward WHERE code = 'W-1500'`)).toEqual([{ name: 'kept' }]);
  });
});
