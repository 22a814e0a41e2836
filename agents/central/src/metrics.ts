import { Counter, Histogram, Registry } from 'prom-client';

/** Prometheus metrics of one central agent (own registry, so several agents can share a process in tests). */
export class CentralMetrics {
  readonly registry = new Registry();
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
