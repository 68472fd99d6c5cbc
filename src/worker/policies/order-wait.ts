import type { Logger } from '../../log.js';
import type { CopySender } from '../copies.js';
import type { Policy } from '../pipeline.js';

export interface OrderWaitOptions {
  readonly copies: CopySender;
  readonly waitQueue: string;
  /** How long the message waits before it comes back (WORKER_ORDER_WAIT_MS). */
  readonly waitMs: number;
  readonly log: Logger;
}

/**
 * A message whose predecessors (of the types this worker handles) are not handled yet (the
 * handling transaction's turn check, ../handling.ts, says `waiting`) waits in the wait queue
 * and comes back after `waitMs`, so each aggregate's events are handled in sequence order with
 * any number of workers and any prefetch. Waiting spends no attempt.
 */
export const orderWait =
  ({ copies, waitQueue, waitMs, log }: OrderWaitOptions): Policy =>
  (next) =>
  async (delivery) => {
    const outcome = await next(delivery);
    if (outcome !== 'waiting') return outcome;
    log.debug(
      { eventId: delivery.claim?.eventId, missing: delivery.missing },
      'earlier events not handled yet; waiting',
    );
    await copies.send(waitQueue, delivery.message, {
      attempts: delivery.attempts - 1,
      reason: 'waiting for earlier events of its aggregate',
      expirationMs: waitMs,
    });
    return 'waiting';
  };
