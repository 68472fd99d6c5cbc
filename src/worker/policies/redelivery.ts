import type { ConsumeMessage } from 'amqplib';
import { UNDECODABLE_HEADER } from '../../broker/undecodable.js';
import { PermanentFailure } from '../../outbox/handler.js';
import type { Policy } from '../pipeline.js';

/**
 * Redeliveries (a worker died holding the message, or gave it back) after which the message is
 * parked: below RabbitMQ 4's default quorum-queue delivery limit (20), past which the broker
 * would drop it, since the worker queue has no dead-letter target (broker/topology.ts says why).
 */
export const MAX_REDELIVERIES = 10;

/** The broker's count of earlier deliveries of a message (quorum queues set x-delivery-count). */
function redeliveries(message: ConsumeMessage): number {
  const value = Number(message.properties.headers?.['x-delivery-count'] ?? 0);
  return Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

/**
 * A message that keeps coming back unsettled is parked before anything else is tried, and so is
 * one whose properties the client library could not decode (broker/undecodable.ts): it would
 * otherwise come back at every connection for ever.
 */
export const parkRedelivered =
  (max = MAX_REDELIVERIES): Policy =>
  (next) =>
  async (delivery) => {
    const undecodable = delivery.message.properties.headers?.[UNDECODABLE_HEADER];
    if (undecodable !== undefined) {
      throw new PermanentFailure(`its properties could not be decoded (${String(undecodable)})`);
    }
    const count = redeliveries(delivery.message);
    if (count >= max) throw new PermanentFailure(`redelivered ${count} times without being settled`);
    return next(delivery);
  };
