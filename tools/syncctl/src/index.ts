/** syncctl's operations, for scripts and tests: the command line is `cli/syncctl.ts`. */
export { createSyncctlProgram } from './cli/program';
export * from './ops/provision-site';
export * from './ops/site-permissions';
export * from './ops/verify';
export {
  DEFAULT_MAX_KEYS,
  DEFAULT_STUCK_AFTER_SECONDS,
  formatKey,
  type CheckOptions,
  type Finding,
  type FindingKind,
} from './ops/db-check/check-context';
export * from './ops/db-check/site-checks';
export * from './ops/db-check/central-checks';
export * from './ops/db-upgrade';
export * from './ops/customisations';
export * from './ops/upgrade-scripts';
export * from './ops/upgrade-targets';
export * from './ops/site-requests';
export * from './ops/broker-verify';
export * from './ops/broker-resync';
