import { MessageRejectedError, isTransientError } from './errors';
import { errorInfo } from './errors';
import type { Log } from './broker-connection';

export interface RetryOptions {
  /** True once the agent is shutting down: stop retrying, the caller requeues. */
  isStopping(): boolean;
  log: Log;
  /** Attempts for an error that is neither transient nor a rejection (a race may still clear it). @default 3 */
  permanentAttempts?: number;
  /** Longest wait between attempts. @default 5000 ms */
  maxDelayMs?: number;
  onRetry?(): void;
  context?: object;
}

/**
 * Runs a message handler until it succeeds. Transient failures (database or broker unreachable,
 * deadlock) are retried with exponential backoff for as long as the agent runs, so an outage does not
 * burn the broker's delivery limit; other failures get a few attempts, then the last error is
 * thrown for the caller to dead-letter with its reason. Rejections are thrown at once.
 */
export async function runWithRetry<T>(fn: () => Promise<T>, opts: RetryOptions): Promise<T> {
  const permanent = opts.permanentAttempts ?? 3;
  const maxDelay = opts.maxDelayMs ?? 5000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof MessageRejectedError || opts.isStopping()) throw err;
      const transient = isTransientError(err);
      if (!transient && attempt >= permanent) throw err;
      const delay = Math.min(maxDelay, (transient ? 100 : 250) * 2 ** (attempt - 1));
      if (attempt === 1 || attempt % 10 === 0) {
        opts.log.warn({ ...opts.context, err: errorInfo(err), attempt, delay, transient }, 'handler failed; retrying');
      }
      opts.onRetry?.();
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
