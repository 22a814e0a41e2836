import { describe, expect, it } from 'vitest';
import { OperationJournal } from '@sitesync/db';
import { type DbKind, type TestWorld, worldPerTest } from '../support/harness.js';
import { localDbKinds } from '../support/services.js';

const kinds: DbKind[] = localDbKinds();

describe.each(kinds)('operation journal (%s)', (kind) => {
  let world: TestWorld;
  worldPerTest('amqp://unused', (w) => (world = w));

  it('records runs per operation, with results, errors and checksums, and survives being opened again', async () => {
    const db = await world.open(world.dbUrl(kind, 'journal'), 'site');
    const upgrade = await OperationJournal.open(db, 'upgrade');
    const bundle = await OperationJournal.open(db, 'bundle');
    expect(await upgrade.lastRun()).toBeUndefined();

    const a = await upgrade.begin('run-1', 'pre-scripts', '010-fix.sql', 'abc');
    const b = await upgrade.begin('run-1', 'post-scripts', '020-load.sql', 'def');
    await upgrade.finish(a, 'ok');
    await upgrade.finish(b, 'failed', 'relation "x" does not exist');
    const other = await bundle.begin('run-2', 'entry', '001.sql');
    expect(b).toBeGreaterThan(a);

    const again = await OperationJournal.open(db, 'upgrade');
    const run = await again.lastRun();
    expect(run?.runId).toBe('run-1');
    expect(run?.entries.map((e) => [e.step, e.item, e.checksum, e.result, e.error])).toEqual([
      ['pre-scripts', '010-fix.sql', 'abc', 'ok', null],
      ['post-scripts', '020-load.sql', 'def', 'failed', 'relation "x" does not exist'],
    ]);
    expect(run?.entries[0]!.startedAt).toBeInstanceOf(Date);
    expect(run?.entries[0]!.finishedAt!.getTime()).toBeGreaterThanOrEqual(run!.entries[0]!.startedAt.getTime() - 5);

    expect(await again.succeeded('pre-scripts', '010-fix.sql', 'abc')).toBe(true);
    expect(await again.succeeded('pre-scripts', '010-fix.sql')).toBe(true);
    expect(await again.succeeded('pre-scripts', '010-fix.sql', 'changed')).toBe(false);
    expect(await again.succeeded('post-scripts', '020-load.sql', 'def')).toBe(false);
    expect(await bundle.succeeded('pre-scripts', '010-fix.sql')).toBe(false);

    expect((await bundle.lastRun())?.entries).toMatchObject([{ id: other, result: 'running', finishedAt: null }]);
    expect(await upgrade.entries('run-2')).toEqual([]);
    await expect(upgrade.finish(other, 'ok')).rejects.toThrow(/no upgrade entry/);
  });
});
