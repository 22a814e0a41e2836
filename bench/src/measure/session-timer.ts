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

/**
 * Runs one session of an in-process site and times it from start to the central's `session.ack`
 * (`runSession()` resolves after it). Progress follows the rows the central merged.
 */
export async function timeSession(
  site: PeripheralAgent,
  central: CentralAgent,
  expectedRows: number,
  progress: Progress,
): Promise<TimedSession> {
  const merged0 = await counterTotal(central.metrics.rowsMerged);
  const bytes0 = await counterTotal(site.metrics.bytesSent);
  const timer = setInterval(() => {
    void counterTotal(central.metrics.rowsMerged).then((n) => progress.update(n - merged0, expectedRows));
  }, 250);
  const cpu = cpuMeter();
  const t0 = performance.now();
  try {
    const result = await site.runSession();
    const seconds = since(t0);
    const cpuSeconds = cpu();
    if (result.status !== 'ok') {
      throw new Error(`session ended ${result.status}${result.error ? `: ${result.error}` : ''}`);
    }
    const bytes = (await counterTotal(site.metrics.bytesSent)) - bytes0;
    progress.update(expectedRows, expectedRows);
    return { seconds, result, bytes, cpuSeconds };
  } finally {
    clearInterval(timer);
  }
}
