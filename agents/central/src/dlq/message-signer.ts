import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Database } from '@sitesync/db';
import { bodyChecksum } from '@sitesync/protocol';

/**
 * Set by the central on a dead letter it made, and on a replay it published: an HMAC, under a key
 * only the central holds, of the message id, its body and the origin the central recorded. A
 * replay acts only on values this verifies; a header a sender wrote verifies nothing.
 */
export const HEADER_SIGNATURE = 'x-sitesync-signature';

/** The `sync_secret` row holding the signing key (made at the central's first start). */
export const SIGNING_KEY_NAME = 'message-signing-key';

/** Where a message first came from, as the central recorded it when it dead-lettered the message. */
export interface DeadLetterOrigin {
  /** The central's work queue the message was taken from. */
  queue: string;
  exchange: string;
  routingKey: string;
  /** The broker user that first published it ('' when the broker did not stamp one). */
  user: string;
  reason: string;
  /** Times it had been replayed before this death. */
  replays: number;
}

/** A replay as the central published it: the route, the user it speaks for, and its count. */
export interface ReplayStamp {
  exchange: string;
  routingKey: string;
  user: string;
  replays: number;
}

/** Signs and verifies what the central vouches for on messages it (re)publishes. */
export class MessageSigner {
  constructor(private readonly key: Buffer) {
    if (key.length < 32) throw new Error('a signing key has at least 32 bytes');
  }

  /** The central database's signing key, made (once, race-free) on first use. */
  static async forDatabase(db: Database): Promise<MessageSigner> {
    const read = async () =>
      (
        await db.query<{ value: string }>(`SELECT value FROM ${db.dialect.quote('sync_secret')} WHERE name = ?`, [
          SIGNING_KEY_NAME,
        ])
      )[0]?.value;
    let value = await read();
    if (value === undefined) {
      // Two centrals starting at once: one insert wins, both read the winner's key.
      await db.run(
        db.dialect.insertIgnore(
          'sync_secret',
          ['name', 'value', 'created_at'],
          [SIGNING_KEY_NAME, randomBytes(32).toString('base64'), db.dialect.now()],
        ),
      );
      value = await read();
    }
    if (value === undefined) throw new Error('could not read the message signing key from sync_secret');
    return new MessageSigner(Buffer.from(value, 'base64'));
  }

  signDeadLetter(messageId: string, content: Buffer, o: DeadLetterOrigin): string {
    return this.mac([
      'dead-letter',
      messageId,
      bodyChecksum(content),
      o.queue,
      o.exchange,
      o.routingKey,
      o.user,
      o.reason,
      String(o.replays),
    ]);
  }

  verifyDeadLetter(messageId: string, content: Buffer, o: DeadLetterOrigin, signature: unknown): boolean {
    return this.equal(signature, this.signDeadLetter(messageId, content, o));
  }

  signReplay(messageId: string, content: Buffer, r: ReplayStamp): string {
    return this.mac(['replay', messageId, bodyChecksum(content), r.exchange, r.routingKey, r.user, String(r.replays)]);
  }

  verifyReplay(messageId: string, content: Buffer, r: ReplayStamp, signature: unknown): boolean {
    return this.equal(signature, this.signReplay(messageId, content, r));
  }

  private mac(fields: string[]): string {
    return createHmac('sha256', this.key).update(JSON.stringify(fields)).digest('base64');
  }

  private equal(given: unknown, expected: string): boolean {
    if (typeof given !== 'string') return false;
    const a = Buffer.from(given);
    const b = Buffer.from(expected);
    return a.length === b.length && timingSafeEqual(a, b);
  }
}
