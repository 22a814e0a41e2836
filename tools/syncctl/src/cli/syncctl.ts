import { ConfigError } from '@sitesync/protocol';
import { OperationLockedError } from '@sitesync/db';
import { createSyncctlProgram } from './program';

/** syncctl's entry: the program (program.ts) run on the command line, the exit code. */

createSyncctlProgram(process.env)
  .parseAsync()
  .catch((err: unknown) => {
    process.stderr.write(`syncctl: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(err instanceof ConfigError || err instanceof OperationLockedError ? 2 : 1);
  });
