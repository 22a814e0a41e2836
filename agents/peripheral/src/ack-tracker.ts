import type { SessionAck } from '@sitesync/protocol';

interface OpenSession {
  /** Distinct batches whose ack was applied (a redelivered ack counts once). */
  appliedBatches: Set<string>;
  ack?: SessionAck;
  done?: (ack: SessionAck) => void;
  abort?: () => void;
}

/**
 * Follows the acknowledgements of the sessions this process runs. A session is confirmed when the
 * central's `session.ack` arrived AND every `batch.ack` it counts has been applied locally: batch
 * acks are applied concurrently and, with several central consumers, may even arrive after it.
 */
export class AckTracker {
  private readonly open = new Map<string, OpenSession>();

  /** Starts following a session; call before its first batch is published. */
  begin(sessionId: string): void {
    this.open.set(sessionId, { appliedBatches: new Set() });
  }

  end(sessionId: string): void {
    this.open.delete(sessionId);
  }

  /** True when the session is followed here (its acks go to the waiting session). */
  has(sessionId: string): boolean {
    return this.open.has(sessionId);
  }

  batchAckApplied(sessionId: string, batchId: string): void {
    const s = this.open.get(sessionId);
    if (!s) return;
    s.appliedBatches.add(batchId);
    this.check(s);
  }

  sessionAck(ack: SessionAck): boolean {
    const s = this.open.get(ack.sessionId);
    if (!s) return false;
    s.ack = ack;
    this.check(s);
    return true;
  }

  /** Resolves with the session.ack once all its batch acks are applied, or undefined after `timeoutMs`. */
  wait(sessionId: string, timeoutMs: number): Promise<SessionAck | undefined> {
    const s = this.open.get(sessionId);
    if (!s) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        s.done = undefined;
        resolve(undefined);
      }, timeoutMs);
      s.done = (ack) => {
        clearTimeout(t);
        s.abort = undefined;
        resolve(ack);
      };
      s.abort = () => {
        clearTimeout(t);
        resolve(undefined);
      };
      this.check(s);
    });
  }

  /** Stops every wait now (shutdown): the sessions end as unconfirmed; late acks are still applied. */
  abortAll(): void {
    for (const s of this.open.values()) {
      const done = s.abort;
      s.done = undefined;
      s.abort = undefined;
      done?.();
    }
  }

  private check(s: OpenSession): void {
    if (s.ack && s.done && s.appliedBatches.size >= s.ack.received.batches) {
      const done = s.done;
      s.done = undefined;
      done(s.ack);
    }
  }
}
