/**
 * A hospital's WAN link emulated in user space (the kernel here has no `tc netem`): a TCP proxy that
 * forwards to a target and, in each direction independently, serializes the bytes at the link's rate
 * and delivers each slice half a round trip after it left the wire.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

/** 10 Mbit/s: a typical provincial hospital's uplink. */
export const DEFAULT_BITS_PER_SECOND = 10_000_000;
/** 40 ms round trip: the hospital to the central data centre. */
export const DEFAULT_RTT_MS = 40;
/** Bytes serialized as one unit: large enough to keep timers few, small enough not to bunch (13 ms at 10 Mbit/s). */
const SLICE_BYTES = 16 * 1024;

export interface WanLinkOptions {
  targetHost: string;
  targetPort: number;
  /** Rate of each direction. @default 10_000_000 */
  bitsPerSecond?: number;
  /** Round-trip delay; each direction adds half. @default 40 */
  rttMs?: number;
  /** @default '127.0.0.1' */
  listenHost?: string;
  /** @default 0 (any free port) */
  listenPort?: number;
}

/** Bytes that crossed the link, client -> target (`up`) and target -> client (`down`). */
export interface LinkBytes {
  up: number;
  down: number;
}

/** A traced event: bytes arriving at the link from the client (`up`), or delivered to the client (`down`). */
export interface LinkEvent {
  /** performance.now() */
  t: number;
  dir: 'up' | 'down';
  bytes: number;
}

interface Slice {
  buf: Buffer;
  /** performance.now() at which the slice reaches the other side. */
  deliverAt: number;
}

/**
 * One direction of the link: a paced queue. A slice arriving at `t` leaves the wire when the link is
 * free and its bytes are serialized (`max(t, wireFree) + bytes / rate`), and is delivered `delay`
 * later. The source is paused while more than `highWater` bytes wait (backpressure upstream), and
 * delivery waits for the destination's 'drain' (backpressure downstream).
 */
class PacedDirection {
  bytes = 0;
  private readonly queue: Slice[] = [];
  private queued = 0;
  private wireFree = 0;
  private timer: NodeJS.Timeout | undefined;
  private blocked = false;
  private ended = false;
  private stopped = false;

  constructor(
    private readonly src: Socket,
    private readonly dst: Socket,
    private readonly link: WanLink,
    private readonly onBytes: (n: number) => void,
    private readonly traced: 'up' | 'down',
  ) {
    src.on('data', (chunk: Buffer) => this.push(chunk));
    src.on('end', () => {
      this.ended = true;
      this.pump();
    });
    dst.on('drain', () => {
      this.blocked = false;
      this.pump();
    });
  }

  private push(chunk: Buffer): void {
    if (this.stopped) return;
    const now = performance.now();
    if (this.traced === 'up') this.link.trace?.push({ t: now, dir: 'up', bytes: chunk.length });
    const { bytesPerMs, delayMs } = this.link.shape();
    for (let off = 0; off < chunk.length; off += SLICE_BYTES) {
      const buf = chunk.subarray(off, off + SLICE_BYTES);
      let deliverAt = now;
      if (bytesPerMs !== Infinity || delayMs > 0) {
        this.wireFree = Math.max(this.wireFree, now) + buf.length / bytesPerMs;
        deliverAt = this.wireFree + delayMs;
      }
      this.queue.push({ buf, deliverAt });
      this.queued += buf.length;
    }
    if (this.queued > this.link.highWaterBytes) this.src.pause();
    this.pump();
  }

  private pump(): void {
    if (this.stopped || this.blocked) return;
    const now = performance.now();
    // Never early: a timer may fire a fraction of a millisecond before its time, and comes again for the rest.
    while (this.queue.length && this.queue[0]!.deliverAt <= now) {
      const s = this.queue.shift()!;
      this.queued -= s.buf.length;
      this.bytes += s.buf.length;
      this.onBytes(s.buf.length);
      if (this.traced === 'down') this.link.trace?.push({ t: now, dir: 'down', bytes: s.buf.length });
      if (!this.dst.write(s.buf)) {
        this.blocked = true;
        break;
      }
    }
    if (this.queued <= this.link.highWaterBytes / 2 && this.src.isPaused()) this.src.resume();
    if (this.queue.length === 0) {
      if (this.ended) this.dst.end();
      return;
    }
    if (!this.blocked && !this.timer) {
      this.timer = setTimeout(
        () => {
          this.timer = undefined;
          this.pump();
        },
        Math.max(0, this.queue[0]!.deliverAt - now),
      );
    }
  }

