import { randomUUID } from 'node:crypto';
import type { ConsumeMessage } from 'amqplib';
import type { BrokerConnection } from '../broker/connection.js';
import { ConfirmPublisher } from '../broker/publisher.js';
import type { Logger } from '../log.js';

import { ATTEMPTS_HEADER, COPY_HEADER, ERROR_HEADER } from './dead-letters.js';

export interface CopyOptions {
  /** Written as x-attempts. */
  readonly attempts: number;
  /** Why the copy was made, written as x-last-error. */
  readonly reason: unknown;
  /** Per-message TTL, for the retry and wait queues that send it back when it expires. */
  readonly expirationMs?: number;
  /** More headers for this copy (a parked one's x-parked-at). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** What a policy needs to set a message aside (tests give the policies their own). */
export interface CopySender {
  send(queue: string, message: ConsumeMessage, options: CopyOptions): Promise<void>;
}

/**
 * Copies of a consumed message sent straight to one of the worker's queues (retry, wait,
 * dead-letter) through the one confirm publisher: mandatory and confirmed within the confirm
 * deadline, so the original is acked only once its copy is safe. Rejects when the copy is not
 * confirmed (returned because the queue is gone, nacked, timed out, no channel); the worker
 * then gives the original back to its queue.
 */
export class Copies implements CopySender {
  private readonly publisher: ConfirmPublisher;

  constructor(broker: BrokerConnection, confirmTimeoutMs: number, log: Logger) {
    // The default exchange routes by queue name. The consumer's session declares the queues;
    // declaring them here as well would bring back a queue an operator deleted on purpose.
    this.publisher = new ConfirmPublisher({
      broker,
      exchange: '',
      confirmTimeoutMs,
      log,
      setup: async () => {},
    });
  }

  async send(queue: string, message: ConsumeMessage, options: CopyOptions): Promise<void> {
    const { properties } = message;
    const [outcome] = await this.publisher.publishAll([
      {
        routingKey: queue,
        body: message.content,
        properties: {
          messageId: properties.messageId ?? '',
          type: properties.type,
          contentType: properties.contentType,
          correlationId: properties.correlationId,
          timestamp: properties.timestamp,
          persistent: true,
          expiration: options.expirationMs === undefined ? undefined : String(options.expirationMs),
          headers: {
            ...properties.headers,
            [ATTEMPTS_HEADER]: options.attempts,
            [ERROR_HEADER]: errorText(options.reason),
            // One id per copy: the dead-letter operations (dead-letters.ts) name a copy by it.
            [COPY_HEADER]: randomUUID(),
            ...options.headers,
          },
        },
      },
    ]);
    if (outcome && !outcome.ok) throw new Error(`the copy to ${queue} failed: ${outcome.error}`);
  }

  /** Idempotent. */
  close(): Promise<void> {
    return this.publisher.close();
  }
}

/** An error as one short line for x-last-error and the logs. */
export function errorText(error: unknown): string {
  return (error instanceof Error ? `${error.name}: ${error.message}` : String(error)).slice(0, 500);
}
