import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The Debian package's scripts: as root they run the node (and the CLI) as the rabbitmq user, with its cookie. */
const RABBITMQ_BIN = '/usr/lib/rabbitmq/bin';
const LETTERS = ['a', 'b', 'c'] as const;

export interface ClusterNode {
  /** `sitesync-<run>-a@localhost` */
  name: string;
  amqpPort: number;
  distPort: number;
  dir: string;
  /** `amqp://guest:guest@127.0.0.1:<port>` */
  url: string;
}

/** Runs a command; rejects with its stderr. */
function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeout = 90_000): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { timeout, env }, (err, stdout, stderr) =>
      err
        ? reject(new Error(`${cmd} ${args.join(' ')}: ${(stderr || stdout || err.message).trim()}`))
        : resolve(stdout),
    ),
  );
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * Ports below the kernel's ephemeral range (32768 and up: an outgoing connection could take one
 * between the check and the node's bind), clear of the shared broker's 5672/15672/25672.
 */
async function freePortBlock(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const base = 20_000 + 10 * Math.floor(Math.random() * 1000);
    if (base <= 25_672 && base + 40 >= 25_672) continue;
    const ports = [0, 1, 2, 20, 21, 22].map((d) => base + d);
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
  throw new Error('no free port block for the cluster');
}

/**
 * A three-node RabbitMQ cluster of the test's own, beside the shared broker: own node names, AMQP and
 * distribution ports, data, logs, config and plugin files under a temp folder; the same Erlang
 * cookie as the shared broker's CLI (the rabbitmq user's). Joined with `join_cluster`.
 */
export class RabbitCluster {
  readonly nodes: ClusterNode[];
  /** Milliseconds the nodes took to boot, and to boot and join. */
  readonly timings = { boot: 0, joined: 0 };

  private constructor(
    readonly dir: string,
    readonly run: string,
    base: number,
  ) {
    this.nodes = LETTERS.map((l, i) => ({
      name: `sitesync-${run}-${l}@localhost`,
      amqpPort: base + i,
      distPort: base + 20 + i,
      dir: join(dir, l),
      url: `amqp://guest:guest@127.0.0.1:${base + i}`,
    }));
  }

  /** Why a cluster cannot run here, or undefined when it can (tried for real by `start`). */
  static unavailable(): string | undefined {
    if (process.env.SITESYNC_TEST_NO_CLUSTER) return 'SITESYNC_TEST_NO_CLUSTER is set';
    for (const tool of ['rabbitmq-server', 'rabbitmqctl', 'rabbitmq-diagnostics'])
      if (!existsSync(join(RABBITMQ_BIN, tool))) return `no ${join(RABBITMQ_BIN, tool)} (Debian's rabbitmq-server)`;
    if (process.getuid?.() !== 0) return 'not root: the nodes run as the rabbitmq user through the package scripts';
    try {
      execFileSync('id', ['-u', 'rabbitmq'], { stdio: 'ignore' });
    } catch {
      return 'no rabbitmq user';
    }
    return undefined;
  }

