import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '@sitesync/db';
import { CentralInterventions } from '@sitesync/central';
import { SiteInterventions } from '@sitesync/peripheral';
import { TestWorld } from '../support/harness.js';
import { amqpUrl } from '../support/services.js';
import {
  A1,
  Observer,
  centralLog,
  insertProcedure,
  interventions,
  removeInterventionQueuesAtTeardown,
} from './transfer-support.js';

/**
 * The intervention invariant (docs/interventions.md): "Crash any agent at any step: after restart every GUID is active on exactly one system."
 * The agents run as child processes (the real binaries) and are killed with SIGKILL at each step of
 * both flows, then started again. Where a step is too short to hit by polling, the other side is
 * paused (SIGSTOP) so the step holds still until the kill; it is resumed (SIGCONT) right after.
 */

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping intervention crash tests: no RabbitMQ available');

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CENTRAL_BIN = join(ROOT, 'agents/central/bin/sync-central.js');
const SITE_BIN = join(ROOT, 'agents/peripheral/bin/sync-peripheral.js');

/** One agent binary run as a child process, restartable, killed for real. */
class AgentProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private output = '';
  starts = 0;

  constructor(
    readonly name: string,
    private readonly bin: string,
    private readonly configFile: string,
  ) {}

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    if (this.running) throw new Error(`${this.name} is already running`);
    // The child reads its configuration from the file only: no SYNC_* override leaks in from the runner.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('SYNC_') && k !== 'NODE_OPTIONS'),
    );
    const child = spawn(process.execPath, [this.bin, 'run', '--config', this.configFile], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (b: Buffer) => {
      this.output = (this.output + b.toString()).slice(-4000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    this.child = child;
    this.starts++;
  }

  /** SIGKILL: no shutdown code runs, unacknowledged deliveries go back to the queue. */
  async kill(): Promise<void> {
    if (this.running) this.child!.kill('SIGKILL');
    await this.exited;
  }

  pause(): void {
    if (this.running) this.child!.kill('SIGSTOP');
  }

  resume(): void {
    if (this.running) this.child!.kill('SIGCONT');
  }

  get recentOutput(): string {
    return `--- ${this.name} (started ${this.starts}x, ${this.running ? 'running' : 'not running'}) ---\n${this.output}`;
  }
}

describe.skipIf(!broker)('interventions survive agents killed at every step (child processes, SQLite)', () => {
  let world: TestWorld;
  let procs: AgentProcess[];
  let watchers: Array<() => Promise<number[]>>;
  beforeEach(() => {
    world = new TestWorld(broker!);
    removeInterventionQueuesAtTeardown(world);
    procs = [];
    watchers = [];
  });
  afterEach(async () => {
    for (const stop of watchers) await stop();
    for (const p of procs) p.resume();
    await Promise.all(procs.map((p) => p.kill()));
    await world.teardown();
  });

  /** Polls `fn`; on timeout fails naming `what`, with the agents' recent output. */
  async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000, everyMs = 5) {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > end) {
        throw new Error(`timed out waiting for ${what}\n${procs.map((p) => p.recentOutput).join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }

  interface System {
    central: AgentProcess;
    site101: AgentProcess;
    site102: AgentProcess;
    cdb: Database;
    s101: Database;
    s102: Database;
  }

  /**
   * A central and sites 101 and 102 (registered), all SQLite files, none started yet. The central and
   * site 101 hold procedure A.1; site 102 holds it only with `site102HoldsA1`.
   */
  async function prepare(opts: { site102HoldsA1?: boolean } = {}): Promise<System> {
    // The broker's topology exists before any agent starts (as deploy/rabbitmq/definitions.json sets it
    // up): a site that connects first must not publish its catalogue into an exchange with no queue.
    await world.topology.declareCentral(await world.rawChannel());
    const centralUrl = world.dbUrl('sqlite', 'central');
    const cdb = await world.open(centralUrl, 'central');
    await world.registerSite(cdb, 101);
    await world.registerSite(cdb, 102);
    await insertProcedure(cdb, A1);
    const centralFile = join(world.dir, 'central.json');
    writeFileSync(
      centralFile,
      JSON.stringify({
        amqp: { url: world.amqpUrl, prefix: world.prefix },
        db: { url: centralUrl },
        dispatchIntervalMs: 200,
        resendAfterSeconds: 1,
        logLevel: 'warn',
      }),
    );
    const sites: Array<[AgentProcess, Database]> = [];
    for (const id of [101, 102]) {
      const url = world.dbUrl('sqlite', `site${id}`);
      await world.prepareSite(id, url);
      const db = await world.open(url, 'site');
      if (id === 101 || opts.site102HoldsA1) await insertProcedure(db, A1);
      const file = join(world.dir, `site${id}.json`);
      writeFileSync(
        file,
        JSON.stringify({
          ...world.siteConfig(id, url),
          schedule: { intervalSeconds: 3600 },
          transferPollSeconds: 0.2,
          logLevel: 'warn',
        }),
      );
      sites.push([new AgentProcess(`site ${id}`, SITE_BIN, file), db]);
    }
    const central = new AgentProcess('central', CENTRAL_BIN, centralFile);
    procs.push(central, sites[0]![0], sites[1]![0]);
    return { central, site101: sites[0]![0], site102: sites[1]![0], cdb, s101: sites[0]![1], s102: sites[1]![1] };
  }

  /** Waits until the central recorded the site's catalogue (so the site agent is up and connected). */
  async function siteUp(sys: System, siteId: number): Promise<void> {
    await until(`site ${siteId} to report its catalogue`, async () => {
      const r = await sys.cdb.query(`SELECT state FROM site_procedure WHERE id_efector = ? AND state = ?`, [
        siteId,
        'held',
      ]);
      return r.length > 0;
    });
  }

  /**
   * Samples, all test long, how many systems hold `guid` as active: the destination is read before the
   * source, so a move that completes between the two reads is never counted twice.
   */
  function watchActive(order: Database[], guid: string): { stop: () => Promise<number[]> } {
    const seen: number[] = [];
    let on = true;
    const loop = (async () => {
      while (on) {
        let n = 0;
        for (const db of order) n += (await interventions(db, guid)).filter((r) => r.state === 'active').length;
        seen.push(n);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const stop = async () => {
      on = false;
      await loop;
      return seen;
    };
    watchers.push(stop);
    return { stop };
  }

  /** The end state every crash must reach: on exactly one system, active, one completed transfer, stable. */
  async function expectSettled(sys: System, guid: string, at: 'central' | 101 | 102): Promise<void> {
    const dbs = { central: sys.cdb, 101: sys.s101, 102: sys.s102 } as const;
    const where = async () => {
      const out: Array<[string, string]> = [];
      for (const [name, db] of Object.entries(dbs))
        for (const r of await interventions(db, guid)) out.push([name, r.state]);
      return out;
    };
    await until(
      `${guid} to be active at ${at} alone with its transfer completed`,
      async () => {
        const log = await centralLog(sys.cdb, guid);
        const w = await where();
        return log.at(-1)?.state === 'completed' && w.length === 1 && w[0]![0] === String(at) && w[0]![1] === 'active';
      },
      30_000,
      50,
    );
    // Still so after re-sends had time to arrive (resendAfterSeconds is 1): no late copy appears.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await where()).toEqual([[String(at), 'active']]);
    const log = await centralLog(sys.cdb, guid);
    expect(log.map((r) => r.state)).toEqual(['completed']);
  }

  /** A new unfinished intervention on A.1 at site 101 (made while no agent runs). */
  async function createAt101(sys: System): Promise<string> {
    const site = new SiteInterventions(sys.s101, 101, () => Promise.reject(new Error('not connected')));
    return (await site.create({ procedure: { code: 'A', version: 1 }, payload: '{"crash":true}' })).guid;
  }

  /** Marks the intervention for transfer, as the site's application does. */
  async function requestUp(sys: System, guid: string): Promise<void> {
    const site = new SiteInterventions(sys.s101, 101, () => Promise.reject(new Error('not connected')));
    expect(await site.requestTransfer([guid])).toBe(1);
  }

  /** An unfinished intervention held (active) by the central. */
  async function heldCentrally(sys: System): Promise<string> {
    const guid = randomUUID();
    const d = sys.cdb.dialect;
    await sys.cdb.execute(
      `INSERT INTO intervention (guid, procedure_code, procedure_version, finished, payload, state, transfer_id, transfer_requested, updated_at) ` +
        `VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [guid, 'A', 1, d.bool(false), '{"held":"central"}', 'active', null, d.bool(false), d.now()],
    );
    return guid;
  }

  async function outState(sys: System, transferId: string): Promise<string | undefined> {
    const r = await sys.cdb.query<{ state: string }>(`SELECT state FROM intervention_transfer WHERE transfer_id = ?`, [
      transferId,
    ]);
    return r[0]?.state;
  }

  // ---- flow up: site 101 -> central ----

  it('up: site killed right after it locked and sent the transfer', async () => {
    const sys = await prepare();
    const guid = await createAt101(sys);
    sys.central.start();
    sys.site101.start();
    await siteUp(sys, 101);
    const watch = watchActive([sys.cdb, sys.s101], guid);
    await requestUp(sys, guid);
    await until(
      'site 101 to lock it as outbound',
      async () => (await interventions(sys.s101, guid))[0]?.state === 'outbound',
    );
    await sys.site101.kill();
    sys.site101.start();
    await expectSettled(sys, guid, 'central');
    expect(Math.max(...(await watch.stop()))).toBe(1);
  });

  it('up: site gone between locking the intervention and publishing the transfer (nothing was sent)', async () => {
    // The state a kill leaves in that gap, made exactly: the lock commits, the publish never happens.
    const sys = await prepare();
    const guid = await createAt101(sys);
    await requestUp(sys, guid);
    const crashed = new SiteInterventions(sys.s101, 101, () => Promise.reject(new Error('killed before publishing')));
    await expect(crashed.publishTransfers()).rejects.toThrow('killed before publishing');
    expect((await interventions(sys.s101, guid)).map((r) => r.state)).toEqual(['outbound']);
    const watch = watchActive([sys.cdb, sys.s101], guid);
    sys.central.start();
    sys.site101.start();
    await expectSettled(sys, guid, 'central');
    expect(Math.max(...(await watch.stop()))).toBe(1);
  });

  it('up: central killed right after it stored the pending copy', async () => {
    const sys = await prepare();
    const guid = await createAt101(sys);
    sys.central.start();
    sys.site101.start();
    await siteUp(sys, 101);
    const watch = watchActive([sys.cdb, sys.s101], guid);
    const up = await Observer.start(await world.rawChannel(), world.topology.up, ['101.intervention.transfer']);
    // The central is paused until the site sent the transfer, then the site is paused: the central's
    // "accepted" stays unanswered, so "pending" lasts until the kill.
    sys.central.pause();
    await requestUp(sys, guid);
    await up.waitForCount('intervention.transfer', 1);
    sys.site101.pause();
    sys.central.resume();
    await until(
      'the central to store it as pending',
      async () => (await interventions(sys.cdb, guid))[0]?.state === 'pending',
    );
    await sys.central.kill();
    sys.site101.resume();
    sys.central.start();
    await expectSettled(sys, guid, 'central');
    expect(Math.max(...(await watch.stop()))).toBe(1);
  });

  it('up: site killed right after the accepted order deleted its copy', async () => {
    const sys = await prepare();
    const guid = await createAt101(sys);
    sys.central.start();
    sys.site101.start();
    await siteUp(sys, 101);
    const watch = watchActive([sys.cdb, sys.s101], guid);
    await requestUp(sys, guid);
    await until('site 101 to delete its copy', async () => (await interventions(sys.s101, guid)).length === 0);
    await sys.site101.kill();
    sys.site101.start();
    await expectSettled(sys, guid, 'central');
    expect(Math.max(...(await watch.stop()))).toBe(1);
  });

  // ---- flow out: central -> site 102 ----

  it('out: central killed right after the operator requested the transfer', async () => {
    const sys = await prepare({ site102HoldsA1: true });
    const guid = await heldCentrally(sys);
    sys.central.start();
    sys.site102.start();
    await siteUp(sys, 102);
    const watch = watchActive([sys.s102, sys.cdb], guid);
    const transferId = await new CentralInterventions(sys.cdb).requestTransferOut(guid, 102);
    await sys.central.kill();
    expect(['requested', 'sent']).toContain(await outState(sys, transferId));
    sys.central.start();
    await expectSettled(sys, guid, 102);
    expect(Math.max(...(await watch.stop()))).toBe(1);
  });

  it('out: central killed while the destination waits for the procedure version', async () => {
    const sys = await prepare();
    const guid = await heldCentrally(sys);
    sys.central.start(); // site 102 is down: the procedure is sent, not yet confirmed
    const watch = watchActive([sys.s102, sys.cdb], guid);
    const transferId = await new CentralInterventions(sys.cdb).requestTransferOut(guid, 102);
    await until(
      'the transfer to wait for the procedure',
      async () => (await outState(sys, transferId)) === 'awaiting-procedure',
    );
    await sys.central.kill();
    sys.site102.start();
    sys.central.start();
    await expectSettled(sys, guid, 102);
    expect((await sys.s102.query(`SELECT code FROM procedure_version WHERE code = 'A' AND version = 1`)).length).toBe(
      1,
    );
    expect(Math.max(...(await watch.stop()))).toBe(1);
  });

  it('out: central killed right after it delivered the intervention', async () => {
    const sys = await prepare({ site102HoldsA1: true });
    const guid = await heldCentrally(sys);
    sys.central.start();
    sys.site102.start();
    await siteUp(sys, 102);
    const watch = watchActive([sys.s102, sys.cdb], guid);
    sys.site102.pause(); // the delivery waits in its queue, so "sent" lasts until the kill
    const transferId = await new CentralInterventions(sys.cdb).requestTransferOut(guid, 102);
    await until('the central to deliver it', async () => (await outState(sys, transferId)) === 'sent');
    await sys.central.kill();
    sys.site102.resume();
    sys.central.start();
    await expectSettled(sys, guid, 102);
    expect(Math.max(...(await watch.stop()))).toBe(1);
  });

  it('out: destination site killed right after it stored the intervention', async () => {
    const sys = await prepare();
    const guid = await heldCentrally(sys);
    sys.central.start();
    sys.site102.start();
    const watch = watchActive([sys.s102, sys.cdb], guid);
    await new CentralInterventions(sys.cdb).requestTransferOut(guid, 102);
    await until('site 102 to store it', async () => (await interventions(sys.s102, guid)).length === 1);
    await sys.site102.kill();
    sys.site102.start();
    await expectSettled(sys, guid, 102);
    expect(Math.max(...(await watch.stop()))).toBe(1);
  });
});
