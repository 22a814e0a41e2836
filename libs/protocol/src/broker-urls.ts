/**
 * `amqp.url`: one broker, or the nodes of a RabbitMQ cluster. In a config file a string or a
 * non-empty array of strings; in `SYNC_AMQP_URL` one URL or several separated by commas.
 */
import { z } from 'zod';

const BROKER_URL_FORM = 'amqp://[user:password@]host[:port][/vhost] or amqps://…';

/** A comma that starts another broker URL: a comma inside a password (legal in a URL) is not one. */
const URL_SEPARATOR = /\s*,\s*(?=amqps?:\/\/)/i;

/** The URL with its password replaced by `***`, for logs and messages. */
export function maskBrokerUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}

/** What is wrong with `url` as a broker URL, or undefined when it is one. */
export function brokerUrlProblem(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `not a URL: ${JSON.stringify(maskBrokerUrl(url))} (expected ${BROKER_URL_FORM})`;
  }
  if (u.protocol !== 'amqp:' && u.protocol !== 'amqps:')
    return `${JSON.stringify(maskBrokerUrl(url))} is not an amqp:// or amqps:// URL (expected ${BROKER_URL_FORM})`;
  if (!u.hostname) return `${JSON.stringify(maskBrokerUrl(url))} names no host (expected ${BROKER_URL_FORM})`;
  return undefined;
}

/** `amqp.url` as a list: a string is one node. */
export function brokerUrlsOf(url: string | readonly string[]): readonly string[] {
  return typeof url === 'string' ? [url] : url;
}

/**
 * `SYNC_AMQP_URL`'s text: several URLs separated by commas become an array, one stays a string
 * (as before). Splits only where a comma is followed by `amqp://` or `amqps://`.
 */
export function splitBrokerUrls(text: string): string | string[] {
  const parts = text
    .trim()
    .split(URL_SEPARATOR)
    .map((p) => p.trim())
    .filter(Boolean);
  return parts.length === 1 ? parts[0]! : parts;
}

/** `amqp.url` of a config: one broker URL or a non-empty list of them (cluster nodes), each checked. */
export const BrokerUrlsSchema = z
  .union([z.string().min(1), z.array(z.string().min(1)).min(1, 'a list of broker URLs needs at least one')])
  .superRefine((value, ctx) => {
    const urls = brokerUrlsOf(value);
    const seen = new Set<string>();
    let first: URL | undefined;
    urls.forEach((url, i) => {
      const path = typeof value === 'string' ? [] : [i];
      const problem = brokerUrlProblem(url);
      if (problem) return ctx.addIssue({ code: 'custom', message: problem, path });
      if (seen.has(url))
        return ctx.addIssue({ code: 'custom', message: `${JSON.stringify(maskBrokerUrl(url))} is listed twice`, path });
      seen.add(url);
      // The nodes of one cluster: the agent publishes with user_id = the user, so every URL must log in as it.
      const u = new URL(url);
      first ??= u;
      if (u.username !== first.username || u.pathname !== first.pathname)
        ctx.addIssue({
          code: 'custom',
          message: `${JSON.stringify(maskBrokerUrl(url))} names another user or virtual host than the first URL: the nodes of one cluster are reached with the same user and virtual host`,
          path,
        });
    });
  });

/**
 * `amqp.urls` of a config: made from `amqp.url` by parsing. Accepted back only as parsing made it
 * (a parsed config given to the parser again); a file sets `amqp.url`.
 */
export const DerivedBrokerUrlsSchema = z.array(z.string()).readonly().optional();

/** An `amqp` config section after parsing: `url` is the first node, `urls` all of them. */
export function withBrokerUrls<T extends { url: string | readonly string[]; urls?: readonly string[] | undefined }>(
  amqp: T,
  ctx: z.RefinementCtx,
): Omit<T, 'url' | 'urls'> & { url: string; urls: readonly string[] } {
  let urls = brokerUrlsOf(amqp.url);
  if (amqp.urls !== undefined) {
    // A parsed config: `url` is the first of `urls`.
    if (amqp.urls[0] !== urls[0] || (urls.length > 1 && JSON.stringify(amqp.urls) !== JSON.stringify(urls)))
      ctx.addIssue({ code: 'custom', message: 'is made from amqp.url: set amqp.url instead', path: ['urls'] });
    amqp.urls.forEach((url, i) => {
      const problem = brokerUrlProblem(url);
      if (problem) ctx.addIssue({ code: 'custom', message: problem, path: ['urls', i] });
    });
    urls = amqp.urls;
  }
  return { ...amqp, url: urls[0]!, urls };
}
