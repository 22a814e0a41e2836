import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as amqp from 'amqplib';
import { describe, expect, it } from 'vitest';
import { readSiteStatus } from '@sitesync/central';
import { SessionLockedError, type PeripheralAgent } from '@sitesync/peripheral';
import { decodeMessage, type HeaderBatch } from '@sitesync/protocol';
import type { Database } from '@sitesync/db';
import type { PeripheralConfigInput } from '@sitesync/protocol';
import { type DbKind, type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl, localDbKinds } from '../support/services.js';
import { centralSnapshot, siteSnapshot } from '../support/compare.js';
import { changeResult } from '../support/lab-data.js';
import { REPO, until } from '../support/wait.js';

const broker = amqpUrl();
const PERIPHERAL_BIN = join(REPO, 'agents/peripheral/bin/sync-peripheral.js');
const kinds: DbKind[] = localDbKinds();
if (!broker) console.log('[sitesync tests] skipping abandoned sessions: no RabbitMQ available');

/** Two orders (2 x 6 rows) per batch: a session of 1,500 orders publishes 750 batches. */
const SMALL_BATCHES = { maxRows: 12, maxBytes: 1_000_000, pageSize: 200 };

/** A message taken off the central's queue, as the broker delivered it. */
interface Taken {
  raw: amqp.GetMessage;
  type: string;
  sessionId: string;
  batch?: HeaderBatch;
}