  /** The source ended cleanly and its last bytes are still being delivered (then the FIN follows). */
  flushing(): boolean {
    return this.ended && !this.stopped && this.queue.length > 0;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.queue.length = 0;
  }
}

/** A throttling TCP proxy: `WanLink.start({ targetHost, targetPort })`, then connect to `port`. */
export class WanLink {
  readonly bitsPerSecond: number;
  readonly rttMs: number;
  /** Queued bytes per direction above which the sender is paused: twice the bandwidth-delay product, at least 256 KiB. */
  readonly highWaterBytes: number;
  /** Bytes since start (or since `resetBytes`). */
  readonly bytes: LinkBytes = { up: 0, down: 0 };
  /** When set (`startTrace`), what the client sent as it arrived and what was delivered to it. */
  trace: LinkEvent[] | undefined;
  private shaping = true;
  private readonly sockets = new Set<Socket>();
  private closed: Promise<void> | undefined;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    opts: WanLinkOptions,
  ) {
    this.bitsPerSecond = opts.bitsPerSecond ?? DEFAULT_BITS_PER_SECOND;
    this.rttMs = opts.rttMs ?? DEFAULT_RTT_MS;
    this.highWaterBytes = Math.max(256 * 1024, Math.ceil(((this.bitsPerSecond / 8) * this.rttMs) / 1000) * 2);
  }

  static async start(opts: WanLinkOptions): Promise<WanLink> {
    // Half-open: a FIN is forwarded in its turn, after the bytes before it (as TCP does end to end).
    const server = createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.listenPort ?? 0, opts.listenHost ?? '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('wan link: no TCP address');
    const link = new WanLink(server, address.port, opts);
    server.on('connection', (client) => link.accept(client, opts));
    return link;
  }

  /** The pacing in force now: bytes per millisecond and one-way delay. */
  shape(): { bytesPerMs: number; delayMs: number } {
    return this.shaping
      ? { bytesPerMs: this.bitsPerSecond / 8 / 1000, delayMs: this.rttMs / 2 }
      : { bytesPerMs: Infinity, delayMs: 0 };
  }

  /** Off: bytes pass at once (setting up a scenario); on: the link's rate and delay (the timed part). */
  setShaping(on: boolean): void {
    this.shaping = on;
  }

  startTrace(): void {
    this.trace = [];
  }

  stopTrace(): LinkEvent[] {
    const t = this.trace ?? [];
    this.trace = undefined;
    return t;
  }

  resetBytes(): void {
    this.bytes.up = 0;
    this.bytes.down = 0;
  }

  /**
   * The client's waits in a trace: gaps of at least `minGapMs` between two sends. A gap during which
   * something was delivered to the client was a wait on the far side (a round trip the protocol
   * waited on, plus the far side's work); one without was the client's own work.
   */
  static waits(events: LinkEvent[], minGapMs: number): { onFarSide: number; onFarSideMs: number; ownMs: number } {
    let last: number | undefined;
    let delivered = false;
    const w = { onFarSide: 0, onFarSideMs: 0, ownMs: 0 };
    for (const e of events) {
      if (e.dir === 'down') {
        delivered = true;
        continue;
      }
      if (last !== undefined && e.t - last >= minGapMs) {
        if (delivered) {
          w.onFarSide++;
          w.onFarSideMs += e.t - last;
        } else w.ownMs += e.t - last;
      }
      last = e.t;
      delivered = false;
    }
    return w;
  }

  /** Seconds the link needs to carry `bytes` in one direction. */
  serializationSeconds(bytes: number): number {
    return (bytes * 8) / this.bitsPerSecond;
  }

  private accept(client: Socket, opts: WanLinkOptions): void {
    const target = connect({ host: opts.targetHost, port: opts.targetPort, allowHalfOpen: true });
    for (const s of [client, target]) {
      s.setNoDelay(true);
      this.sockets.add(s);
      s.on('error', () => {
        client.destroy();
        target.destroy();
      });
    }
    // Closing either side closes the other: what is still on the wire toward the closed side is
    // dropped; what the closed side sent before its FIN is delivered first, then the FIN.
    const up = new PacedDirection(client, target, this, (n) => (this.bytes.up += n), 'up');
    const down = new PacedDirection(target, client, this, (n) => (this.bytes.down += n), 'down');
    const onClose = (closed: Socket, into: PacedDirection, from: PacedDirection, other: Socket) => () => {
      this.sockets.delete(closed);
      into.stop();
      if (!from.flushing()) {
        from.stop();
        other.destroy();
      }
    };
    client.once('close', onClose(client, down, up, target));
    target.once('close', onClose(target, up, down, client));
  }

  /** Stops listening and destroys every open connection. Safe to call more than once. */
  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
    return this.closed;
  }
}
