import { Command, Help, type Option } from 'commander';
import { registerBrokerCommands } from './broker-commands';
import { registerBundleCommands } from './bundle-commands';
import { SyncctlContext } from './context';
import { registerDbCommands } from './db-commands';
import { registerDlqCommands } from './dlq-commands';
import { registerProceduresCommands } from './procedures-commands';
import { registerResyncCommand } from './resync-command';
import { registerSitesCommands } from './sites-commands';
import { registerStatusCommand } from './status-command';
import { registerTransferCommands } from './transfer-commands';
import { registerUsersCommands } from './users-commands';
import { registerVerifyCommand } from './verify-command';

/**
 * syncctl's program: global options and command groups (in the order `--help` lists them), not yet
 * parsed. `env` is the one environment syncctl reads: the central config takes it from here on.
 */
export function createSyncctlProgram(env: NodeJS.ProcessEnv): Command {
  const program = new Command('syncctl')
    .description('operate sitesync: status, sites, procedures, transfers, dead letters, database')
    // Before the commands are added: each inherits the help configuration of its parent.
    .configureHelp({ optionDescription: describeOption })
    .option('-c, --config <file>', 'central config file (default $SYNC_CONFIG)')
    .option('--db <url>', 'central database URL (overrides the config)');
  const ctx = new SyncctlContext(program, env);

  registerStatusCommand(program, ctx);
  registerSitesCommands(program, ctx);
  registerBrokerCommands(program, ctx);
  registerProceduresCommands(program, ctx);
  registerTransferCommands(program, ctx);
  registerDlqCommands(program, ctx);
  registerVerifyCommand(program, ctx);
  registerResyncCommand(program, ctx);
  registerDbCommands(program, ctx);
  registerUsersCommands(program);
  registerBundleCommands(program, ctx);
  return program;
}

/** An option's line in `--help`: commander's (default, choices), and "(required)" where the command cannot run without it. */
function describeOption(option: Option): string {
  const text = new Help().optionDescription(option);
  return option.mandatory ? `${text} (required)` : text;
}