describe.skipIf(!broker).each(kinds)('sessions a site agent abandoned (%s)', (kind) => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  /**
   * Runs a `--once` site agent as a child process with no central consuming, and kills it
   * (SIGKILL: nothing of its shutdown runs) while it is still publishing batches.
   */
  async function killMidSession(ch: amqp.ConfirmChannel, input: PeripheralConfigInput): Promise<void> {
    const cfgFile = join(world.dir, 'site101.json');
    writeFileSync(cfgFile, JSON.stringify({ ...input, lockTtlSeconds: 2, batch: SMALL_BATCHES, logLevel: 'warn' }));
    const child = spawn(process.execPath, [PERIPHERAL_BIN, 'run', '--once', '--config', cfgFile], { stdio: 'ignore' });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      const end = Date.now() + 60_000;
      while ((await ch.checkQueue(world.topology.centralSyncQueue)).messageCount < 40) {
        if (Date.now() > end || child.exitCode !== null) throw new Error('the site published no batches');
        await new Promise((r) => setTimeout(r, 5));
      }
    } finally {
      child.kill('SIGKILL');
    }
    await exited;
  }

  /** The central's queues declared (no central consumes yet), its database with site 101 registered, and site 101 with `orders`. */
  async function centralWithSite(orders: number) {
    const ch = await world.rawChannel();
    await world.topology.declareCentral(ch);
    const centralUrl = world.dbUrl(kind, 'central');
    const cdb = await world.open(centralUrl, 'central');
    await world.registerSite(cdb, 101);
    const siteUrl = world.dbUrl(kind, 'site101');
    const input = await world.prepareSite(101, siteUrl, { orders });
    return { ch, centralUrl, cdb, siteUrl, input };
  }

  /** Takes every message off the central's queue (acknowledged: gone), in queue order. */
  async function takeAll(ch: amqp.ConfirmChannel): Promise<Taken[]> {
    const taken: Taken[] = [];
    for (;;) {
      const m = await ch.get(world.topology.centralSyncQueue, { noAck: true });
      if (!m) return taken;
      const d = decodeMessage(m);
      const body = d.body as { sessionId: string };
      taken.push({
        raw: m,
        type: d.type,
        sessionId: body.sessionId,
        ...(d.type === 'batch' ? { batch: d.body as HeaderBatch } : {}),
      });
    }
  }

  /** Publishes taken messages again as the site sent them (same id, user, headers, routing key). */
  async function republish(ch: amqp.ConfirmChannel, messages: Taken[]): Promise<void> {
    for (const m of messages) {
      ch.publish(world.topology.up, m.raw.fields.routingKey, m.raw.content, m.raw.properties as amqp.Options.Publish);
    }
    await ch.waitForConfirms();
  }

  /** Starts the site agent again and runs a session once the dead agent's lock expired. */
  async function restartSite(input: PeripheralConfigInput): Promise<PeripheralAgent> {
    const site = await world.startSite({ ...input, lockTtlSeconds: 2, batch: SMALL_BATCHES });
    const r = await until('the dead session lock to expire', () =>
      site.runSession().catch((err: unknown) => {
        if (err instanceof SessionLockedError) return undefined;
        throw err;
      }),
    );
    expect(r.status).toBe('ok');
    return site;
  }

  async function runLog(db: Database) {
    return db.query<Record<string, unknown>>(
      `SELECT session_id, status, batches_sent, headers_sent, details_sent, deletions_sent ` +
        `FROM ${db.dialect.quote('LAB_SyncStatus')} ORDER BY version`,
    );
  }

  it('a site agent killed mid-session leaves sent counts that are what the broker confirmed; the next session marks it abandoned with them', async () => {
    const ch = await world.rawChannel();
    await world.topology.declareCentral(ch);
    const siteUrl = world.dbUrl(kind, 'site101');
    const input = await world.prepareSite(101, siteUrl, { orders: 1500 });
    await killMidSession(ch, input);

    const siteDb = await world.open(siteUrl, 'site');
    const [killed] = await runLog(siteDb);
    expect(killed).toMatchObject({ status: 'running' });
    const sessionId = String(killed!.session_id);
    // The broker holds every batch it confirmed, in publish order; confirms come in that order too,
    // so what the run log counts must be exactly a prefix of them.
    const messages = await takeAll(ch);
    const batches = messages
      .filter((m) => m.type === 'batch' && m.sessionId === sessionId)
      .map((m) => m.batch!)
      .sort((a, b) => a.seq - b.seq);
    expect(messages.some((m) => m.type === 'session.completed')).toBe(false);
    const sent = Number(killed!.batches_sent);
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThanOrEqual(batches.length);
    const confirmed = { headers: 0, details: 0, deletions: 0 };
    for (const b of batches.slice(0, sent)) {
      for (const c of b.changes) {
        if (c.op === 'upsert') {
          confirmed.headers++;
          confirmed.details += c.details.length;
        } else confirmed.deletions++;
      }
    }
    const counts = (r: Record<string, unknown>) => ({
      batches: Number(r.batches_sent),
      headers: Number(r.headers_sent),
      details: Number(r.details_sent),
      deletions: Number(r.deletions_sent),
    });
    expect(counts(killed!)).toEqual({ batches: sent, ...confirmed });

    const centralUrl = world.dbUrl(kind, 'central');
    await world.registerSite(await world.open(centralUrl, 'central'), 101);
    const central = await world.startCentral(centralUrl);
    const site = await restartSite(input);
    const [after, next] = await runLog(siteDb);
    expect(after).toMatchObject({ session_id: sessionId, status: 'abandoned' });
    expect(counts(after!)).toEqual(counts(killed!));
    expect(next).toMatchObject({ status: 'ok' });
    expect(await centralSnapshot(central.database!, 101)).toEqual(await siteSnapshot(site.database!));
  });

  it('the central closes a killed session as abandoned when the next one starts; its late batches still merge and the site ends ok', async () => {
    const { ch, centralUrl, cdb, siteUrl, input } = await centralWithSite(1500);
    await killMidSession(ch, input);

    // The central sees the killed session start and half of its batches now; the other half it
    // gets only after the next session completed.
    const messages = await takeAll(ch);
    expect(messages.some((m) => m.type === 'session.completed')).toBe(false);
    const started = messages.filter((m) => m.type === 'session.started');
    expect(started).toHaveLength(1);
    const killedId = started[0]!.sessionId;
    const batches = messages.filter((m) => m.type === 'batch');
    const late = batches.slice(Math.ceil(batches.length / 2));
    expect(late.length).toBeGreaterThan(0);
    await republish(ch, [...started, ...batches.slice(0, batches.length - late.length)]);
    const central = await world.startCentral(centralUrl);
    const sessions = async () =>
      new Map(
        (await cdb.query<{ session_id: string; status: string }>(`SELECT session_id, status FROM sync_session`)).map(
          (r) => [r.session_id, r.status],
        ),
      );
    const inbox = async () =>
      Number(
        (await cdb.query<{ n: number }>(`SELECT COUNT(*) AS n FROM sync_inbox WHERE session_id = ?`, [killedId]))[0]!.n,
      );
    await until(
      'the central to take what it was given',
      async () => (await inbox()) === 1 + batches.length - late.length,
    );
    expect((await sessions()).get(killedId)).toBe('open');
    const site = () => cdb.query<Record<string, unknown>>(`SELECT * FROM ${cdb.dialect.quote('EstadoSyncGeneral')}`);
    expect((await site())[0]).toMatchObject({ status: 'syncing', last_session_id: killedId });

    // A header of a late batch changes before the next session: the late batch must not undo it.
    const lateOrder = Number(late.at(-1)!.batch!.changes[0]!.key[0]);
    const siteDb = await world.open(siteUrl, 'site');
    await changeResult(siteDb, lateOrder, 'after crash');
    const agent = await restartSite(input);
    const [, next] = await runLog(siteDb);
    const nextId = String(next!.session_id);
    expect(Object.fromEntries(await sessions())).toEqual({ [killedId]: 'abandoned', [nextId]: 'complete' });
    const state = (await site())[0]!;
    expect(state).toMatchObject({ status: 'ok', last_session_id: nextId });
    expect((await readSiteStatus(cdb)).map((s) => s.state)).toEqual(['ok']);

    await republish(ch, late);
    await until('the late batches to be merged', async () => (await inbox()) === 1 + batches.length);
    expect((await sessions()).get(killedId)).toBe('abandoned');
    expect((await site())[0]).toEqual(state);
    expect((await readSiteStatus(cdb)).map((s) => s.state)).toEqual(['ok']);
    expect(await centralSnapshot(central.database!, 101)).toEqual(await siteSnapshot(agent.database!));
    expect((await agent.runSession()).totals.headers).toBe(0);
  });

  it('a completed session one of whose batches never reached the central is closed incomplete when the next starts; the batch arriving late closes it complete', async () => {
    const { ch, centralUrl, cdb, input } = await centralWithSite(100);
    // No central consumes yet: the session completes unconfirmed, everything it sent is in the queue.
    const agent = await world.startSite({ ...input, ackTimeoutSeconds: 1, batch: SMALL_BATCHES });
    expect((await agent.runSession()).status).toBe('unconfirmed');
    const messages = await takeAll(ch);
    const sessionId = messages.find((m) => m.type === 'session.completed')!.sessionId;
    const batches = messages.filter((m) => m.type === 'batch');
    // One batch in the middle never reaches the central's accounting (say, the broker dead-lettered it).
    const lost = batches[Math.floor(batches.length / 2)]!;
    await republish(
      ch,
      messages.filter((m) => m !== lost),
    );
    await world.startCentral(centralUrl);
    const status = async (id: string) =>
      (
        await cdb.query<{ status: string; acked_at: unknown }>(
          `SELECT status, acked_at FROM sync_session WHERE session_id = ?`,
          [id],
        )
      )[0];
    const inbox = async () =>
      Number(
        (await cdb.query<{ n: number }>(`SELECT COUNT(*) AS n FROM sync_inbox WHERE session_id = ?`, [sessionId]))[0]!
          .n,
      );
    // session.started, session.completed and every batch but one
    await until('the central to take what it was given', async () => (await inbox()) === 1 + batches.length);
    expect(await status(sessionId)).toMatchObject({ status: 'open', acked_at: null });

    // The site's next session re-sends the rows of the lost batch (never acknowledged) and closes the old one.
    const next = await agent.runSession();
    expect(next.status).toBe('ok');
    expect(next.totals.headers).toBe(lost.batch!.changes.length);
    expect(await status(sessionId)).toMatchObject({ status: 'incomplete', acked_at: null });
    const site = async () =>
      (await cdb.query<Record<string, unknown>>(`SELECT * FROM ${cdb.dialect.quote('EstadoSyncGeneral')}`))[0]!;
    expect(await site()).toMatchObject({ status: 'ok', last_session_id: next.sessionId });
    expect(await centralSnapshot(cdb, 101)).toEqual(await siteSnapshot(agent.database!));

    // The lost batch turns up after all: merged (its rows are older than the next session's: nothing
    // changes), and the old session now has every batch it announced.
    await republish(ch, [lost]);
    await until('the old session to be closed complete', async () => (await status(sessionId))?.status === 'complete');
    expect(await site()).toMatchObject({ status: 'ok', last_session_id: next.sessionId });
    expect(await centralSnapshot(cdb, 101)).toEqual(await siteSnapshot(agent.database!));
  });
});
