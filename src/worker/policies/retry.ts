import { rollbackFailureOf } from '../../db/client.js';
import { isTransientDatabaseError } from '../../db/errors.js';
import type { Logger } from '../../log.js';
import { PermanentFailure } from '../../outbox/handler.js';
import { Condition } from '../../support/log-limit.js';
import type { CopySender } from '../copies.js';
import type { Policy } from '../pipeline.js';

export interface RetryOptions {
  readonly copies: CopySender;
  readonly retryQueue: string;
  /** Attempts of one event (the first included) before it is parked (WORKER_MAX_ATTEMPTS). */
  readonly maxAttempts: number;
  /**
   * How long a failed message waits in the retry queue (WORKER_RETRY_DELAY_MS). One delay for
   * every copy: the queue expires messages only at its head, so a copy given a shorter delay than
   * one ahead of it would wait for that one's (broker/topology.ts, docs/worker.md).
   */
  readonly delayMs: number;
  /** Records one more failed attempt at an event and returns how many there have been. */
  readonly countFailure: (eventId: string) => Promise<number>;
  readonly log: Logger;
}

/** Thrown when an event's attempts are used up; park.ts parks it with `cause` as the reason. */
export class AttemptsExhausted extends PermanentFailure {
  override readonly name = 'AttemptsExhausted';
}

/**
 * A failure that retrying may fix (a handler's error) sends the message to the retry queue,
 * where it waits `delayMs` and comes back; once `maxAttempts` are used the event is given up on
 * (AttemptsExhausted, parked).
 *
 * The attempts are the service's own count (countFailure, in the database), never a header: a
 * publisher could otherwise park a real event at once, or retry one for ever. Counted only for a
 * delivery verified to be its stored event, so a copy no one can tell from a forgery cannot spend
 * the real event's attempts. The database being away (restart, failover, deadlock) is nobody's
 * fault in the message: it waits like any failure, but no attempt is counted, so a long outage
 * delays messages without ever parking them.
 */
export const retry = ({
  copies,
  retryQueue,
  maxAttempts,
  delayMs,
  countFailure,
  log,
}: RetryOptions): Policy => {
  // During a database outage every message fails alike: one line per interval, not one each.
  const databaseAway = new Condition(log, 'database unavailable to handlers');
  return (next) => async (delivery) => {
    try {
      const outcome = await next(delivery);
      databaseAway.cleared({}, 'handlers reach the database again');
      return outcome;
    } catch (error) {
      if (error instanceof PermanentFailure) throw error;
      const { claim } = delivery;
      let counted = false;
      const transient = isTransientDatabaseError(error, rollbackFailureOf(error));
      if (delivery.verified && claim && !transient) {
        try {
          delivery.attempts = await countFailure(claim.eventId);
          counted = true;
        } catch (countError) {
          log.warn({ err: countError, eventId: claim.eventId }, 'could not count a failed attempt');
        }
      }
      if (counted && delivery.attempts >= maxAttempts) {
        throw new AttemptsExhausted(`gave up after ${delivery.attempts} attempts`, { cause: error });
      }
      const fields = { err: error, eventId: claim?.eventId, attempts: delivery.attempts, retryInMs: delayMs };
      if (transient) databaseAway.occurred('warn', fields, 'handler failed; retrying later');
      else log.warn(fields, 'handler failed; retrying later');
      await copies.send(retryQueue, delivery.message, {
        attempts: counted ? delivery.attempts : 0,
        reason: error,
        expirationMs: delayMs,
      });
      return 'retried';
    }
  };
};
