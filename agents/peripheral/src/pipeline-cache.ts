import { resolvePipeline, type Database, type ResolvedPipeline } from '@sitesync/db';
import type { PeripheralConfig } from '@sitesync/protocol';
import type { SessionStatus } from './run-log';

/** A session re-reads the pipelines' table definitions at most this often (and after a failed session). */
export const PIPELINE_RECHECK_MS = 5 * 60_000;

/**
 * The configured pipelines resolved against the live schema. Cached, because catalog queries cost
 * tens of ms per table; re-resolved when older than PIPELINE_RECHECK_MS or after a session that did
 * not end ok (a changed table then gives its clear configuration error instead of a failing query).
 */
export class PipelineCache {
  private readonly resolved = new Map<string, ResolvedPipeline>();
  private resolvedAt = 0;
  private lastSessionStatus: SessionStatus = 'ok';

  constructor(
    private readonly db: Database,
    private readonly pipelines: PeripheralConfig['pipelines'],
  ) {}

  /** The pipelines in configuration order; `force` re-resolves whatever the cache holds. */
  async resolve(force = false): Promise<ResolvedPipeline[]> {
    if (force || Date.now() - this.resolvedAt > PIPELINE_RECHECK_MS || this.lastSessionStatus !== 'ok') {
      for (const [i, p] of this.pipelines.entries()) {
        const resolved = await resolvePipeline(this.db, p, `pipelines.${i}`);
        this.resolved.set(resolved.name, resolved);
      }
      this.resolvedAt = Date.now();
    }
    return this.pipelines.map((p) => this.resolved.get(p.name)!);
  }

  /** The pipeline as last resolved (undefined before the first resolution, or for an unknown name). */
  get(name: string): ResolvedPipeline | undefined {
    return this.resolved.get(name);
  }

  /** Records how a session ended: after one that did not end ok, the next session re-resolves. */
  sessionFinished(status: SessionStatus): void {
    this.lastSessionStatus = status;
  }
}