  /** Starts three nodes and joins them; on any failure stops what it started and rejects. */
  static async start(): Promise<RabbitCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'sitesync-rmq-cluster-'));
    const cluster = new RabbitCluster(dir, randomBytes(3).toString('hex'), await freePortBlock());
    try {
      const t0 = Date.now();
      for (const n of cluster.nodes) cluster.writeNodeFiles(n);
      const uid = Number(execFileSync('id', ['-u', 'rabbitmq']).toString().trim());
      const gid = Number(execFileSync('id', ['-g', 'rabbitmq']).toString().trim());
      chownTree(dir, uid, gid);
      await Promise.all(cluster.nodes.map((n) => sh('rabbitmq-server', ['-detached'], cluster.envOf(n))));
      for (const n of cluster.nodes) await cluster.awaitNode(n);
      cluster.timings.boot = Date.now() - t0;
      // One at a time: two nodes joining at once race on the schema and one fails.
      const [first, ...rest] = cluster.nodes;
      for (const n of rest) {
        await cluster.ctl(n, ['stop_app']);
        await cluster.ctl(n, ['join_cluster', first!.name]);
        await cluster.ctl(n, ['start_app']);
      }
      const running = await cluster.runningNodes(first!);
      if (running.length !== 3) throw new Error(`the cluster formed with ${running.join(', ')} only`);
      cluster.timings.joined = Date.now() - t0;
      return cluster;
    } catch (err) {
      const logs = cluster.logTail();
      await cluster.destroy();
      throw new Error(`${(err as Error).message}${logs ? `\n${logs}` : ''}`, { cause: err });
    }
  }

  private writeNodeFiles(n: ClusterNode): void {
    mkdirSync(join(n.dir, 'mnesia'), { recursive: true });
    mkdirSync(join(n.dir, 'log'), { recursive: true });
    writeFileSync(
      join(n.dir, 'rabbitmq.conf'),
      [
        `listeners.tcp.default = 127.0.0.1:${n.amqpPort}`,
        // guest from 127.0.0.1 is allowed anyway; this keeps the nodes reachable by any local address.
        'loopback_users = none',
        'log.console = false',
        'log.file.level = info',
      ].join('\n') + '\n',
    );
    // No plugins: no management listener to clash with the shared broker's 15672.
    writeFileSync(join(n.dir, 'enabled_plugins'), '[].\n');
    // Instead of /etc/rabbitmq/rabbitmq-env.conf, which names the shared broker's node.
    writeFileSync(
      join(n.dir, 'rabbitmq-env.conf'),
      'ERL_EPMD_ADDRESS=127.0.0.1\nSERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n',
    );
  }

  /** The environment the package scripts read for node `n` (passed through `su` to the rabbitmq user). */
  envOf(n: ClusterNode): NodeJS.ProcessEnv {
    return {
      ...process.env,
      RABBITMQ_NODENAME: n.name,
      RABBITMQ_NODE_PORT: String(n.amqpPort),
      RABBITMQ_DIST_PORT: String(n.distPort),
      RABBITMQ_MNESIA_BASE: join(n.dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(n.dir, 'log'),
      RABBITMQ_CONFIG_FILE: join(n.dir, 'rabbitmq.conf'),
      RABBITMQ_ADVANCED_CONFIG_FILE: join(n.dir, 'advanced.config'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(n.dir, 'enabled_plugins'),
      RABBITMQ_CONF_ENV_FILE: join(n.dir, 'rabbitmq-env.conf'),
      RABBITMQ_PID_FILE: join(n.dir, 'pid'),
    };
  }

  /** `rabbitmqctl -n <node> …` */
  ctl(n: ClusterNode, args: string[], timeout = 90_000): Promise<string> {
    return sh('rabbitmqctl', ['-q', '-n', n.name, ...args], process.env, timeout);
  }

  private async awaitNode(n: ClusterNode): Promise<void> {
    // await_startup fails at once while the node is not registered with epmd: ping first.
    const end = Date.now() + 90_000;
    for (;;) {
      const up = await sh('rabbitmq-diagnostics', ['-q', '-n', n.name, 'ping'], process.env, 15_000).then(
        () => true,
        () => false,
      );
      if (up) break;
      if (Date.now() > end) throw new Error(`node ${n.name} did not answer ping within 90 s`);
      await new Promise((r) => setTimeout(r, 300));
    }
    await this.ctl(n, ['await_startup', '--timeout', '90']);
  }

  async runningNodes(via: ClusterNode): Promise<string[]> {
    const status = JSON.parse(await this.ctl(via, ['cluster_status', '--formatter', 'json'])) as {
      running_nodes: string[];
    };
    return status.running_nodes;
  }

  /** The node leading quorum queue `queue` (asked of node `via`, which must be running). */
  async leaderOf(queue: string, via: ClusterNode): Promise<{ leader: string; members: string[]; online: string[] }> {
    const rows = JSON.parse(
      await this.ctl(via, ['list_queues', 'name', 'leader', 'members', 'online', '--formatter', 'json']),
    ) as Array<{ name: string; leader: string; members: string[]; online: string[] }>;
    const row = rows.find((r) => r.name === queue);
    if (!row) throw new Error(`no queue ${queue} on the cluster`);
    return row;
  }

  node(name: string): ClusterNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`${name} is not a node of this cluster`);
    return n;
  }

  /** Stops the RabbitMQ application of node `n` (its clients are disconnected; the Erlang VM stays). */
  async stopApp(n: ClusterNode): Promise<void> {
    await this.ctl(n, ['stop_app']);
  }

  /** Starts node `n`'s RabbitMQ application again; it rejoins the cluster. */
  async startApp(n: ClusterNode): Promise<void> {
    await this.ctl(n, ['start_app']);
    await this.ctl(n, ['await_startup', '--timeout', '90']);
  }

  /** The last lines of each node's log, for a failure message. */
  logTail(lines = 15): string {
    return this.nodes
      .map((n) => {
        try {
          const files = readdirSync(join(n.dir, 'log')).filter((f) => f.endsWith('.log') && !f.includes('upgrade'));
          const text = files.map((f) => readFileSync(join(n.dir, 'log', f), 'utf8')).join('\n');
          return `--- ${n.name}\n${text.trim().split('\n').slice(-lines).join('\n')}`;
        } catch {
          return '';
        }
      })
      .filter(Boolean)
      .join('\n');
  }

  /**
   * Stops every node, kills what is left of THESE nodes' Erlang VMs (matched by their node names,
   * never the shared broker's), and removes the temp folder. Safe to call more than once.
   */
  async destroy(): Promise<void> {
    await Promise.allSettled(this.nodes.map((n) => this.ctl(n, ['stop'], 30_000)));
    for (const pid of this.leftoverPids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone already */
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * Processes started for one of this cluster's nodes (beam.smp and its helpers): their environment
   * holds `RABBITMQ_NODENAME=<our node>` (3.10 does not put the node name on the command line). The
   * shared broker, started from /etc/rabbitmq/rabbitmq-env.conf, never matches.
   */
  leftoverPids(): number[] {
    const marks = new Set(this.nodes.map((n) => `RABBITMQ_NODENAME=${n.name}`));
    const pids: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
      let environ: string;
      try {
        environ = readFileSync(`/proc/${entry}/environ`, 'utf8');
      } catch {
        continue;
      }
      if (environ.split('\0').some((v) => marks.has(v))) pids.push(Number(entry));
    }
    return pids;
  }
}

function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const p = join(path, entry.name);
    if (entry.isDirectory()) chownTree(p, uid, gid);
    else chownSync(p, uid, gid);
  }
}
