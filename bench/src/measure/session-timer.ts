import type { CentralAgent } from '@sitesync/central';
import type { PeripheralAgent, SessionResult } from '@sitesync/peripheral';
import { counterTotal } from '../agents.js';
import { cpuMeter, type CpuByGroup } from '../cpu.js';
import type { Progress } from '../progress.js';
import { since } from '../stats.js';

export interface TimedSession {
  seconds: number;
  result: SessionResult;
  /** Body bytes the site published in the session (`sitesync_bytes_sent_total`, after gzip). */
  bytes: number;
  cpuSeconds: CpuByGroup;
}

/** A site whose session can be timed: an agent in this process, or one in a process of its own. */
export interface TimedSite {
  /** Runs one session; resolves after the central's `session.ack`, with the body bytes it published. */
  runSession(): Promise<{ result: SessionResult; bytes: number }>;
}

/** An agent in this process as a TimedSite. */
export function inProcessSite(agent: PeripheralAgent): TimedSite {
  return {
    async runSession() {
      const bytes0 = await counterTotal(agent.metrics.bytesSent);
      const result = await agent.runSession();
      return { result, bytes: (await counterTotal(agent.metrics.bytesSent)) - bytes0 };
    },
  };
}

/**
 * Runs one session of a site and times it from start to the central's `session.ack`
 * (`runSession()` resolves after it). Progress follows the rows the central merged.
 */
export async function timeSession(
  site: TimedSite,
  central: CentralAgent,
  expectedRows: number,
  progress: Progress,
): Promise<TimedSession> {
  const merged0 = await counterTotal(central.metrics.rowsMerged);
  const timer = setInterval(() => {
    void counterTotal(central.metrics.rowsMerged).then((n) => progress.update(n - merged0, expectedRows));
  }, 250);
  const cpu = cpuMeter();
  const t0 = performance.now();
  try {
    const { result, bytes } = await site.runSession();
    const seconds = since(t0);
    const cpuSeconds = cpu();
    if (result.status !== 'ok') {
      throw new Error(`session ended ${result.status}${result.error ? `: ${result.error}` : ''}`);
    }
    progress.update(expectedRows, expectedRows);
    return { seconds, result, bytes, cpuSeconds };
  } finally {
    clearInterval(timer);
  }
}
