import { readFileSync } from 'node:fs';
import { type Command } from 'commander';
import { ConfigError, HashingFileSchema, configErrorFrom } from '@sitesync/protocol';
import { Database, resolvePipeline, type ResolvedPipeline } from '@sitesync/db';
import { verifySite, type PipelineVerification } from '../ops/verify';
import { positiveInt, siteId, writeJson, writeTable, type SyncctlContext } from './context';

interface VerifyCommandOptions {
  site: number;
  siteDb: string;
  pipelineFile: string[];
  maxKeys: string;
  json?: boolean;
}

/** Registers `verify`: a site's data against the central's, per pipeline. */
export function registerVerifyCommand(program: Command, ctx: SyncctlContext): void {
  program
    .command('verify')
    .description(
      'reconcile a site with the central: per pipeline, counts and a digest at both ends, and the keys that differ',
    )
    .requiredOption('--site <id>', 'the site (efector id)', siteId)
    .requiredOption('--site-db <url>', "the site's database URL")
    .requiredOption('--pipeline-file <file...>', "the site's hashing file(s), as in its peripheral config")
    .option('--max-keys <n>', 'keys listed per kind of difference', '50')
    .option('--json', 'machine-readable output')
    .action(async (opts: VerifyCommandOptions) => {
      const siteDb = await Database.open(opts.siteDb, { role: 'site', migrate: false });
      try {
        const pipelines = await readPipelines(siteDb, opts.pipelineFile);
        const report = await ctx.withCentralDb((central) =>
          verifySite(siteDb, central, opts.site, pipelines, { maxKeys: positiveInt(opts.maxKeys, '--max-keys') }),
        );
        writeReport(opts, report);
      } finally {
        await siteDb.close();
      }
    });
}

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
function writeReport(opts: VerifyCommandOptions, report: readonly PipelineVerification[]): void {
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
  }
  process.stdout.write(
    differences
      ? `site ${opts.site}: ${differences} header(s) differ\n`
      : `site ${opts.site}: identical at the site and centrally\n`,
  );
}
