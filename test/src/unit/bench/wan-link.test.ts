import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WanLink } from '@sitesync/bench/wan-link';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A local TCP server running `onConnection`; closed after the test. */
async function server(onConnection: (s: Socket) => void): Promise<number> {
  const srv: Server = createServer(onConnection);
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  cleanups.push(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  return (srv.address() as { port: number }).port;
}

async function link(targetPort: number, opts: { bitsPerSecond?: number; rttMs?: number } = {}): Promise<WanLink> {
  const l = await WanLink.start({ targetHost: '127.0.0.1', targetPort, ...opts });
  cleanups.push(() => l.close());
  return l;
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
    cleanups.push(() => void s.destroy());
  });
}

/** Sends `bytes` through a link of `bitsPerSecond` and resolves with the seconds until the far end has them all. */
async function timeTransfer(direction: 'up' | 'down', bytes: number, bitsPerSecond: number): Promise<number> {
  const payload = Buffer.alloc(bytes, 7);
  let received = 0;
  let done!: (t: number) => void;
  const finished = new Promise<number>((resolve) => (done = resolve));
  const port = await server((s) => {
    if (direction === 'up') {
      s.on('data', (d: Buffer) => {
        received += d.length;
        if (received === bytes) done(performance.now());
      });
    } else {
      s.end(payload);
    }
  });
  const l = await link(port, { bitsPerSecond, rttMs: 40 });
  const c = await open(l.port);
  const t0 = performance.now();
  if (direction === 'up') c.end(payload);
  else
    c.on('data', (d: Buffer) => {
      received += d.length;
      if (received === bytes) done(performance.now());
    });
  const t1 = await finished;
  expect(l.bytes[direction]).toBe(bytes);
  return (t1 - t0) / 1000;
}

describe('WanLink, the emulated hospital link of the bench', () => {
  it('carries 2 MB at 10 Mbit/s in about 1.6 s (serialization plus one one-way delay), in each direction', async () => {
    // 2,000,000 bytes × 8 / 10 Mbit/s = 1.6 s, + 20 ms one-way delay. The lower bound is exact (the
    // link cannot be faster); the upper bound leaves room for a busy shared machine.
    for (const direction of ['up', 'down'] as const) {
      const seconds = await timeTransfer(direction, 2_000_000, 10_000_000);
      expect(seconds, direction).toBeGreaterThanOrEqual(1.6);
      expect(seconds, direction).toBeLessThan(1.6 + 0.02 + 0.35);
    }
  });

  it('delays a ping-pong round trip by the RTT (40 ms), not much more', async () => {
    const port = await server((s) => s.on('data', (d: Buffer) => s.write(d)));
    const l = await link(port, { rttMs: 40 });
    const c = await open(l.port);
    c.setNoDelay(true);
    const samples: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      const back = new Promise<void>((resolve) => c.once('data', () => resolve()));
      c.write('ping');
      await back;
      samples.push(performance.now() - t0);
    }
    samples.sort((a, b) => a - b);
    expect(samples[0]).toBeGreaterThanOrEqual(40);
    expect(samples[Math.floor(samples.length / 2)]).toBeLessThan(40 + 15);
  });

  it('keeps the directions independent: a full upload does not delay what comes down', async () => {
    // The client uploads 1 MB (0.8 s of the up direction); at its first bytes the target answers.
    // The answer takes the one-way delay (20 ms) down, not a place behind the upload.
    let sentAt = 0;
    const port = await server((s) => {
      s.on('data', () => {
        if (sentAt) return;
        sentAt = performance.now();
        s.write('pong');
      });
    });
    const l = await link(port, { bitsPerSecond: 10_000_000, rttMs: 40 });
    const c = await open(l.port);
    const arrived = new Promise<number>((resolve) => c.once('data', () => resolve(performance.now())));
    c.write(Buffer.alloc(1_000_000));
    const oneWay = (await arrived) - sentAt;
    expect(oneWay).toBeGreaterThanOrEqual(20);
    expect(oneWay).toBeLessThan(20 + 25);
    expect(l.bytes.up).toBeLessThan(1_000_000);
  });

  it('closes the target side when the client closes, and the client when the target closes', async () => {
    let serverSide: Socket | undefined;
    const closedAtServer = new Promise<void>(
      (resolve) =>
        void server((s) => {
          serverSide = s;
          s.on('data', () => undefined);
          s.on('close', () => resolve());
        }).then(async (port) => {
          const l = await link(port);
          const c = await open(l.port);
          c.write('hello');
          await new Promise((r) => setTimeout(r, 100));
          c.destroy();
        }),
    );
    await closedAtServer;
    expect(serverSide?.destroyed).toBe(true);

    const port = await server((s) => setTimeout(() => s.end('bye'), 50));
    const l = await link(port);
    const c = await open(l.port);
    let got = '';
    c.on('data', (d: Buffer) => (got += d.toString()));
    await new Promise<void>((resolve) => c.on('close', () => resolve()));
    expect(got).toBe('bye');
  });

  it('pauses a fast sender instead of buffering without bound (backpressure)', async () => {
    // The target reads nothing; the client queues 20 MB. Without backpressure the link would read all
    // of it into its own queue at localhost speed; with it, the link holds at most its high-water mark
    // and the kernel's socket buffers hold a few MB, so most of the 20 MB is still at the client.
    let target!: Socket;
    const port = await server((s) => {
      target = s;
      s.pause();
    });
    const l = await link(port, { bitsPerSecond: 1_000_000_000, rttMs: 2 });
    const c = await open(l.port);
    const total = 20 * 1024 * 1024;
    c.write(Buffer.alloc(total));
    await new Promise((r) => setTimeout(r, 500));
    expect(l.highWaterBytes).toBeLessThan(1024 * 1024);
    expect(c.writableLength).toBeGreaterThan(total / 2);
    // And the stream resumes once the target reads.
    let received = 0;
    const all = new Promise<void>((resolve) =>
      target.on('data', (d: Buffer) => {
        received += d.length;
        if (received === total) resolve();
      }),
    );
    target.resume();
    await all;
    expect(l.bytes.up).toBe(total);
  });

  it('tells waits on the far side from the sender’s own pauses in a trace', () => {
    // Sends at 0 and 5 ms (no gap), a reply delivered at 45 ms and the next send at 46 ms (a wait
    // on the far side of 41 ms), then a 30 ms pause with nothing delivered (own work).
    const w = WanLink.waits(
      [
        { t: 0, dir: 'up', bytes: 10 },
        { t: 5, dir: 'up', bytes: 10 },
        { t: 45, dir: 'down', bytes: 10 },
        { t: 46, dir: 'up', bytes: 10 },
        { t: 76, dir: 'up', bytes: 10 },
      ],
      20,
    );
    expect(w).toEqual({ onFarSide: 1, onFarSideMs: 41, ownMs: 30 });
  });
});
