import { InvalidArgumentError } from 'commander';
import { BrokerConnection, Topology, tlsSocketOptions } from '@sitesync/protocol';
import { SiteNotConnectedError, SiteReplyError, type SiteRequesterOptions } from '../ops/site-requests';
import { syncctlLog, type SyncctlContext } from './context';

/** The options of the commands that talk to a site through the broker. */
export interface SiteLinkOptions {
  site: number;
  timeout: string;
  amqp?: string;
  prefix?: string;
}

/** Exit code of a command that could not get a usable answer from a site (1 is "differences", 2 a usage or config error). */
export const EXIT_SITE_UNREACHABLE = 3;

/** Argument parser: `--timeout` in seconds. */
export function timeoutSeconds(v: string): string {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 3600)
    throw new InvalidArgumentError('a timeout is a number of seconds, more than 0 and at most 3600');
  return v;
}

/**
 * Connects to the broker as the central (its config, or --amqp / --prefix), runs `fn` with what a
 * SiteRequester needs, and turns a site that is not connected or answers badly into a message on
 * stderr and exit code 3.
 */
export async function withSiteLink<T>(
  ctx: SyncctlContext,
  opts: SiteLinkOptions,
  fn: (link: Omit<SiteRequesterOptions, 'siteUser'>) => Promise<T>,
): Promise<T | undefined> {
  // The central config gives what the options leave out, and its TLS files in any case.
  const cfg = opts.amqp && opts.prefix !== undefined ? ctx.optionalCentralConfig() : ctx.centralConfig();
  const broker = new BrokerConnection({
    url: opts.amqp ?? cfg!.amqp.url,
    name: `syncctl (site ${opts.site})`,
    log: syncctlLog('warn'),
    ...(cfg ? { socketOptions: tlsSocketOptions(cfg.amqp) } : {}),
  });
  await broker.connect();
  try {
    return await fn({
      broker,
      topology: new Topology({ prefix: opts.prefix ?? cfg!.amqp.prefix }),
      siteId: opts.site,
      timeoutMs: Math.round(Number(opts.timeout) * 1000),
    });
  } catch (err) {
    if (err instanceof SiteNotConnectedError || err instanceof SiteReplyError) {
      process.stderr.write(`syncctl: ${err.message}\n`);
      process.exitCode = EXIT_SITE_UNREACHABLE;
      return undefined;
    }
    throw err;
  } finally {
    await broker.close();
  }
}
