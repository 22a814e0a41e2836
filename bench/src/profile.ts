import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Session } from 'node:inspector/promises';

/** The parts of a V8 CPU profile (`.cpuprofile`, as `node --cpu-prof` writes) that the summary reads. */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  /** Wall time profiled and the share of it the main thread was busy. */
  seconds: number;
  busyFraction: number;
  /** Self time by area (package or sitesync module), busiest first. */
  byArea: Array<{ area: string; seconds: number; share: number }>;
  /** The functions with the most self time. */
  topFunctions: Array<{ fn: string; area: string; seconds: number; share: number }>;
  /** sitesync functions (libs/, agents/) with the most inclusive time (self + callees). */
  topInclusive: Array<{ fn: string; seconds: number; share: number }>;
}

/**
 * Runs `fn` under the V8 sampling profiler of this process (the same profile `node --cpu-prof`
 * writes, limited to the timed window) when `file` is given; writes the profile and returns a summary.
 */
export async function profiled<T>(file: string | undefined, fn: () => Promise<T>): Promise<[T, ProfileSummary?]> {
  if (!file) return [await fn()];
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 500 });
  await session.post('Profiler.start');
  let profile: CpuProfile | undefined;
  try {
    const result = await fn();
    profile = ((await session.post('Profiler.stop')) as { profile: CpuProfile }).profile;
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(profile));
    return [result, summarize(file, profile)];
  } finally {
    if (!profile) await session.post('Profiler.stop').catch(() => undefined);
    session.disconnect();
  }
}

/** Which package or sitesync module a script URL belongs to. */
export function areaOf(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (nm) return nm[1]!;
  const own = /\/(libs\/(?:protocol|db)|agents\/(?:peripheral|central)|bench)\/(?:dist|src)\/(.*?)\.[jt]s$/.exec(url);
  if (own) return `${own[1]}/${own[2]}`;
  if (url.startsWith('node:'))
    return url
      .replace(/^node:(internal\/)?/, 'node:')
      .split('/')
      .slice(0, 2)
      .join('/');
  return url;
}

export function summarize(file: string, p: CpuProfile): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const total = (p.endTime - p.startTime) / 1e6;
  const areas = new Map<string, number>();
  const fns = new Map<string, { area: string; us: number }>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === '(idle)') continue;
    const area = areaOf(url, functionName);
    areas.set(area, (areas.get(area) ?? 0) + us);
    const key =
      `${functionName || '(anonymous)'} ${url ? `${url.replace(/^.*\/(node_modules|libs|agents|bench)\//, '$1/')}:${lineNumber + 1}` : ''}`.trim();
    const f = fns.get(key) ?? { area, us: 0 };
    f.us += us;
    fns.set(key, f);
  }
  // Inclusive time of sitesync's own functions: each sample counts once for every distinct caller frame.
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const fnKey = (n: ProfileNode) =>
    `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(libs|agents)\//, '$1/')}:${n.callFrame.lineNumber + 1}`;
  const inclusive = new Map<string, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const seen = new Set<string>();
    for (let id: number | undefined = p.samples[i]; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id)!;
      if (n.callFrame.functionName === '(idle)') break;
      if (!/\/(libs|agents)\//.test(n.callFrame.url)) continue;
      const k = fnKey(n);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + (p.timeDeltas[i] ?? 0));
    }
  }
  const busy = [...areas.values()].reduce((a, b) => a + b, 0) / 1e6;
  const share = (us: number) => Math.round((us / 1e6 / Math.max(busy, 1e-9)) * 1000) / 1000;
  return {
    file,
    seconds: Math.round(total * 100) / 100,
    busyFraction: Math.round((busy / Math.max(total, 1e-9)) * 100) / 100,
    byArea: [...areas.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 15)
      .map(([area, us]) => ({ area, seconds: Math.round(us / 1e4) / 100, share: share(us) })),
    topFunctions: [...fns.entries()]
      .sort((a, b) => b[1].us - a[1].us)
      .slice(0, 20)
      .map(([fn, f]) => ({ fn, area: f.area, seconds: Math.round(f.us / 1e4) / 100, share: share(f.us) })),
    topInclusive: [...inclusive.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 25)
      .map(([fn, us]) => ({ fn, seconds: Math.round(us / 1e4) / 100, share: share(us) })),
  };
}
