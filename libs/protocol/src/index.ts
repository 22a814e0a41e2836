export * from './errors';
export * from './pipeline';
export * from './hashing';
export * from './messages';
export * from './envelope';
export * from './topology';
export * from './broker-connection';
