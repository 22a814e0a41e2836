import { createHash, randomBytes } from 'node:crypto';
import { CENTRAL_INTERVENTION_BINDINGS, CENTRAL_SYNC_BINDINGS, type Topology } from './topology';

/**
 * RabbitMQ definitions (the JSON `load_definitions` reads at boot and the management API imports)
 * generated from the topology in code, so `deploy/rabbitmq/definitions.json` cannot drift from it.
 */

/** Broker user name of a site unless configured otherwise. */
export function siteUserName(siteId: number): string {
  return `site-${siteId}`;
}

/** `rabbit_password_hashing_sha256`: base64(salt(4) ++ sha256(salt ++ utf8(password))). */
export function rabbitPasswordHash(password: string, salt: Buffer = randomBytes(4)): string {
  const digest = createHash('sha256')
    .update(Buffer.concat([salt, Buffer.from(password, 'utf8')]))
    .digest();
  return Buffer.concat([salt, digest]).toString('base64');
}

function literal(name: string): string {
  return name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export interface Permissions {
  configure: string;
  write: string;
  read: string;
}

export interface TopicPermission {
  exchange: string;
  write: string;
  read: string;
}

/**
 * What a site's broker user may do: configure nothing (the central provisions its queues), write
 * only to the up exchange, read only its own queue; and on the up exchange publish only routing keys
 * that start with its own id. It may not write to the dead-letter exchange (a direct exchange, which
 * topic permissions do not cover): what it cannot apply it rejects, and its queue's own dead-letter
 * arguments park it. Dead letters are made by the central or the broker only.
 */
export function sitePermissions(t: Topology, siteId: number): { permissions: Permissions; topic: TopicPermission } {
  return {
    permissions: {
      configure: '^$',
      write: `^${literal(t.up)}$`,
      read: `^${literal(t.siteQueue(siteId))}$`,
    },
    topic: { exchange: t.up, write: `^${siteId}\\.`, read: '^$' },
  };
}

/** The central's user: everything under the topology's prefix. */
export function centralPermissions(t: Topology): Permissions {
  const all = `^${literal(t.prefix)}.*`;
  return { configure: all, write: all, read: all };
}

export interface DefinitionsUser {
  name: string;
  /** A `rabbit_password_hashing_sha256` hash (see rabbitPasswordHash). */
  passwordHash: string;
  tags?: string[];
}

export interface DefinitionsOptions {
  vhost: string;
  /** The central agent's user (also reads queue depths through the management API: tag `monitoring`). */
  central: DefinitionsUser;
  /** Operators' user for the management UI and `syncctl sites add` (tag `administrator`). */
  admin?: DefinitionsUser;
  sites: Array<{ siteId: number; user: DefinitionsUser }>;
}

export interface BrokerDefinitions {
  users: Array<{ name: string; password_hash: string; hashing_algorithm: string; tags: string[] }>;
  vhosts: Array<{ name: string }>;
  permissions: Array<{ user: string; vhost: string } & Permissions>;
  topic_permissions: Array<{ user: string; vhost: string } & TopicPermission>;
  policies: Array<{
    vhost: string;
    name: string;
    pattern: string;
    'apply-to': string;
    priority: number;
    definition: Record<string, unknown>;
  }>;
  exchanges: Array<{
    name: string;
    vhost: string;
    type: string;
    durable: boolean;
    auto_delete: boolean;
    internal: boolean;
    arguments: Record<string, unknown>;
  }>;
  queues: Array<{
    name: string;
    vhost: string;
    durable: boolean;
    auto_delete: boolean;
    arguments: Record<string, unknown>;
  }>;
  bindings: Array<{
    source: string;
    vhost: string;
    destination: string;
    destination_type: 'queue';
    routing_key: string;
    arguments: Record<string, unknown>;
  }>;
}

/** Dead letters kept before the broker refuses more (the source queue then holds them: nothing is dropped). */
export const DEAD_LETTER_MAX_BYTES = 1024 * 1024 * 1024;

/** The whole broker setup of one sitesync environment: exchanges, queues, bindings, policies, users. */
export function brokerDefinitions(t: Topology, o: DefinitionsOptions): BrokerDefinitions {
  const vhost = o.vhost;
  const d: BrokerDefinitions = {
    users: [],
    vhosts: [{ name: vhost }],
    permissions: [],
    topic_permissions: [],
    policies: [
      {
        vhost,
        name: 'sitesync-dead-letter-limit',
        pattern: `^${literal(t.prefix)}.*\\.dlq$`,
        'apply-to': 'queues',
        priority: 0,
        definition: { 'max-length-bytes': DEAD_LETTER_MAX_BYTES, overflow: 'reject-publish' },
      },
    ],
    exchanges: [
      [t.up, 'topic'],
      [t.down, 'topic'],
      [t.dlx, 'direct'],
    ].map(([name, type]) => ({
      name: name!,
      vhost,
      type: type!,
      durable: true,
      auto_delete: false,
      internal: false,
      arguments: {},
    })),
    queues: [],
    bindings: [],
  };
  const user = (u: DefinitionsUser, tags: string[]) => {
    d.users.push({
      name: u.name,
      password_hash: u.passwordHash,
      hashing_algorithm: 'rabbit_password_hashing_sha256',
      tags: u.tags ?? tags,
    });
  };
  const bind = (source: string, destination: string, key: string) =>
    d.bindings.push({ source, vhost, destination, destination_type: 'queue', routing_key: key, arguments: {} });
  const workQueue = (queue: string, extra: Record<string, unknown> = {}) => {
    const dlq = t.deadLetterQueue(queue);
    d.queues.push({
      name: queue,
      vhost,
      durable: true,
      auto_delete: false,
      arguments: t.workQueueArguments(queue, extra),
    });
    d.queues.push({ name: dlq, vhost, durable: true, auto_delete: false, arguments: t.deadLetterQueueArguments() });
    bind(t.dlx, dlq, queue);
  };

  user(o.central, ['monitoring']);
  d.permissions.push({ user: o.central.name, vhost, ...centralPermissions(t) });
  if (o.admin) {
    user(o.admin, ['administrator']);
    d.permissions.push({ user: o.admin.name, vhost, configure: '.*', write: '.*', read: '.*' });
  }
  workQueue(t.centralSyncQueue);
  for (const key of CENTRAL_SYNC_BINDINGS) bind(t.up, t.centralSyncQueue, key);
  workQueue(t.centralInterventionQueue);
  for (const key of CENTRAL_INTERVENTION_BINDINGS) bind(t.up, t.centralInterventionQueue, key);
  for (const s of [...o.sites].sort((a, b) => a.siteId - b.siteId)) {
    user(s.user, []);
    const p = sitePermissions(t, s.siteId);
    d.permissions.push({ user: s.user.name, vhost, ...p.permissions });
    d.topic_permissions.push({ user: s.user.name, vhost, ...p.topic });
    const q = t.siteQueue(s.siteId);
    workQueue(q, t.siteQueueExtraArguments());
    bind(t.down, q, t.siteRoutingPattern(s.siteId));
    const rejects = t.siteRejectsRoute(s.siteId);
    d.queues.push({
      name: t.deadLetterQueue(rejects),
      vhost,
      durable: true,
      auto_delete: false,
      arguments: t.siteRejectsQueueArguments(),
    });
    bind(t.dlx, t.deadLetterQueue(rejects), rejects);
  }
  return d;
}
