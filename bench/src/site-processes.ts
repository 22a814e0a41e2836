/**
 * The parent side of bench/src/site-worker.ts: site agents in processes of their own, as sites run
 * in production (a site is its own machine), driven over IPC.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { SessionResult } from '@sitesync/peripheral';
import type { SiteOutcome, WorkerMessage, WorkerSetup } from './site-worker.js';

export interface Worker {
  child: ChildProcess;
  siteIds: number[];
  stderr: string;
  result?: SiteOutcome[];
}

/** Starts a site process with `setup` (it answers `ready` once its agents run). */
export function forkSiteWorker(repoRoot: string, setup: WorkerSetup): Worker {
  const child = fork(join(repoRoot, 'bench/dist/site-worker.js'), [], {
    cwd: repoRoot,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  const w: Worker = { child, siteIds: setup.sites.map((s) => s.config.siteId), stderr: '' };
  child.stderr!.on('data', (d: Buffer) => (w.stderr = (w.stderr + d.toString()).slice(-4000)));
  child.send(setup);
  return w;
}

export function waitFor<T extends WorkerMessage['type']>(
  w: Worker,
  type: T,
): Promise<Extract<WorkerMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: WorkerMessage) => {
      if (m.type === type) {
        cleanup();
        resolve(m as Extract<WorkerMessage, { type: T }>);
      } else if (m.type === 'failed') {
        cleanup();
        reject(new Error(`sites ${w.siteIds.join(',')}: ${m.error}`));
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`sites ${w.siteIds.join(',')}: process exited ${code} before '${type}': ${w.stderr}`));
    };
    const cleanup = () => {
      w.child.off('message', onMessage);
      w.child.off('exit', onExit);
    };
    w.child.on('message', onMessage);
    w.child.on('exit', onExit);
  });
}

export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(t);
}

/** One site in a process of its own, running a session when asked (the main site of the bench). */
export class SiteProcess {
  private constructor(private readonly w: Worker) {}

  static async start(repoRoot: string, setup: WorkerSetup): Promise<SiteProcess> {
    const w = forkSiteWorker(repoRoot, setup);
    try {
      await waitFor(w, 'ready');
    } catch (err) {
      await stopProcess(w.child);
      throw err;
    }
    return new SiteProcess(w);
  }

  async runSession(): Promise<{ result: SessionResult; bytes: number }> {
    const done = waitFor(this.w, 'done');
    this.w.child.send({ type: 'go' });
    const outcome = (await done).sites[0]!;
    return { result: outcome.result, bytes: outcome.bytes };
  }

  /** The site forgets what it sent (see forgetSentRows): its next session is a first sync again. */
  async reset(): Promise<void> {
    const ready = waitFor(this.w, 'ready');
    this.w.child.send({ type: 'reset' });
    await ready;
  }

  async close(): Promise<void> {
    this.w.child.send({ type: 'exit' });
    const t = setTimeout(() => void stopProcess(this.w.child), 30_000);
    await new Promise<void>((resolve) =>
      this.w.child.exitCode !== null ? resolve() : this.w.child.once('exit', () => resolve()),
    );
    clearTimeout(t);
  }
}
