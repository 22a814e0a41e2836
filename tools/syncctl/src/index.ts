/** syncctl's operations, for scripts and tests: the command line is `cli/syncctl.ts`. */
export * from './ops/provision-site';
export * from './ops/site-permissions';
export * from './ops/verify';
export * from './ops/db-check';
export * from './ops/db-upgrade';
export * from './ops/customisations';
export * from './ops/upgrade-scripts';
export * from './ops/upgrade-targets';
