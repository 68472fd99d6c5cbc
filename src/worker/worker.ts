import { randomUUID } from 'node:crypto';
import type { ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import type { BrokerConnection } from '../broker/connection.js';
import { ChannelSession } from '../broker/session.js';
import { declareWorkerQueues, type Topology } from '../broker/topology.js';
import type { Database } from '../db/client.js';
import { isDuplicateKey, isTransientDatabaseError } from '../db/errors.js';
import { inbox } from '../db/schema.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/index.js';
import type { EventEnvelope, EventHeaders } from '../outbox/event.js';
import type { Handoff } from '../relay/handoff.js';
import { MalformedMessageError, parseEnvelope } from './envelope.js';
import { appendHandledNotification, HANDLERS, type Handler } from './handlers.js';

export interface WorkerOptions {
  readonly db: Database;
  readonly broker: BrokerConnection;
  readonly topology: Topology;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly prefetch: number;
  /** Deliveries of one message (first try included) before it is parked. */
  readonly maxAttempts: number;
  readonly retryDelayMs: number;
  /** Called after a handling transaction wrote an outbox event (wakes relays). */
  readonly onEventsWritten: () => void;
  /** The relay in this process, if any: notifications are handed to it directly. */
  readonly handoff?: Handoff;
  /** Event type → handler; the production set by default, replaceable to inject a fault. */
  readonly handlers?: Readonly<Record<string, Handler>>;
}

/** Our own attempt counter, carried on messages the worker sends back through the retry queue. */
const ATTEMPTS_HEADER = 'x-attempts';
const ERROR_HEADER = 'x-last-error';
/** Identifies one copy sent to the retry or dead-letter queue, to match a basic.return to it. */
const COPY_HEADER = 'x-copy-id';

/** Our attempt count from a message; anything but a small whole number counts as none. */
function attemptsSoFar(message: ConsumeMessage): number {
  const value = Number(message.properties.headers?.[ATTEMPTS_HEADER] ?? 0);
  return Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

type Outcome = 'handled' | 'duplicate' | 'retried' | 'parked';

/**
 * The idempotent receiver. For each message, one transaction inserts the inbox row (consumer +
 * message id), does the handler's effect, and appends the "handled" notification to the outbox.
 * A message whose inbox row exists is a redelivery: the insert fails on the primary key and the
 * message is acked with no effect. The effect therefore happens once per event however often
 * the broker or the relay delivers it.
 *
 * Failures: a malformed message (bad JSON, unknown type, missing fields) is parked in the
 * dead-letter queue at once; a failing handler is sent to the retry queue, where it waits out
 * the retry delay, and is parked after `maxAttempts`. A message is acked only after its retry
 * or parked copy is confirmed by the broker, so none is lost in between.
 */
export class Worker {
  /** The inbox's consumer name: shared by all instances of this worker, so they deduplicate together. */
  readonly consumer: string;
  private readonly session: ChannelSession<ConfirmChannel>;
  private readonly handlers: Readonly<Record<string, Handler>>;
  private readonly inFlight = new Set<Promise<void>>();
  private consumerTag: string | undefined;
  /** Copies (retry, park) the broker returned as unroutable, by their x-copy-id. */
  private readonly returned = new Set<string>();

  constructor(private readonly options: WorkerOptions) {
    this.consumer = options.topology.workerQueue;
    this.handlers = options.handlers ?? HANDLERS;
    this.session = new ChannelSession<ConfirmChannel>(
      options.broker,
      'worker',
      options.log,
      async (channel) => {
        channel.on('return', (message: { properties: { headers?: Record<string, unknown> } }) => {
          const copy = message.properties.headers?.[COPY_HEADER];
          if (typeof copy === 'string') this.returned.add(copy);
        });
        await declareWorkerQueues(channel, options.topology);
        await channel.prefetch(options.prefetch);
        const { consumerTag } = await channel.consume(
          options.topology.workerQueue,
          (message) => {
            if (message) this.track(this.process(channel, message));
            else ChannelSession.cancelled(channel, options.log, 'worker');
          },
          { noAck: false },
        );
        this.consumerTag = consumerTag;
        options.log.info(
          { queue: options.topology.workerQueue, prefetch: options.prefetch },
          'worker consuming',
        );
      },
      'confirm',
    );
  }

  start(): void {
    this.session.start();
  }

  /** Idempotent: cancels the consumer, lets in-flight messages finish, closes the channel. */
  stop(): Promise<void> {
    return this.session.stop(async (channel) => {
      if (this.consumerTag) await channel.cancel(this.consumerTag).catch(() => {});
      await Promise.allSettled([...this.inFlight]);
    });
  }

  private track(work: Promise<void>): void {
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
  }

  private async process(channel: ConfirmChannel, message: ConsumeMessage): Promise<void> {
    const { log, metrics } = this.options;
    const startedAt = performance.now();
    let outcome: Outcome;
    try {
      outcome = await this.decide(channel, message);
    } catch (error) {
      // The retry or park copy was not confirmed (channel closed, broker gone): leave the
      // message unacked; the broker redelivers it when this channel closes.
      log.warn(
        { err: error, messageId: message.properties.messageId },
        'could not settle message; it will be redelivered',
      );
      return;
    }
    try {
      channel.ack(message);
    } catch {
      // Channel already closed: the broker redelivers; the inbox makes that harmless.
    }
    metrics.workerHandled.inc({ outcome });
    log.debug(
      {
        messageId: message.properties.messageId,
        outcome,
        ms: Math.round((performance.now() - startedAt) * 100) / 100,
      },
      'message settled',
    );
    if (outcome === 'handled' && !this.options.handoff) this.options.onEventsWritten();
  }

  private async decide(channel: ConfirmChannel, message: ConsumeMessage): Promise<Outcome> {
    const { log, maxAttempts, retryDelayMs, topology } = this.options;
    const attempts = attemptsSoFar(message) + 1;
    let envelope: EventEnvelope;
    let handler: Handler | undefined;
    try {
      envelope = parseEnvelope(message.content, message.properties.messageId);
      handler = this.handlers[envelope.type];
      if (!handler) throw new MalformedMessageError(`no handler for event type "${envelope.type}"`);
    } catch (error) {
      await this.park(channel, message, error, attempts);
      return 'parked';
    }
    try {
      return await this.handle(envelope, handler, message);
    } catch (error) {
      // The database being away (restart, failover, deadlock) is nobody's fault in the message:
      // it waits in the retry queue like any failure but the attempt is not counted, so a long
      // outage delays messages without ever parking them.
      const counted = isTransientDatabaseError(error) ? attempts - 1 : attempts;
      if (error instanceof MalformedMessageError || counted >= maxAttempts) {
        await this.park(channel, message, error, counted);
        return 'parked';
      }
      log.warn(
        { err: error, eventId: envelope.eventId, attempts: counted, retryInMs: retryDelayMs },
        'handler failed; retrying later',
      );
      await this.send(channel, topology.workerRetryQueue, message, counted, error, String(retryDelayMs));
      return 'retried';
    }
  }

  private async handle(envelope: EventEnvelope, handler: Handler, message: ConsumeMessage): Promise<Outcome> {
    const handledAt = new Date();
    const { handoff } = this.options;
    const notification = await this.options.db.transaction(async (tx) => {
      try {
        await tx.insert(inbox).values({ consumer: this.consumer, messageId: envelope.eventId, handledAt });
      } catch (error) {
        // Already handled (or being handled by another worker, which we waited for): done.
        if (isDuplicateKey(error)) return undefined;
        throw error;
      }
      await handler.handle(tx, envelope, handledAt);
      const headers = forwardHeaders(message);
      return appendHandledNotification(
        tx,
        envelope,
        handler,
        handledAt,
        headers,
        randomUUID(),
        handoff?.lease,
      );
    });
    if (!notification) return 'duplicate';
    handoff?.publish([notification]);
    return 'handled';
  }

  private async park(
    channel: ConfirmChannel,
    message: ConsumeMessage,
    error: unknown,
    attempts: number,
  ): Promise<void> {
    this.options.log.error(
      { err: error, messageId: message.properties.messageId, attempts },
      'message parked in the dead-letter queue',
    );
    await this.send(channel, this.options.topology.workerDeadLetterQueue, message, attempts, error);
  }

  /**
   * Sends a copy of `message`, carrying its attempt count and last error, straight to a queue
   * and waits for the broker's confirm. Mandatory, like the relay's publishes: were the queue
   * missing, the broker would confirm the copy and drop it, and acking the original would lose
   * the message.
   */
  private send(
    channel: ConfirmChannel,
    queue: string,
    message: ConsumeMessage,
    attempts: number,
    error: unknown,
    expiration?: string,
  ): Promise<void> {
    const { properties } = message;
    const copy = randomUUID();
    const options: Options.Publish = {
      messageId: properties.messageId,
      type: properties.type,
      contentType: properties.contentType,
      correlationId: properties.correlationId,
      timestamp: properties.timestamp,
      persistent: true,
      mandatory: true,
      expiration,
      headers: {
        ...properties.headers,
        [ATTEMPTS_HEADER]: attempts,
        [ERROR_HEADER]: errorText(error),
        [COPY_HEADER]: copy,
      },
    };
    return new Promise((resolve, reject) => {
      channel.sendToQueue(queue, message.content, options, (error) => {
        if (this.returned.delete(copy)) reject(new Error(`queue ${queue} does not exist`));
        else if (error) reject(error);
        else resolve();
      });
    });
  }
}

function errorText(error: unknown): string {
  return (error instanceof Error ? `${error.name}: ${error.message}` : String(error)).slice(0, 500);
}

/** Correlation and trace headers travel on to the notification; AMQP's own (x-…) do not. */
function forwardHeaders(message: ConsumeMessage): EventHeaders {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(message.properties.headers ?? {})) {
    if (typeof value === 'string' && !key.startsWith('x-')) out[key] = value;
  }
  return out;
}
