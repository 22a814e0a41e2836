import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { SiteState, SiteStatus } from './status/site-status';

/** What the scrape-time gauges read: the sites' status and the depth of each queue. */
export interface CentralMetricsSource {
  siteStatus(): Promise<SiteStatus[]>;
  /** Messages ready in each of the central's queues, dead-letter queues and site queues. */
  queueDepths(): Promise<Map<string, number>>;
}

const STATES: SiteState[] = ['ok', 'syncing', 'stale', 'error', 'disabled'];
/** One scrape reads the database and the broker once, whatever the number of gauges. */
const SCRAPE_CACHE_MS = 1000;

/** Prometheus metrics of one central agent (own registry, so several agents can share a process in tests). */
export class CentralMetrics {
  readonly registry = new Registry();
  /** Set by the agent once its database and broker are open. */
  source: CentralMetricsSource | undefined;
  private cached: { at: number; sites: Promise<SiteStatus[]>; queues: Promise<Map<string, number>> } | undefined;

  private snapshot(): { sites: Promise<SiteStatus[]>; queues: Promise<Map<string, number>> } | undefined {
    if (!this.source) return undefined;
    if (!this.cached || Date.now() - this.cached.at > SCRAPE_CACHE_MS) {
      const guard = <T>(p: Promise<T>, empty: T) => p.catch(() => empty);
      this.cached = {
        at: Date.now(),
        sites: guard(this.source.siteStatus(), []),
        queues: guard(this.source.queueDepths(), new Map<string, number>()),
      };
    }
    return this.cached;
  }

  readonly siteLag = new Gauge({
    name: 'sitesync_site_lag_seconds',
    help: 'Per site: seconds since the start of its last complete session (bounds the age of its oldest change not yet central)',
    labelNames: ['site', 'pipeline'],
    registers: [this.registry],
    collect: async () => {
      const snap = this.snapshot();
      if (!snap) return;
      this.siteLag.reset();
      for (const s of await snap.sites)
        if (s.lagSeconds !== null) this.siteLag.set({ site: String(s.site), pipeline: s.pipeline }, s.lagSeconds);
    },
  });
  readonly siteState = new Gauge({
    name: 'sitesync_site_state',
    help: 'Per site: 1 for its current state (ok, syncing, stale, error), 0 for the others',
    labelNames: ['site', 'pipeline', 'state'],
    registers: [this.registry],
    collect: async () => {
      const snap = this.snapshot();
      if (!snap) return;
      this.siteState.reset();
      for (const s of await snap.sites)
        for (const state of STATES)
          this.siteState.set({ site: String(s.site), pipeline: s.pipeline, state }, s.state === state ? 1 : 0);
    },
  });
  readonly queueMessages = new Gauge({
    name: 'sitesync_queue_messages',
    help: 'Messages ready in a sitesync queue (names ending in .dlq are dead letters)',
    labelNames: ['queue'],
    registers: [this.registry],
    collect: async () => {
      const snap = this.snapshot();
      if (!snap) return;
      this.queueMessages.reset();
      for (const [queue, n] of await snap.queues) this.queueMessages.set({ queue }, n);
    },
  });
  readonly rowsMerged = new Counter({
    name: 'sitesync_rows_merged_total',
    help: 'Header and detail rows written centrally',
    labelNames: ['site', 'kind'],
    registers: [this.registry],
  });
  readonly batches = new Counter({
    name: 'sitesync_batches_merged_total',
    help: 'Batches handled, by outcome (applied, duplicate)',
    labelNames: ['site', 'status'],
    registers: [this.registry],
  });
  readonly deadLetters = new Counter({
    name: 'sitesync_dead_letters_total',
    help: 'Messages dead-lettered by the central, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly deadLettersDropped = new Counter({
    name: 'sitesync_dead_letters_dropped_total',
    help: "Messages the central rejected but could not park because the sending site's dead-letter queue was full",
    labelNames: ['site', 'reason'],
    registers: [this.registry],
  });
  readonly retries = new Counter({
    name: 'sitesync_transient_retries_total',
    help: 'Handler retries after a transient failure',
    registers: [this.registry],
  });
  readonly mergeDuration = new Histogram({
    name: 'sitesync_merge_duration_seconds',
    help: 'Time to merge one batch in its transaction',
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly reconnects = new Counter({
    name: 'sitesync_broker_reconnects_total',
    help: 'Broker connections lost and re-established',
    registers: [this.registry],
  });
}
