import { type Command } from 'commander';
import { ConfigError } from '@sitesync/protocol';
import { keyFromArgument, resyncSite, type ResyncResult, type ResyncScope } from '../ops/broker-resync';
import { siteId, writeJson, type SyncctlContext } from './context';
import { timeoutSeconds, withSiteLink, type SiteLinkOptions } from './site-link';

interface ResyncCommandOptions extends SiteLinkOptions {
  pipeline?: string;
  keys?: string[];
  differences?: boolean;
  all?: boolean;
  now?: boolean;
  json?: boolean;
}

/** Registers `resync`: a site sends headers again that the central holds wrong (or may). */
export function registerResyncCommand(program: Command, ctx: SyncctlContext): void {
  program
    .command('resync')
    .description(
      'make a site send headers again, through the broker: it forgets what the central acknowledged for them, and its next session (or one started at once with --now) sends each as it is at the site, or a deletion where the site no longer has it. Give exactly one of --keys, --differences, --all. Exit code 0 done, 1 the session failed, 2 usage or configuration error, 3 the site is not connected or its answer was refused',
    )
    .requiredOption('--site <id>', 'the site (efector id)', siteId)
    .option('--pipeline <name>', "only this pipeline (default: every pipeline of the site's EstadoSyncGeneral rows)")
    .option('--keys <key...>', 'header keys as verify prints them (["7"]), or a plain value for a one-column key (7)')
    .option('--differences', 'every key a broker verify finds missing, extra or different centrally')
    .option('--all', 'every header the site has sent')
    .option('--now', 'start a session at once and wait for it (up to --timeout)')
    .option('--timeout <seconds>', 'how long to wait for each answer of the site', timeoutSeconds, '30')
    .option('--amqp <url>', 'broker URL (default: the central config)')
    .option('--prefix <prefix>', 'topology prefix (default: the central config)')
    .option('--json', 'machine-readable output')
    .action(async (opts: ResyncCommandOptions) => {
      const scope = scopeOf(opts);
      const result = await withSiteLink(ctx, opts, (link) =>
        ctx.withCentralDb((central) => resyncSite(central, link, opts.pipeline, scope, !!opts.now)),
      );
      if (result) writeResult(opts, result);
    });
}

function scopeOf(opts: ResyncCommandOptions): ResyncScope {
  const given = [opts.keys && '--keys', opts.differences && '--differences', opts.all && '--all'].filter(Boolean);
  if (given.length !== 1) {
    throw new ConfigError(
      `resync needs exactly one of --keys, --differences, --all (${given.length ? `got ${given.join(' and ')}` : 'got none'})`,
      'resync',
    );
  }
  if (opts.keys) {
    try {
      return { kind: 'keys', keys: opts.keys.map(keyFromArgument) };
    } catch (err) {
      throw new ConfigError(`--keys: ${(err as Error).message}`, 'keys');
    }
  }
  return opts.all ? { kind: 'all' } : { kind: 'differences' };
}

function writeResult(opts: ResyncCommandOptions, r: ResyncResult): void {
  if (r.session?.state === 'failed' || (r.session?.state === 'finished' && r.session.status !== 'ok'))
    process.exitCode = 1;
  if (opts.json) {
    writeJson(r);
    return;
  }
  const out = (line: string) => process.stdout.write(`${line}\n`);
  for (const v of r.verification ?? [])
    out(`site ${opts.site}, ${v.pipeline}: verify found ${v.differences} header(s) differing`);
  if (r.marked.length === 0) {
    out(`site ${opts.site}: nothing to resync`);
    return;
  }
  for (const m of r.marked) out(`site ${opts.site}, ${m.pipeline}: ${m.keys} key(s) marked to be sent again`);
  const s = r.session;
  if (!s) out(`site ${opts.site}: they go with its next session (add --now to start one at once)`);
  else if (s.state === 'started')
    out(`site ${opts.site}: session started; not finished within --timeout (see syncctl status)`);
  else if (s.state === 'failed') out(`site ${opts.site}: the session could not start: ${s.error ?? '?'}`);
  else
    out(
      `site ${opts.site}: session ${s.sessionId} ${s.status}: ${s.headers ?? 0} header(s), ${s.deletions ?? 0} deletion(s) sent` +
        (s.error ? ` (${s.error})` : ''),
    );
}
