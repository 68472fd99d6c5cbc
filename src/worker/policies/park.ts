import type { Database } from '../../db/client.js';
import type { Logger } from '../../log.js';
import { PermanentFailure } from '../../outbox/handler.js';
import { forgetAttempts } from '../attempts.js';
import { type CopySender, errorText } from '../copies.js';
import { PARKED_AT_HEADER } from '../dead-letters.js';
import type { Policy } from '../pipeline.js';
import { passParked } from '../store.js';
import { traceParked } from '../tracing.js';
import { AttemptsExhausted } from './retry.js';

export interface ParkOptions {
  readonly copies: CopySender;
  readonly deadLetterQueue: string;
  readonly db: Database;
  /** The inbox's consumer name, whose progress a parked event passes. */
  readonly consumer: string;
  readonly log: Logger;
}

/**
 * Parks what can never be handled: any PermanentFailure from the steps inside (a malformed or
 * forged message, a bad event, attempts used up) goes to the dead-letter queue as it came,
 * with the reason, for an operator to look at and requeue.
 *
 * A parked event no longer holds back its aggregate's later events: its sequence counts as
 * passed. Only for a delivery verified to be the stored event: a copy that is not (a forgery,
 * one that could not be compared, one refused before it was read) must never move the real
 * event's aggregate, or the real message would then be taken for a duplicate and never handled.
 */
export const park =
  ({ copies, deadLetterQueue, db, consumer, log }: ParkOptions): Policy =>
  (next) =>
  async (delivery) => {
    try {
      return await next(delivery);
    } catch (error) {
      if (!(error instanceof PermanentFailure)) throw error;
      const reason = error instanceof AttemptsExhausted ? error.cause : error;
      log.error(
        {
          reason: errorText(reason),
          messageId: delivery.message.properties.messageId,
          attempts: delivery.attempts,
        },
        'message parked in the dead-letter queue',
      );
      traceParked(errorText(reason));
      await copies.send(deadLetterQueue, delivery.message, {
        attempts: delivery.attempts,
        reason,
        headers: { [PARKED_AT_HEADER]: new Date().toISOString() },
      });
      const { claim } = delivery;
      if (delivery.verified && claim) {
        const key = { consumer, aggregateType: claim.aggregateType, aggregateId: claim.aggregateId };
        await passParked(db, key, claim.sequence).catch((e: unknown) =>
          log.warn({ err: e }, 'could not record a parked event as passed'),
        );
        // Requeued by an operator, it starts with all its attempts.
        await forgetAttempts(db, consumer, claim.eventId).catch(() => {});
      }
      return 'parked';
    }
  };
