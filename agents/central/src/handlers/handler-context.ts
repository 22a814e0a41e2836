import type { MessageType } from '@sitesync/protocol';
import type { BatchMerger } from '../merge/batch-merger';
import type { VerifiedMessage } from '../merge/inbox';
import type { SessionTracker } from '../merge/session-tracker';
import type { CentralInterventions } from '../interventions/central-interventions';
import type { CentralMetrics } from '../metrics';
import type { Outgoing } from './outgoing';

/** The services a handler works with (the agent's, once started). */
export interface HandlerContext {
  merger: BatchMerger;
  sessions: SessionTracker;
  interventions: CentralInterventions;
  metrics: CentralMetrics;
}

/**
 * Handles one type of message from a verified sender and returns what to publish once it is done
 * (the agent publishes, then acks the delivery). Throws to dead-letter (MessageRejectedError) or retry.
 */
export type MessageHandler<T extends MessageType> = (m: VerifiedMessage<T>, ctx: HandlerContext) => Promise<Outgoing[]>;
