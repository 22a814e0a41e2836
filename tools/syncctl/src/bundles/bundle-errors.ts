import { SyncError } from '@sitesync/protocol';

/** One reason a bundle is refused, with the entry (and file) it concerns when there is one. */
export interface BundleProblem {
  /** `003.sql`, `002.imports/T100.csv`; absent for the bundle as a whole. */
  where?: string;
  message: string;
}

/** The bundle was refused before anything ran: nothing was changed. Lists every problem found. */
export class BundleRefusedError extends SyncError {
  override name = 'BundleRefusedError';
  constructor(
    readonly source: string,
    readonly problems: readonly BundleProblem[],
  ) {
    super(
      `bundle ${source} refused, nothing was changed (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` +
        problems.map((p) => `  - ${p.where ? `${p.where}: ` : ''}${p.message}`).join('\n'),
      'BUNDLE_REFUSED',
    );
  }
}

/** An entry failed while the bundle was being applied; the entries before it stay applied (see the journal). */
export class BundleEntryFailedError extends SyncError {
  override name = 'BundleEntryFailedError';
  constructor(
    message: string,
    readonly entry: string,
    readonly item: string,
    options?: { cause?: unknown },
  ) {
    super(message, 'BUNDLE_ENTRY_FAILED', options);
  }
}
