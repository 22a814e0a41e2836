/**
 * Preloaded (`node --import`) into a peripheral agent process by the memory measurement. It samples
 * `process.memoryUsage()` every 250 ms and, at exit, writes to the file named by
 * SITESYNC_BENCH_RSS_OUT: the peak resident set size (the kernel's VmHWM of this process, kB; also
 * `process.resourceUsage().maxRSS`, which Linux keeps across exec, so that it can report the
 * resident size of the process that spawned this one instead of this one's), the peaks of the V8 heap and of external/ArrayBuffer memory, and the heap after a full GC (when the
 * process runs with --expose-gc), which tells live data from garbage not yet collected. With
 * SITESYNC_BENCH_HEAP_SNAPSHOT set to a file name it also writes a heap snapshot there after that GC
 * (open it in Chrome DevTools' Memory tab to see what is still live).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { writeHeapSnapshot } from 'node:v8';

const out = process.env.SITESYNC_BENCH_RSS_OUT;
if (out) {
  const peak = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 };
  const sample = () => {
    const m = process.memoryUsage();
    for (const k of Object.keys(peak) as Array<keyof typeof peak>) peak[k] = Math.max(peak[k], m[k]);
  };
  setInterval(sample, 250).unref();
  process.on('exit', () => {
    sample();
    // Read before the GC and the snapshot below, which allocate.
    const hwmKb = highWaterMarkKb();
    const gc = (globalThis as { gc?: () => void }).gc;
    let afterGc: NodeJS.MemoryUsage | undefined;
    if (gc) {
      gc();
      afterGc = process.memoryUsage();
    }
    const snapshot = process.env.SITESYNC_BENCH_HEAP_SNAPSHOT;
    if (snapshot) writeHeapSnapshot(snapshot);
    writeFileSync(out, JSON.stringify({ hwmKb, maxRssKb: process.resourceUsage().maxRSS, peak, afterGc }));
  });
}

/** VmHWM of this process (reset by exec), or undefined where /proc is missing. */
function highWaterMarkKb(): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
