export * from './dialect';
export * from './url';
export * from './database';
export * from './schema-types';
export { CENTRAL_MIGRATIONS, SITE_MIGRATIONS } from './migrations';
export * from './pipeline-resolver';
export * from './interventions';
export * from './header-reader';
export * from './change-tracking';
