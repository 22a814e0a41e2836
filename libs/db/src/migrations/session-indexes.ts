import type { MigrationInterface, QueryRunner } from 'typeorm';
import { dialectOf } from './column-types';

const CENTRAL_INDEX = 'IX_sync_session_site';
// (named IX_sync_…: what db upgrade recognises as sitesync's own, not a customisation)
const SITE_INDEX = 'IX_sync_run_log_session';

/**
 * The central's sessions by site and status: every `session.started` closes the site's older open
 * sessions (`SessionTracker`), and the status page reads each site's sessions. Without it both
 * walk every session of every site kept (`retention.sessionDays`, 90 days by default).
 */
export class CentralSessionIndex1733600000000 implements MigrationInterface {
  name = 'CentralSessionIndex1733600000000';

  async up(qr: QueryRunner): Promise<void> {
    await qr.query(dialectOf(qr).createIndexIfMissing('sync_session', CENTRAL_INDEX, ['id_efector', 'status']));
  }

  async down(qr: QueryRunner): Promise<void> {
    await qr.dropIndex('sync_session', CENTRAL_INDEX);
  }
}

/**
 * The site's run log by session: each confirmed batch adds to its session's sent counts and each
 * applied ack to its acked count (`run-log.ts`, `session-acks.ts`). Without it every one of those
 * updates walks the whole run log, which grows by a row a session.
 */
export class SiteRunLogIndex1733600000000 implements MigrationInterface {
  name = 'SiteRunLogIndex1733600000000';

  async up(qr: QueryRunner): Promise<void> {
    await qr.query(dialectOf(qr).createIndexIfMissing('LAB_SyncStatus', SITE_INDEX, ['session_id']));
  }

  async down(qr: QueryRunner): Promise<void> {
    await qr.dropIndex('LAB_SyncStatus', SITE_INDEX);
  }
}

const CREATED_INDEX = 'IX_sync_session_created';
const ACKED_INDEX = 'IX_sync_session_acked';

/**
 * The central's sessions by time: the supervision page lists the newest sessions and draws each
 * site's last day (by `created_at`), and each site's lag from its last complete session before
 * that day (by site, status and `acked_at`). Retention keeps 90 days of sessions: without these,
 * each page refresh walks all of them.
 */
export class CentralSessionTimeIndexes1733800000000 implements MigrationInterface {
  name = 'CentralSessionTimeIndexes1733800000000';

  async up(qr: QueryRunner): Promise<void> {
    const d = dialectOf(qr);
    await qr.query(d.createIndexIfMissing('sync_session', CREATED_INDEX, ['created_at']));
    await qr.query(d.createIndexIfMissing('sync_session', ACKED_INDEX, ['id_efector', 'status', 'acked_at']));
  }

  async down(qr: QueryRunner): Promise<void> {
    await qr.dropIndex('sync_session', ACKED_INDEX);
    await qr.dropIndex('sync_session', CREATED_INDEX);
  }
}
