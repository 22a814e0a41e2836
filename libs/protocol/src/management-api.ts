import { brokerUserOf } from './broker-failures';
import type { BrokerDefinitions, Permissions, TopicPermission } from './broker-definitions';
import { ConfigError, TransientError } from './errors';

/** Default port of the RabbitMQ management plugin. */
export const MANAGEMENT_PORT = 15672;

export interface QueueInfo {
  name: string;
  messages: number;
  consumers: number;
}

/** A non-2xx answer of the management API. */
export class ManagementApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'ManagementApiError';
  }
}

/**
 * The RabbitMQ management HTTP API, for what AMQP cannot do: users, permissions, topic permissions,
 * definitions, and queue depths without touching the queues.
 */
export class ManagementApi {
  private readonly auth: string;

  constructor(
    readonly baseUrl: string,
    user: string,
    password: string,
    readonly vhost: string,
  ) {
    this.auth = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  }

  /**
   * From the AMQP URL the agents use: same host and credentials, port 15672 (or `managementUrl`,
   * whose own credentials win when it has some); the vhost is the AMQP URL's path.
   */
  static fromAmqpUrl(amqpUrl: string, managementUrl?: string): ManagementApi {
    let amqp: URL;
    try {
      amqp = new URL(amqpUrl);
    } catch {
      throw new ConfigError(`not a broker URL: ${amqpUrl.replace(/\/\/[^@]*@/, '//***@')}`, 'amqp.url');
    }
    const vhost = amqp.pathname.length > 1 ? decodeURIComponent(amqp.pathname.slice(1)) : '/';
    const m = managementUrl
      ? new URL(managementUrl)
      : new URL(`${amqp.protocol === 'amqps:' ? 'https' : 'http'}://${amqp.hostname}:${MANAGEMENT_PORT}`);
    const user = decodeURIComponent(m.username) || brokerUserOf(amqpUrl)!;
    const password = decodeURIComponent(m.password || amqp.password || 'guest');
    m.username = '';
    m.password = '';
    return new ManagementApi(m.toString().replace(/\/$/, ''), user, password, vhost);
  }

  private v(vhost = this.vhost): string {
    return encodeURIComponent(vhost);
  }

  async request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}/api${path}`, {
        method,
        headers: { authorization: this.auth, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (cause) {
      throw new TransientError(
        `RabbitMQ management API at ${this.baseUrl} unreachable (is the rabbitmq_management plugin on?): ${(cause as Error).message}`,
        'MANAGEMENT_UNREACHABLE',
        { cause },
      );
    }
    const text = await res.text();
    if (!res.ok) {
      throw new ManagementApiError(
        `RabbitMQ management API ${method} ${path}: ${res.status} ${text.slice(0, 300)}`,
        res.status,
      );
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** Every queue of the vhost with its depth and consumer count (one request). */
  async queues(vhost = this.vhost): Promise<Map<string, QueueInfo>> {
    const list = await this.request<Array<{ name: string; messages?: number; consumers?: number }>>(
      'GET',
      `/queues/${this.v(vhost)}?columns=name,messages,consumers`,
    );
    return new Map(list.map((q) => [q.name, { name: q.name, messages: q.messages ?? 0, consumers: q.consumers ?? 0 }]));
  }

  async putUser(name: string, password: string, tags: string[] = []): Promise<void> {
    await this.request('PUT', `/users/${encodeURIComponent(name)}`, { password, tags: tags.join(',') });
  }

  async deleteUser(name: string): Promise<void> {
    await this.request('DELETE', `/users/${encodeURIComponent(name)}`).catch((err: unknown) => {
      if (!(err instanceof ManagementApiError && err.status === 404)) throw err;
    });
  }

  /** True when the broker has a user of this name. */
  async userExists(name: string): Promise<boolean> {
    return this.request('GET', `/users/${encodeURIComponent(name)}`).then(
      () => true,
      (err: unknown) => {
        if (err instanceof ManagementApiError && err.status === 404) return false;
        throw err;
      },
    );
  }

  /** Deletes a queue with whatever it holds; a queue that does not exist is not an error. */
  async deleteQueue(name: string, vhost = this.vhost): Promise<void> {
    await this.request('DELETE', `/queues/${this.v(vhost)}/${encodeURIComponent(name)}`).catch((err: unknown) => {
      if (!(err instanceof ManagementApiError && err.status === 404)) throw err;
    });
  }

  /** A user's permissions on the vhost; undefined when it has none (or does not exist). */
  async permissions(user: string, vhost = this.vhost): Promise<Permissions | undefined> {
    return this.request<Permissions>('GET', `/permissions/${this.v(vhost)}/${encodeURIComponent(user)}`).catch(
      (err: unknown) => {
        if (err instanceof ManagementApiError && err.status === 404) return undefined;
        throw err;
      },
    );
  }

  /** A user's topic permissions on the vhost, one per exchange. */
  async topicPermissions(user: string, vhost = this.vhost): Promise<TopicPermission[]> {
    return this.request<TopicPermission[]>(
      'GET',
      `/topic-permissions/${this.v(vhost)}/${encodeURIComponent(user)}`,
    ).catch((err: unknown) => {
      if (err instanceof ManagementApiError && err.status === 404) return [];
      throw err;
    });
  }

  async setPermissions(user: string, p: Permissions, vhost = this.vhost): Promise<void> {
    await this.request('PUT', `/permissions/${this.v(vhost)}/${encodeURIComponent(user)}`, p);
  }

  async setTopicPermissions(user: string, p: TopicPermission, vhost = this.vhost): Promise<void> {
    await this.request('PUT', `/topic-permissions/${this.v(vhost)}/${encodeURIComponent(user)}`, p);
  }

  async importDefinitions(d: BrokerDefinitions): Promise<void> {
    await this.request('POST', '/definitions', d);
  }

  async deleteVhost(vhost: string): Promise<void> {
    await this.request('DELETE', `/vhosts/${encodeURIComponent(vhost)}`).catch((err: unknown) => {
      if (!(err instanceof ManagementApiError && err.status === 404)) throw err;
    });
  }
}
