import { Command } from 'commander';
import { ConfigError } from '@sitesync/protocol';
import { OperationLockedError } from '@sitesync/db';
import { registerBrokerCommands } from './broker-commands';
import { registerBundleCommands } from './bundle-commands';
import { SyncctlContext } from './context';
import { registerDbCommands } from './db-commands';
import { registerDlqCommands } from './dlq-commands';
import { registerProceduresCommands } from './procedures-commands';
import { registerSitesCommands } from './sites-commands';
import { registerStatusCommand } from './status-command';
import { registerTransferCommands } from './transfer-commands';
import { registerUsersCommands } from './users-commands';
import { registerVerifyCommand } from './verify-command';

/** syncctl's entry: the program, its command groups (in the order `--help` lists them), the exit code. */

const program = new Command('syncctl')
  .description('operate sitesync: status, sites, procedures, transfers, dead letters, database')
  .option('-c, --config <file>', 'central config file (default $SYNC_CONFIG)')
  .option('--db <url>', 'central database URL (overrides the config)');
// The one place syncctl takes the environment: the central config reads it from here on.
const ctx = new SyncctlContext(program, process.env);

registerStatusCommand(program, ctx);
registerSitesCommands(program, ctx);
registerBrokerCommands(program, ctx);
registerProceduresCommands(program, ctx);
registerTransferCommands(program, ctx);
registerDlqCommands(program, ctx);
registerVerifyCommand(program, ctx);
registerDbCommands(program, ctx);
registerUsersCommands(program);
registerBundleCommands(program, ctx);

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`syncctl: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof ConfigError || err instanceof OperationLockedError ? 2 : 1);
});
