import type { Database } from '@sitesync/db';
import { sitePermissions, type Topology, type ManagementApi } from '@sitesync/protocol';
import { expectedUser } from '@sitesync/central';
import { SITE_TABLE } from '@sitesync/db';

/** One site user's broker permissions against what sitesync grants a site (`sitePermissions`). */
export interface SitePermissionCheck {
  site: number;
  user: string;
  /**
   * `ok`; `different` (broader or narrower than granted); `fixed` (was different, now set);
   * `no-permissions` (none on the vhost, or no such user: it can do nothing).
   */
  state: 'ok' | 'different' | 'no-permissions' | 'fixed';
  /** What differs, e.g. `write: ^(sync\.up|sync\.dlx)$ (expected ^sync\.up$)`. */
  differences: string[];
}

/**
 * Compares every registered site user's permissions and topic permission with what sitesync grants
 * a site today, and with `fix` sets them to exactly that. A deployment upgraded from a release
 * that let sites write to the dead-letter exchange keeps that permission until it is reset: this
 * is how an operator finds and fixes it.
 */
export async function checkSitePermissions(
  db: Database,
  api: ManagementApi,
  topology: Topology,
  opts: { fix?: boolean } = {},
): Promise<SitePermissionCheck[]> {
  const rows = await db.query<{ id_efector: number; broker_user: string | null }>(
    `SELECT DISTINCT id_efector, broker_user FROM ${db.dialect.quote(SITE_TABLE)} ORDER BY id_efector`,
  );
  const out: SitePermissionCheck[] = [];
  for (const r of rows) {
    const site = Number(r.id_efector);
    const user = expectedUser({ id_efector: site, broker_user: r.broker_user });
    const want = sitePermissions(topology, site);
    const has = await api.permissions(user);
    const differences: string[] = [];
    if (has) {
      for (const k of ['configure', 'write', 'read'] as const) {
        if (has[k] !== want.permissions[k]) differences.push(`${k}: ${has[k]} (expected ${want.permissions[k]})`);
      }
      const topics = await api.topicPermissions(user);
      const onUp = topics.filter((t) => t.exchange === want.topic.exchange);
      const mismatch = onUp.length !== 1 || onUp[0]!.write !== want.topic.write || onUp[0]!.read !== want.topic.read;
      if (mismatch)
        differences.push(
          `topic permission on ${want.topic.exchange}: ${onUp.map((t) => `write ${t.write}, read ${t.read}`).join('; ') || 'none'} (expected write ${want.topic.write}, read ${want.topic.read})`,
        );
    }
    let state: SitePermissionCheck['state'] = !has ? 'no-permissions' : differences.length ? 'different' : 'ok';
    // A user without permissions (or without an account) is left alone: it cannot do anything.
    if (opts.fix && state === 'different') {
      await api.setPermissions(user, want.permissions);
      await api.setTopicPermissions(user, want.topic);
      state = 'fixed';
    }
    out.push({ site, user, state, differences });
  }
  return out;
}
