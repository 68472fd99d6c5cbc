import type { Channel } from 'amqplib';
import { routingKeyOf } from '../outbox/event.js';

/** Names of everything this service declares on the broker, derived from the configuration. */
export interface Topology {
  /** The durable topic exchange of the broker contract. */
  readonly exchange: string;
  /** The worker's durable quorum queue. */
  readonly workerQueue: string;
  /** Messages waiting out a retry delay; they expire back into the worker queue. */
  readonly workerRetryQueue: string;
  /** Messages waiting for an earlier event of their aggregate; a short delay, then back. */
  readonly workerWaitQueue: string;
  /** Messages the worker gave up on: malformed, or failing after the attempt limit. */
  readonly workerDeadLetterQueue: string;
  /** Event types the worker handles; its queue is bound to their routing keys. */
  readonly workerEventTypes: readonly string[];
  /**
   * Fanout exchange for "new outbox rows" hints to standalone relays (see broker/hint.ts). Its
   * name, `<OUTBOX_EXCHANGE>.wakeup`, is part of the broker contract and stays.
   */
  readonly relayHintExchange: string;
  /** Fanout exchange for "new history rows" hints to app instances' live feeds. */
  readonly historyHintExchange: string;
}

export function topologyFor(
  exchange: string,
  workerQueue: string,
  workerEventTypes: readonly string[],
): Topology {
  return {
    exchange,
    workerQueue,
    workerRetryQueue: `${workerQueue}.retry`,
    workerWaitQueue: `${workerQueue}.wait`,
    workerDeadLetterQueue: `${workerQueue}.dead`,
    workerEventTypes,
    relayHintExchange: `${exchange}.wakeup`,
    historyHintExchange: `${exchange}.history`,
  };
}

export async function declareExchange(channel: Channel, topology: Topology): Promise<void> {
  await channel.assertExchange(topology.exchange, 'topic', { durable: true });
}

/**
 * The worker's queues and bindings. The relay declares them too, at start: otherwise an event
 * published before the first worker ever ran would be unroutable and bounce (mandatory publish).
 * Every declaration must use the same arguments, or RabbitMQ refuses it (PRECONDITION_FAILED);
 * this function is the only place they are written.
 */
export async function declareWorkerQueues(channel: Channel, topology: Topology): Promise<void> {
  await declareExchange(channel, topology);
  // The arguments a queue was first declared with can never change (a new set is refused with
  // PRECONDITION_FAILED, forever), so the worker queue keeps the ones it has always had. RabbitMQ
  // 4's delivery limit for quorum queues (20 by default; none on 3.x), past which a message with
  // no dead-letter target is dropped, is handled by the worker instead: it parks a message
  // redelivered ten times, well before the broker would drop it (worker/policies/redelivery.ts).
  await channel.assertQueue(topology.workerQueue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  for (const type of topology.workerEventTypes) {
    await channel.bindQueue(topology.workerQueue, topology.exchange, routingKeyOf(type));
  }
  // Retry and wait: a message waits here for its per-message expiration, then RabbitMQ
  // dead-letters it through the default exchange straight back into the worker queue. Two
  // queues, because a queue expires messages only at its head: a 200 ms wait behind a 5 s retry
  // would wait 5 s.
  for (const queue of [topology.workerRetryQueue, topology.workerWaitQueue]) {
    await channel.assertQueue(queue, {
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': topology.workerQueue,
        // Quorum queues dead-letter at most once by default: a message expiring while the worker
        // queue is unavailable would vanish. At-least-once needs reject-publish overflow.
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      },
    });
  }
  await channel.assertQueue(topology.workerDeadLetterQueue, {
    durable: true,
    arguments: { 'x-queue-type': 'quorum' },
  });
}
