import type { ConsumeMessage } from 'amqplib';
import { rollbackFailureOf } from '../../db/client.js';
import { isTransientDatabaseError } from '../../db/errors.js';
import type { Logger } from '../../log.js';
import { PermanentFailure } from '../../outbox/handler.js';
import type { CopySender } from '../copies.js';
import { ATTEMPTS_HEADER } from '../dead-letters.js';
import type { Policy } from '../pipeline.js';

export interface RetryOptions {
  readonly copies: CopySender;
  readonly retryQueue: string;
  /** Attempts of one message (the first included) before it is parked (WORKER_MAX_ATTEMPTS). */
  readonly maxAttempts: number;
  /** How long a failed message waits in the retry queue (WORKER_RETRY_DELAY_MS). */
  readonly delayMs: number;
  readonly log: Logger;
}

/** Thrown when a message's attempts are used up; park.ts parks it with `cause` as the reason. */
export class AttemptsExhausted extends PermanentFailure {
  override readonly name = 'AttemptsExhausted';
}

/** The attempts a message carries from earlier deliveries; anything but a small whole number is none. */
export function attemptsSoFar(message: ConsumeMessage): number {
  const value = Number(message.properties.headers?.[ATTEMPTS_HEADER] ?? 0);
  return Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

/**
 * A failure that retrying may fix (a handler's error) sends the message to the retry queue,
 * where it waits `delayMs` and comes back; once `maxAttempts` are used it is given up on
 * (AttemptsExhausted, parked). The database being away (restart, failover, deadlock) is nobody's
 * fault in the message: it waits like any failure, but the attempt is not counted, so a long
 * outage delays messages without ever parking them.
 */
export const retry =
  ({ copies, retryQueue, maxAttempts, delayMs, log }: RetryOptions): Policy =>
  (next) =>
  async (delivery) => {
    try {
      return await next(delivery);
    } catch (error) {
      if (error instanceof PermanentFailure) throw error;
      if (isTransientDatabaseError(error, rollbackFailureOf(error))) delivery.attempts -= 1;
      if (delivery.attempts >= maxAttempts) {
        throw new AttemptsExhausted(`gave up after ${delivery.attempts} attempts`, { cause: error });
      }
      log.warn(
        { err: error, eventId: delivery.claim?.eventId, attempts: delivery.attempts, retryInMs: delayMs },
        'handler failed; retrying later',
      );
      await copies.send(retryQueue, delivery.message, {
        attempts: delivery.attempts,
        reason: error,
        expirationMs: delayMs,
      });
      return 'retried';
    }
  };
