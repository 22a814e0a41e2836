import { Command } from 'commander';
import { ConfigError, createLogger, reportFailure, serveAgentProcess } from '@sitesync/protocol';
import { loadCentralConfigWithOrigin } from './config';
import { CentralAgent } from './central-agent';
import { supervisionRoutes } from './http/supervision';

const SHUTDOWN_GRACE_MS = 60_000;

async function run(opts: { config?: string }): Promise<number> {
  let config, origin;
  try {
    ({ config, origin } = loadCentralConfigWithOrigin(opts.config));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`sync-central: invalid configuration: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger('sync-central', config.logLevel);
  const agent = new CentralAgent(config, log, origin);
  try {
    // Without waiting for the broker: /healthz answers (503) while it is away, and the agent keeps trying.
    await agent.start({ requireBroker: false });
  } catch (err) {
    return reportFailure('sync-central', log, err, 'cannot start');
  }
  const proc = await serveAgentProcess(agent, {
    httpPort: config.httpPort,
    log,
    graceMs: SHUTDOWN_GRACE_MS,
    routes: supervisionRoutes(agent, { log }),
  });
  return proc.untilFailed('sync-central'); // or runs until a signal
}

const program = new Command('sync-central').description('sitesync central agent');
program
  .command('run')
  .description('consume site batches and merge them into the central database')
  .option('-c, --config <file>', 'config file (JSON; default $SYNC_CONFIG); SYNC_* environment variables override it')
  .action(async (opts: { config?: string }) => {
    process.exitCode = await run(opts);
  });

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`sync-central: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
