export * from './config';
export * from './central-agent';
export * from './metrics';
export * from './merge/batch-merger';
export * from './merge/session-tracker';
export * from './merge/site-registry';
export * from './merge/target-tables';
export * from './cli/table';
