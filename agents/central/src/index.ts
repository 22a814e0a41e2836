/**
 * The central agent (`sync-central run`), and what syncctl (tools/syncctl) uses of it: the config,
 * the site registry and target tables, the dead-letter tools (which the supervision page shares),
 * interventions, session tracking and site status. Nothing here imports the tools.
 */
export * from './config';
export * from './central-agent';
export * from './metrics';
export * from './merge/batch-merger';
export * from './merge/batch-content';
export * from './merge/inbox';
export * from './merge/session-tracker';
export * from './merge/site-registry';
export * from './merge/target-tables';
export * from './merge/ledger-statements';
export * from './interventions/central-interventions';
export * from './handlers/outgoing';
export * from './http/api';
export * from './http/auth';
export * from './http/login-throttle';
export * from './http/site-activity';
export * from './http/supervision';
export * from './dlq/dead-letters';
export * from './dlq/dead-lettering';
export * from './dlq/message-signer';
export * from './status/site-status';
export * from './retention/retention-purge';
