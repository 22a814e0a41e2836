import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { SessionResult } from './sync-session';

/** Prometheus metrics of one peripheral agent (own registry, so several agents can share a process in tests). */
export class PeripheralMetrics {
  readonly registry = new Registry();
  readonly rowsSent = new Counter({
    name: 'sitesync_rows_sent_total',
    help: 'Header and detail rows published',
    labelNames: ['pipeline'],
    registers: [this.registry],
  });
  readonly batchesSent = new Counter({
    name: 'sitesync_batches_sent_total',
    help: 'Batches published and confirmed',
    labelNames: ['pipeline'],
    registers: [this.registry],
  });
  readonly bytesSent = new Counter({
    name: 'sitesync_bytes_sent_total',
    help: 'Message body bytes published (after compression)',
    registers: [this.registry],
  });
  readonly sessions = new Counter({
    name: 'sitesync_sessions_total',
    help: 'Sync sessions by outcome',
    labelNames: ['status'],
    registers: [this.registry],
  });
  readonly sessionDuration = new Histogram({
    name: 'sitesync_session_duration_seconds',
    help: 'Duration of sync sessions',
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 1800],
    registers: [this.registry],
  });
  readonly ackLatency = new Histogram({
    name: 'sitesync_ack_latency_seconds',
    help: 'Time from a central ack being published to it being applied at the site',
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry],
  });
  readonly lastSuccess = new Gauge({
    name: 'sitesync_last_successful_session_timestamp_seconds',
    help: 'Unix time of the last session the central confirmed complete',
    registers: [this.registry],
  });
  readonly deadLetters = new Counter({
    name: 'sitesync_dead_letters_total',
    help: 'Messages from the central this site could not apply and dead-lettered, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  /** Start of the last session the central confirmed complete: changes older than that are central. */
  lastCompleteStart: Date | undefined;
  readonly lag = new Gauge({
    name: 'sitesync_lag_seconds',
    help: 'Age bound of the oldest change not yet central: seconds since the start of the last complete session',
    registers: [this.registry],
    collect: () => {
      if (this.lastCompleteStart) this.lag.set((Date.now() - this.lastCompleteStart.getTime()) / 1000);
    },
  });
  readonly reconnects = new Counter({
    name: 'sitesync_broker_reconnects_total',
    help: 'Broker connections lost and re-established',
    registers: [this.registry],
  });

  batchSent(pipeline: string, _headers: number, rows: number, bytes: number): void {
    this.rowsSent.inc({ pipeline }, rows);
    this.batchesSent.inc({ pipeline });
    this.bytesSent.inc(bytes);
  }

  sessionFinished(r: SessionResult): void {
    this.sessions.inc({ status: r.status });
    this.sessionDuration.observe(r.durationMs / 1000);
    if (r.status === 'ok') {
      this.lastSuccess.setToCurrentTime();
      this.lastCompleteStart = new Date(Date.now() - r.durationMs);
    }
  }
}
