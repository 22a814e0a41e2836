import { spawn } from 'node:child_process';
import { PERIPHERAL_NODE_OPTIONS } from '@sitesync/peripheral';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { CentralAgent } from '@sitesync/central';
import { counterTotal, prepareSiteDb, register, siteConfig, writeConfig, type BenchContext } from '../agents.js';
import { readMemory } from '../cpu.js';
import type { Sizes } from '../options.js';
import type { Progress } from '../progress.js';
import { since } from '../stats.js';

export interface MemoryRun {
  headers: number;
  peakRssBytes: number;
  /** Peaks of process.memoryUsage() fields sampled in the child, and the same after a full GC at exit. */
  peak?: Record<string, number>;
  afterGc?: Record<string, number>;
  seconds: number;
  rowsPerSecond: number;
}

export interface MemoryResult {
  small: MemoryRun;
  large: MemoryRun;
  /** large.peakRssBytes / small.peakRssBytes */
  growth: number;
  method: string;
}

const BASE_SITE = 300;

/**
 * Peak RSS of a real peripheral agent process (`sync-peripheral run --once`) doing the first sync of a
 * small and a large site into the in-process central. The peak comes from the child itself
 * (its VmHWM read at exit by a preloaded probe); VmHWM sampled from /proc by this process is the fallback.
 */
export async function benchMemory(
  ctx: BenchContext,
  central: CentralAgent,
  sizes: Sizes,
  repoRoot: string,
  progress: Progress,
): Promise<MemoryResult> {
  const runs: MemoryRun[] = [];
  for (const [i, headers] of [sizes.memorySmallHeaders, sizes.memoryLargeHeaders].entries()) {
    const siteId = BASE_SITE + i;
    const label = headers.toLocaleString('en-US');
    progress.phase(`${ctx.dialect} · memory: seeding a site with ${label} headers`);
    const url = await prepareSiteDb(ctx, `mem${headers}`, headers, (n) => progress.update(n, headers, 'headers'));
    await register(central.database!, siteId, { header: `mem${i}_orders`, detail: `mem${i}_results` });
    const config = writeConfig(ctx, `mem-site-${siteId}`, { ...siteConfig(ctx, siteId, url), logLevel: 'warn' });
    const rssOut = join(ctx.world.dir, `mem-site-${siteId}.rss.json`);
    progress.phase(`${ctx.dialect} · memory: peripheral process syncing ${label} headers`);
    const totalRows = headers * (1 + sizes.detailsPerHeader);
    const merged0 = await counterTotal(central.metrics.rowsMerged);
    const t0 = performance.now();
    const child = spawn(
      process.execPath,
      [
        // As the agent runs in its image (deploy/Dockerfile sets the same NODE_OPTIONS).
        ...PERIPHERAL_NODE_OPTIONS.split(' '),
        '--expose-gc',
        '--import',
        pathToFileURL(join(repoRoot, 'bench/dist/rss-probe.js')).href,
        join(repoRoot, 'agents/peripheral/bin/sync-peripheral.js'),
        'run',
        '--once',
        '--config',
        config,
      ],
      { cwd: repoRoot, env: { ...process.env, SITESYNC_BENCH_RSS_OUT: rssOut }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    let sampledHwm = 0;
    const timer = setInterval(() => {
      const m = child.pid ? readMemory(child.pid) : undefined;
      if (m) sampledHwm = Math.max(sampledHwm, m.hwm);
      void counterTotal(central.metrics.rowsMerged).then((n) => progress.update(n - merged0, totalRows));
    }, 200);
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    clearInterval(timer);
    const seconds = since(t0);
    if (code !== 0)
      throw new Error(`sync-peripheral (memory, ${label} headers) exited ${code}:\n${output.slice(-2000)}`);
    const probe = existsSync(rssOut)
      ? (JSON.parse(readFileSync(rssOut, 'utf8')) as {
          hwmKb?: number;
          maxRssKb: number;
          peak: Record<string, number>;
          afterGc?: Record<string, number>;
        })
      : undefined;
    // The child's own VmHWM at exit. Not maxRSS: Linux carries it across exec, so a child spawned
    // by this (large) process could report this process's resident size (a 10k-header site showed
    // 172 MiB by maxRSS, 117 MiB by VmHWM).
    const peakRssBytes = probe?.hwmKb ? probe.hwmKb * 1024 : Math.max(sampledHwm, (probe?.maxRssKb ?? 0) * 1024);
    runs.push({
      headers,
      peakRssBytes,
      ...(probe ? { peak: probe.peak } : {}),
      ...(probe?.afterGc ? { afterGc: probe.afterGc } : {}),
      seconds,
      rowsPerSecond: totalRows / seconds,
    });
    progress.result(
      `memory: ${label} headers -> peak RSS ${mib(peakRssBytes)} (maxRSS ${mib((probe?.maxRssKb ?? 0) * 1024)}; peak heap ${mib(probe?.peak.heapTotal)}, ` +
        `external ${mib(probe?.peak.external)}; heap after GC ${mib(probe?.afterGc?.heapUsed)}), ${seconds.toFixed(1)} s`,
    );
  }
  const [small, large] = runs as [MemoryRun, MemoryRun];
  return {
    small,
    large,
    growth: large.peakRssBytes / small.peakRssBytes,
    method: 'peak RSS of `sync-peripheral run --once`: its VmHWM read by the process itself at exit',
  };
}

function mib(bytes: number | undefined): string {
  return bytes === undefined ? '?' : `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}
