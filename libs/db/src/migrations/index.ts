import { CentralExactKeys1733400000000 } from './central-exact-keys';
import { CentralInit1732500000000 } from './central-init';
import { CentralPipelineShape1733500000000 } from './central-pipeline-shape';
import { CentralSecrets1733300000000 } from './central-secrets';
import { CentralSiteDisabled1733700000000 } from './central-site-disabled';
import { CentralInterventions1732600000000, SiteInterventions1732600000000 } from './interventions';
import { SiteInit1732500000000 } from './site-init';
import { SiteUnackedIndex1733000000000 } from './row-state-unacked';
import {
  CentralSessionIndex1733600000000,
  CentralSessionTimeIndexes1733800000000,
  SiteRunLogIndex1733600000000,
} from './session-indexes';
import { CentralTombstoneFloor1733750000000 } from './central-tombstone-floor';

export const CENTRAL_MIGRATIONS = [
  CentralInit1732500000000,
  CentralInterventions1732600000000,
  CentralSecrets1733300000000,
  CentralExactKeys1733400000000,
  CentralPipelineShape1733500000000,
  CentralSessionIndex1733600000000,
  CentralSiteDisabled1733700000000,
  CentralTombstoneFloor1733750000000,
  CentralSessionTimeIndexes1733800000000,
];
export const SITE_MIGRATIONS = [
  SiteInit1732500000000,
  SiteInterventions1732600000000,
  SiteUnackedIndex1733000000000,
  SiteRunLogIndex1733600000000,
];
export { exactKeyStatements, INEXACT_KEYS_ACCEPTED_COLUMN } from './central-exact-keys';
export { PIPELINE_SHAPE_COLUMN } from './central-pipeline-shape';
export { TOMBSTONE_FLOOR_COLUMN } from './central-tombstone-floor';
export { SITE_DISABLED_AT_COLUMN } from './central-site-disabled';
