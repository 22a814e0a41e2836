import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { Database, SESSION_TABLE } from '@sitesync/db';
import { readSiteActivity, registerSite } from '@sitesync/central';

/**
 * The activity chart's figures at a fixed clock, from `sync_session` rows written as the session
 * tracker writes them (the browser suite checks them against sessions real agents ran).
 */
describe('site activity over the last day', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function centralDb(): Promise<Database> {
    const dir = mkdtempSync(join(tmpdir(), 'sitesync-activity-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const db = await Database.open(`sqlite:${join(dir, 'central.db')}`, { role: 'central' });
    cleanup.push(() => db.close());
    return db;
  }

  async function addSession(
    db: Database,
    s: {
      id: string;
      site: number;
      status: string;
      started: string;
      acked?: string;
      headers?: number;
      details?: number;
    },
  ): Promise<void> {
    const t = (iso: string | undefined) => (iso === undefined ? null : db.dialect.time(new Date(iso)));
    const rows = (s.headers ?? 0) + (s.details ?? 0);
    await db.execute(
      `INSERT INTO ${SESSION_TABLE} (session_id, id_efector, version, site_started_at, site_finished_at, expected_batches, ` +
        `expected_headers, expected_details, expected_deletions, status, acked_at, created_at) ` +
        `VALUES (?, ?, 1, ?, ?, ?, ?, ?, 0, ?, ?, ?)`,
      [
        s.id,
        s.site,
        t(s.started),
        t(s.started),
        rows ? 1 : 0,
        s.headers ?? 0,
        s.details ?? 0,
        s.status,
        t(s.acked),
        t(s.started),
      ],
    );
  }

  it('draws the lag rising between acks and dropping at each complete one, from the last complete session before the window', async () => {
    const db = await centralDb();
    for (const siteId of [7, 8]) {
      await registerSite(db, { siteId, pipeline: 'lab', headerTable: 'central_orders', brokerUser: 'guest' });
    }
    await addSession(db, {
      id: 'a',
      site: 7,
      status: 'complete',
      started: '2026-11-30T10:00:00Z',
      acked: '2026-11-30T10:05:00Z',
      headers: 1,
    });
    await addSession(db, {
      id: 'b',
      site: 7,
      status: 'complete',
      started: '2026-11-30T18:00:00Z',
      acked: '2026-11-30T18:10:00Z',
      headers: 3,
      details: 6,
    });
    await addSession(db, {
      id: 'c',
      site: 7,
      status: 'incomplete',
      started: '2026-12-01T06:00:00Z',
      acked: '2026-12-01T06:02:00Z',
      headers: 1,
    });
    await addSession(db, {
      id: 'd',
      site: 7,
      status: 'complete',
      started: '2026-12-01T11:00:00Z',
      acked: '2026-12-01T11:01:00Z',
    });
    // What a site sent is shown escaped, never as markup.
    await addSession(db, {
      id: '"><img src=x onerror=alert(1)>',
      site: 7,
      status: '<script>x</script>',
      started: '2026-12-01T11:30:00Z',
    });

    const [seven, eight] = await readSiteActivity(db, { now: new Date('2026-12-01T12:00:00Z'), hours: 24 });
    expect(seven!.sessions.map((s) => [s.sessionId, s.rows, s.status])).toEqual([
      ['b', 9, 'complete'],
      ['c', 1, 'incomplete'],
      ['d', 0, 'complete'],
      ['"><img src=x onerror=alert(1)>', 0, '<script>x</script>'],
    ]);
    expect(seven!.lag).toEqual([
      { at: '2026-11-30T12:00:00.000Z', lagSeconds: 2 * 3600 },
      { at: '2026-11-30T18:10:00.000Z', lagSeconds: 8 * 3600 + 600 },
      { at: '2026-11-30T18:10:00.000Z', lagSeconds: 600, sessionId: 'b' },
      { at: '2026-12-01T11:01:00.000Z', lagSeconds: 17 * 3600 + 60 },
      { at: '2026-12-01T11:01:00.000Z', lagSeconds: 60, sessionId: 'd' },
      { at: '2026-12-01T12:00:00.000Z', lagSeconds: 3600 },
    ]);
    const svg = seven!.svg;
    expect(svg).toContain(
      'Site 7, last 24 hours: 4 sessions, 10 rows (at most 9 in one), 1 incomplete or abandoned; lag now 60m, at most 17h.',
    );
    expect(svg.match(/<rect class="bar /g)).toHaveLength(4);
    expect(svg.match(/<circle class="ack"/g)).toHaveLength(2);
    expect(svg).not.toMatch(/<img|<script/);
    expect(svg).toContain('data-session="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"');

    expect(eight!.sessions).toEqual([]);
    expect(eight!.lag).toEqual([]);
    expect(eight!.svg).toContain('No sessions in the last 24 hours');
    expect(eight!.svg).toContain('Site 8, last 24 hours: 0 sessions; never synced completely.');
  });
});
