import { randomBytes } from 'node:crypto';
import * as amqp from 'amqplib';
import type { Progress } from '../progress.js';
import { since } from '../stats.js';
import type { BenchWorld } from '../world.js';

export interface RawBrokerResult {
  messages: number;
  messageBytes: number;
  /** Publish with confirms (256 in flight) and consume with manual ack (prefetch 256), running together. */
  messagesPerSecond: number;
  mbPerSecond: number;
  /** Publishing alone finished at this rate. */
  publishMessagesPerSecond: number;
  queueType: string;
}

const WINDOW = 256;

/**
 * The broker's own ceiling for messages of the size sitesync publishes: a plain publish-with-confirms
 * loop and a consume-with-ack loop on a durable quorum queue (like the product's), persistent messages,
 * separate connections.
 */
export async function benchRawBroker(
  world: BenchWorld,
  messages: number,
  messageBytes: number,
  progress: Progress,
): Promise<RawBrokerResult> {
  progress.phase(
    `broker · raw publish/consume of ${messages.toLocaleString('en-US')} x ${(messageBytes / 1024).toFixed(0)} KiB`,
  );
  const queue = world.queue(`${world.prefix}bench.raw-broker`);
  const pubConn = await amqp.connect(world.amqpUrl, { noDelay: true });
  const subConn = await amqp.connect(world.amqpUrl, { noDelay: true });
  try {
    const pub = await pubConn.createConfirmChannel();
    await pub.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await pub.purgeQueue(queue);
    const sub = await subConn.createChannel();
    await sub.prefetch(WINDOW);
    // Incompressible content: the broker does not compress, but keep it honest anyway.
    const body = randomBytes(messageBytes);
    let consumed = 0;
    let finish!: () => void;
    const allConsumed = new Promise<void>((resolve) => (finish = resolve));
    await sub.consume(queue, (m) => {
      if (!m) return;
      sub.ack(m);
      if (++consumed === messages) finish();
    });
    const t0 = performance.now();
    let inFlight = 0;
    let failed: unknown;
    let wake: (() => void) | undefined;
    for (let i = 0; i < messages; i++) {
      while (inFlight >= WINDOW) await new Promise<void>((r) => (wake = r));
      inFlight++;
      const ok = pub.publish('', queue, body, { persistent: true }, (err) => {
        if (err) failed ??= err;
        inFlight--;
        wake?.();
        wake = undefined;
      });
      if (!ok) await new Promise<void>((r) => pub.once('drain', () => r()));
      if (i % 200 === 0) progress.update(consumed, messages, 'messages');
    }
    await pub.waitForConfirms();
    if (failed) throw new Error(`publish not confirmed: ${String(failed)}`);
    const publishSeconds = since(t0);
    const timer = setInterval(() => progress.update(consumed, messages, 'messages'), 250);
    await allConsumed;
    clearInterval(timer);
    const seconds = since(t0);
    progress.update(messages, messages, 'messages');
    const res = {
      messages,
      messageBytes,
      messagesPerSecond: messages / seconds,
      mbPerSecond: (messages * messageBytes) / 1e6 / seconds,
      publishMessagesPerSecond: messages / publishSeconds,
      queueType: 'quorum',
    };
    progress.result(`raw broker: ${res.messagesPerSecond.toFixed(0)} msg/s, ${res.mbPerSecond.toFixed(1)} MB/s`);
    await pub.deleteQueue(queue).catch(() => undefined);
    return res;
  } finally {
    await pubConn.close().catch(() => undefined);
    await subConn.close().catch(() => undefined);
  }
}
