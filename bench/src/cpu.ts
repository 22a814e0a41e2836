import { readdirSync, readFileSync } from 'node:fs';

/** CPU seconds by process group, read from /proc (Linux only; empty elsewhere). */
export type CpuByGroup = Record<string, number>;

const TICKS_PER_SECOND = 100;

function group(pid: number, comm: string): string {
  if (pid === process.pid) return 'bench';
  if (comm.startsWith('postgres')) return 'postgres';
  if (comm === 'beam.smp' || comm.startsWith('erl_') || comm === 'inet_gethost' || comm === 'epmd') return 'rabbitmq';
  if (comm === 'node' || comm === 'MainThread' || comm.startsWith('node')) return 'nodeChildren';
  return 'other';
}

function snapshotRaw(): Map<number, { group: string; ticks: number }> {
  const out = new Map<number, { group: string; ticks: number }>();
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
      // fields[11], fields[12] = utime, stime (fields 14 and 15 of stat, counted after pid and comm)
      const ticks = Number(fields[11]) + Number(fields[12]);
      out.set(pid, { group: group(pid, comm), ticks });
    } catch {
      /* process ended meanwhile */
    }
  }
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
