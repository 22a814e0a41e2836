import { readFileSync } from 'node:fs';
import { type Command } from 'commander';
import { ConfigError, HashingFileSchema, configErrorFrom } from '@sitesync/protocol';
import { Database, resolvePipeline, type ResolvedPipeline } from '@sitesync/db';
import { verifySite, type PipelineVerification } from '../ops/verify';
import { verifySiteOverBroker, type BrokerPipelineVerification } from '../ops/broker-verify';
import { positiveInt, siteId, writeJson, writeTable, type SyncctlContext } from './context';
import { timeoutSeconds, withSiteLink, type SiteLinkOptions } from './site-link';

interface VerifyCommandOptions extends SiteLinkOptions {
  site: number;
  siteDb?: string;
  pipelineFile?: string[];
  pipeline?: string;
  maxKeys: string;
  json?: boolean;
}

/** Registers `verify`: a site's data against the central's, per pipeline, over the broker or straight from its database. */
export function registerVerifyCommand(program: Command, ctx: SyncctlContext): void {
  program
    .command('verify')
    .description(
      "reconcile a site with the central: per pipeline, counts and a digest at both ends, and the keys that differ. By default the site's agent answers through the broker (digests of key ranges; only differing ranges are narrowed); with --site-db syncctl reads the site's database itself. Exit code 0 identical, 1 differences, 2 usage or configuration error, 3 the site is not connected or its answer was refused",
    )
    .requiredOption('--site <id>', 'the site (efector id)', siteId)
    .option(
      '--pipeline <name>',
      "verify only this pipeline (default: every pipeline of the site's EstadoSyncGeneral rows)",
    )
    .option(
      '--timeout <seconds>',
      'how long to wait for each answer of the site (over the broker)',
      timeoutSeconds,
      '30',
    )
    .option('--amqp <url>', 'broker URL (default: the central config)')
    .option('--prefix <prefix>', 'topology prefix (default: the central config)')
    .option('--site-db <url>', "read the site's database directly instead of asking its agent (needs --pipeline-file)")
    .option('--pipeline-file <file...>', "with --site-db: the site's hashing file(s), as in its peripheral config")
    .option('--max-keys <n>', 'keys listed per kind of difference', '50')
    .option('--json', 'machine-readable output')
    .action(async (opts: VerifyCommandOptions) => {
      const maxKeys = positiveInt(opts.maxKeys, '--max-keys');
      if (opts.siteDb === undefined) {
        if (opts.pipelineFile)
          throw new ConfigError(
            '--pipeline-file goes with --site-db (over the broker the site uses its own)',
            'pipeline-file',
          );
        const report = await withSiteLink(ctx, opts, (link) =>
          ctx.withCentralDb((central) => verifySiteOverBroker(central, link, opts.pipeline, { maxKeys }), READ_ONLY),
        );
        if (report) writeReport(opts, report);
        return;
      }
      if (!opts.pipelineFile?.length)
        throw new ConfigError("--site-db needs --pipeline-file: the site's hashing file(s)", 'pipeline-file');
      const siteDb = await Database.open(opts.siteDb, { role: 'site', urlSource: '--site-db', ...READ_ONLY });
      try {
        const pipelines = (await readPipelines(siteDb, opts.pipelineFile)).filter(
          (p) => opts.pipeline === undefined || p.name === opts.pipeline,
        );
        if (pipelines.length === 0)
          throw new ConfigError(`no pipeline ${opts.pipeline} in --pipeline-file`, 'pipeline');
        const report = await ctx.withCentralDb(
          (central) => verifySite(siteDb, central, opts.site, pipelines, { maxKeys }),
          READ_ONLY,
        );
        writeReport(opts, report);
      } finally {
        await siteDb.close();
      }
    });
}

/** Verify only reads: both databases are opened so that nothing can be written through them. */
const READ_ONLY = { readOnly: true } as const;

/** The hashing files, resolved against the site database as the site agent would. */
async function readPipelines(siteDb: Database, files: readonly string[]): Promise<ResolvedPipeline[]> {
  const pipelines: ResolvedPipeline[] = [];
  for (const [i, file] of files.entries()) {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, 'utf8'));
    } catch (cause) {
      throw new ConfigError(`--pipeline-file ${file}: ${(cause as Error).message}`, 'pipeline-file', { cause });
    }
    const parsed = HashingFileSchema.safeParse(json);
    if (!parsed.success) throw configErrorFrom(parsed.error, `${file}: `);
    pipelines.push(await resolvePipeline(siteDb, parsed.data, `pipelines.${i}`));
  }
  return pipelines;
}

/** The report; exit code 1 when anything differs. */
export function writeReport(
  opts: Pick<VerifyCommandOptions, 'json' | 'site'>,
  report: ReadonlyArray<PipelineVerification | BrokerPipelineVerification>,
): void {
  const differences = report.reduce((n, r) => n + r.differences, 0);
  if (differences) process.exitCode = 1;
  if (opts.json) {
    writeJson(report);
    return;
  }
  writeTable(
    report.flatMap((r) => [
      { pipeline: r.pipeline, side: 'site', ...r.site },
      { pipeline: r.pipeline, side: 'central', ...r.central },
    ]),
  );
  for (const r of report) {
    for (const [what, keys] of [
      ['missing centrally', r.missingCentrally],
      ['only centrally', r.extraCentrally],
      ['different', r.different],
    ] as const)
      if (keys.length) process.stdout.write(`${r.pipeline}: ${what}: ${keys.join(' ')}\n`);
    if ('exchange' in r) {
      const x = r.exchange;
      process.stdout.write(
        `${r.pipeline}: ${x.requests} request(s), ${x.ranges} range(s), ${x.replyBytes} byte(s) of replies from the site\n`,
      );
    }
  }
  process.stdout.write(
    differences
      ? `site ${opts.site}: ${differences} header(s) differ\n`
      : `site ${opts.site}: identical at the site and centrally\n`,
  );
}
