/**
 * The tables sitesync keeps, by the names the migrations gave them: the agents and syncctl read
 * them by these constants. The legacy names (`EstadoSyncGeneral`, `LAB_SyncStatus`) are the
 * hospitals' existing system's, kept exactly so their reports keep working.
 */

/** Central: one row per site and pipeline, the site's sync state (legacy name). */
export const SITE_TABLE = 'EstadoSyncGeneral';
/** Central: per site, pipeline and header key, the newest version merged and its hash. */
export const LEDGER_TABLE = 'sync_ledger';
/** Central: the message id of every batch applied (a redelivery is found here and not applied twice). */
export const INBOX_TABLE = 'sync_inbox';
/** Central: the batches dead-lettered, counted against their session. */
export const REJECTED_TABLE = 'sync_rejected';
/** Central: one row per site session, from session.started to its session.ack. */
export const SESSION_TABLE = 'sync_session';
/** Site: per header, the hash last sent and the one the central acknowledged. */
export const ROW_STATE_TABLE = 'sync_row_state';
/** Site: one row per session, the run log the hospital's reports read (legacy name). */
export const RUN_LOG_TABLE = 'LAB_SyncStatus';
