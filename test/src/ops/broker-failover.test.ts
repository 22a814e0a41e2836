import { createServer, type AddressInfo, type Server } from 'node:net';
import { describe, expect, it } from 'vitest';
import { BrokerConnection, BrokerRefusedError, TransientError, type Log } from '@sitesync/protocol';
import { amqpUrl } from '../support/services.js';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping broker failover tests: no RabbitMQ available');

/** A port nothing listens on (bound, then released). */
function deadPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function recordingLog(): Log & { lines: Array<{ level: string; msg: string; obj: object }> } {
  const lines: Array<{ level: string; msg: string; obj: object }> = [];
  const at =
    (level: string) =>
    (obj: object, msg = '') =>
      lines.push({ level, msg, obj });
  return { lines, info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
}

function withUrl(url: string, change: (u: URL) => void): string {
  const u = new URL(url);
  change(u);
  return u.toString();
}

describe.skipIf(!broker)('a list of broker URLs (the nodes of a cluster)', () => {
  it('connects to the first node that answers, says which, and never logs a password', async () => {
    const dead = `amqp://guest:guest@127.0.0.1:${await deadPort()}`;
    const log = recordingLog();
    const conn = new BrokerConnection({ url: [dead, broker!], name: 'sitesync-failover-test', log });
    try {
      await conn.connect();
      expect(conn.connected).toBe(true);
      expect(conn.broker).toBe(`${new URL(broker!).hostname}:${new URL(broker!).port || 5672}`);
      expect(log.lines[0]!.msg).toMatch(/^broker unreachable at 127\.0\.0\.1:\d+; trying the next node$/);
      expect(log.lines.at(-1)).toMatchObject({ level: 'info', msg: 'broker connected', obj: { node: '2/2' } });
      expect(JSON.stringify(log.lines)).not.toContain('guest:guest');
    } finally {
      await conn.close();
    }
  });

  it('tries the nodes round-robin, each once per round, and backs off only after a full round failed', async () => {
    // Two "nodes" that accept TCP and hang up at once: every attempt is seen, in order.
    const hits: string[] = [];
    const servers = await Promise.all(
      ['a', 'b'].map(
        (name) =>
          new Promise<Server>((resolve) => {
            const s = createServer((sock) => {
              hits.push(name);
              sock.destroy();
            }).listen(0, '127.0.0.1', () => resolve(s));
          }),
      ),
    );
    const urls = servers.map((s) => `amqp://127.0.0.1:${(s.address() as AddressInfo).port}`);
    const log = recordingLog();
    const conn = new BrokerConnection({ url: urls, name: 'sitesync-failover-test', log, minBackoffMs: 2000 });
    try {
      await expect(conn.connect()).rejects.toBeInstanceOf(TransientError);
      expect(hits).toEqual(['a', 'b']);
      const retrying = conn.connectWithRetry().catch((err: unknown) => err);
      await new Promise((r) => setTimeout(r, 800));
      // The next round ran at once; the one after waits for the backoff (2000 ms * 2^1, at least half).
      expect(hits).toEqual(['a', 'b', 'a', 'b']);
      await conn.close();
      expect(await retrying).toBeDefined();
    } finally {
      await conn.close();
      for (const s of servers) s.close();
    }
  });

  it('a refused password is final at the first node that says so: a cluster shares its users', async () => {
    const dead = `amqp://127.0.0.1:${await deadPort()}`;
    const wrong = withUrl(broker!, (u) => {
      u.username = 'guest';
      u.password = 'not-the-password';
    });
    const log = recordingLog();
    const conn = new BrokerConnection({ url: [dead, wrong, broker!], name: 'sitesync-failover-test', log });
    try {
      const err = await conn.connectWithRetry().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BrokerRefusedError);
      expect((err as BrokerRefusedError).refusal).toBe('credentials');
      expect(await conn.refused).toBe(err);
      expect(conn.connected).toBe(false);
      expect(JSON.stringify(log.lines)).not.toContain('not-the-password');
    } finally {
      await conn.close();
    }
  });

  it('a refused virtual host is final once no node accepts it (an unreachable node does not count)', async () => {
    const dead = `amqp://127.0.0.1:${await deadPort()}`;
    const noVhost = withUrl(broker!, (u) => (u.pathname = `/no-such-vhost-${Date.now()}`));
    const log = recordingLog();
    const conn = new BrokerConnection({ url: [noVhost, dead], name: 'sitesync-failover-test', log });
    try {
      const err = await conn.connectWithRetry().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BrokerRefusedError);
      expect((err as BrokerRefusedError).refusal).toBe('vhost');
      // The other node was tried before giving up.
      expect(log.lines.map((l) => l.msg)).toEqual(
        expect.arrayContaining([expect.stringMatching(/refused the virtual host; trying the next node/)]),
      );
    } finally {
      await conn.close();
    }
  });
});
