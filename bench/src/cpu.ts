import { readdirSync, readFileSync } from 'node:fs';

/** CPU seconds by process group, read from /proc (Linux only; empty elsewhere). */
export type CpuByGroup = Record<string, number>;

const TICKS_PER_SECOND = 100;

/**
 * `nodeChildren` holds only the bench's own descendants (the site processes): a node process of
 * something else on the machine (a build, another test run) is `other`, as it is not measured.
 */
function group(pid: number, comm: string, parents: ReadonlyMap<number, number>): string {
  if (pid === process.pid) return 'bench';
  if (comm.startsWith('postgres')) return 'postgres';
  if (comm === 'beam.smp' || comm.startsWith('erl_') || comm === 'inet_gethost' || comm === 'epmd') return 'rabbitmq';
  for (let p = parents.get(pid); p !== undefined && p > 1; p = parents.get(p)) {
    if (p === process.pid) return 'nodeChildren';
  }
  return 'other';
}

function snapshotRaw(): Map<number, { group: string; ticks: number }> {
  const out = new Map<number, { group: string; ticks: number }>();
  const seen: Array<{ pid: number; comm: string; ticks: number }> = [];
  const parents = new Map<number, number>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    const pid = Number(e);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const fields = stat.slice(close + 2).split(' ');
      // fields[1] = ppid; fields[11], fields[12] = utime, stime (fields 4, 14 and 15 of stat,
      // counted after pid and comm)
      parents.set(pid, Number(fields[1]));
      seen.push({ pid, comm, ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      /* process ended meanwhile */
    }
  }
  for (const p of seen) out.set(p.pid, { group: group(p.pid, p.comm, parents), ticks: p.ticks });
  return out;
}

/** CPU seconds of every group but `other` (the processes that are not the bench's own or its services). */
export function cpuTotal(cpu: CpuByGroup): number {
  let total = 0;
  for (const [group, seconds] of Object.entries(cpu)) if (group !== 'other') total += seconds;
  return Math.round(total * 100) / 100;
}

/** Starts CPU accounting; the returned function gives the CPU seconds each group used since. */
export function cpuMeter(): () => CpuByGroup {
  const before = snapshotRaw();
  return () => {
    const after = snapshotRaw();
    const totals: CpuByGroup = {};
    for (const [pid, a] of after) {
      const b = before.get(pid)?.ticks ?? 0;
      const d = (a.ticks - b) / TICKS_PER_SECOND;
      if (d > 0) totals[a.group] = (totals[a.group] ?? 0) + d;
    }
    for (const k of Object.keys(totals)) totals[k] = Math.round(totals[k]! * 100) / 100;
    return totals;
  };
}

/** Peak RSS (VmHWM) and current RSS of a process, in bytes; undefined once it is gone. */
export function readMemory(pid: number): { hwm: number; rss: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0) * 1024;
    return { hwm: kb('VmHWM'), rss: kb('VmRSS') };
  } catch {
    return undefined;
  }
}
