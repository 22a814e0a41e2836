import { randomBytes } from 'node:crypto';
import type { Database } from '@sitesync/db';
import {
  BrokerConnection,
  ConfigError,
  brokerUrlsOf,
  Topology,
  sitePermissions,
  siteUserName,
  type Logger,
  ManagementApi,
} from '@sitesync/protocol';
import { checkTargetKeys, registerSite, type SiteRegistration } from '@sitesync/central';
import { SITE_TABLE } from '@sitesync/db';

export interface BrokerAccess {
  /** The central's AMQP URL, or its cluster's nodes (their vhost is the site's). */
  amqpUrl: string | readonly string[];
  prefix: string;
  deliveryLimit: number;
  managementUrl?: string;
  socketOptions?: Record<string, unknown>;
}

export interface ProvisionedSite {
  registration: Required<SiteRegistration>;
  brokerUser: string;
  /** The site user's broker password (generated unless given). */
  password: string;
  /** A starting peripheral config: fill in the site database URL and the pipelines. */
  peripheralConfig: Record<string, unknown>;
}

/**
 * Onboards a site end to end: its broker user (may publish only `<site>.*` on the up exchange and read
 * only its own queue), its queues, and its `EstadoSyncGeneral` row. The broker steps are idempotent
 * and run before the row is written, so a failure part way is mended by running it again.
 */
export async function provisionSite(
  db: Database,
  reg: SiteRegistration,
  broker: BrokerAccess,
  opts: { password?: string; log: Logger },
): Promise<ProvisionedSite> {
  const pipeline = reg.pipeline ?? 'main';
  const taken = await db.query(
    `SELECT id_efector FROM ${db.dialect.quote(SITE_TABLE)} WHERE id_efector = ? AND pipeline = ?`,
    [reg.siteId, pipeline],
  );
  if (taken.length) throw new ConfigError(`site ${reg.siteId} pipeline ${pipeline} already exists`, 'siteId');
  // Before the broker steps, so a refused site leaves nothing behind.
  await checkTargetKeys(db, reg);

  const user = reg.brokerUser ?? siteUserName(reg.siteId);
  const password = opts.password ?? randomBytes(18).toString('base64url');
  const topology = new Topology({ prefix: broker.prefix, deliveryLimit: broker.deliveryLimit });
  const amqpUrls = brokerUrlsOf(broker.amqpUrl);
  const api = managementApiOf(broker);
  const perms = sitePermissions(topology, reg.siteId);
  await api.putUser(user, password);
  await api.setPermissions(user, perms.permissions);
  await api.setTopicPermissions(user, perms.topic);

  const conn = new BrokerConnection({
    url: broker.amqpUrl,
    name: 'syncctl sites add',
    log: opts.log,
    ...(broker.socketOptions ? { socketOptions: broker.socketOptions } : {}),
  });
  await conn.connect();
  try {
    await conn.withChannel((ch) => topology.declareSite(ch, reg.siteId));
  } finally {
    await conn.close();
  }

  const registration = await registerSite(db, { ...reg, brokerUser: user });
  // The site reaches the same nodes as the central, with its own user.
  const siteUrls = amqpUrls.map((u) => {
    const url = new URL(u);
    url.username = encodeURIComponent(user);
    url.password = encodeURIComponent(password);
    return url.toString();
  });
  return {
    registration,
    brokerUser: user,
    password,
    peripheralConfig: {
      siteId: reg.siteId,
      amqp: {
        url: siteUrls.length === 1 ? siteUrls[0] : siteUrls,
        ...(broker.prefix ? { prefix: broker.prefix } : {}),
      },
      db: { url: '<the site database URL, e.g. mssql://user:password@host:1433/database>' },
      pipelines: [{ file: 'hashing.json' }],
      schedule: { intervalSeconds: 300 },
      httpPort: 9464,
    },
  };
}

/** The broker's management API: `managementUrl`, else beside the first node's AMQP URL. */
export function managementApiOf(broker: BrokerAccess): ManagementApi {
  return ManagementApi.fromAmqpUrl(brokerUrlsOf(broker.amqpUrl)[0]!, broker.managementUrl);
}
