export * from './dialects';
export * from './key-collation';
export * from './url';
export * from './database';
export * from './sql-script';
export * from './schema-types';
export * from './column-fit';
export * from './value-forms';
export {
  CENTRAL_MIGRATIONS,
  SITE_MIGRATIONS,
  exactKeyStatements,
  INEXACT_KEYS_ACCEPTED_COLUMN,
  PIPELINE_SHAPE_COLUMN,
  SITE_DISABLED_AT_COLUMN,
  TOMBSTONE_FLOOR_COLUMN,
} from './migrations';
export * from './pipeline-resolver';
export * from './interventions';
export * from './header-reader';
export * from './change-tracking';
export * from './journal';
export * from './operation-lock';
export * from './table-names';
export * from './header-hashes';
export * from './table-statistics';
