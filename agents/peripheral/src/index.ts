export * from './config';
export * from './peripheral-agent';
export * from './sync-session';
export * from './change-scanner';
export * from './row-state';
export * from './run-log';
export * from './metrics';
export * from './ack-tracker';
