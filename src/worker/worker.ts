import type { Channel, ConsumeMessage } from 'amqplib';
import type { BrokerConnection } from '../broker/connection.js';
import { ChannelSession } from '../broker/session.js';
import { declareWorkerQueues, type Topology } from '../broker/topology.js';
import { guardPropertyDecoding } from '../broker/undecodable.js';
import type { WorkerConfig } from '../config/index.js';
import type { Database } from '../db/client.js';
import type { HistoryRow } from '../history/store.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/index.js';
import type { Handlers } from '../outbox/handler.js';
import type { OutboxWriter } from '../outbox/writer.js';
import { Condition } from '../support/log-limit.js';
import { sleep } from '../support/sleep.js';
import { activeTraceparent } from '../telemetry/tracer.js';
import { countFailedAttempt } from './attempts.js';
import { Copies } from './copies.js';
import { compose, type Step } from './pipeline.js';
import { readEnvelope } from './policies/envelope.js';
import { GroupCommit } from './policies/group-commit.js';
import { countOutcomes } from './policies/metrics.js';
import { orderWait } from './policies/order-wait.js';
import { park } from './policies/park.js';
import { parkRedelivered } from './policies/redelivery.js';
import { retry } from './policies/retry.js';
import { traceConsume } from './tracing.js';

/** The worker's slice of the configuration (its queue is in the topology), and what it works with. */
export interface WorkerOptions extends Omit<WorkerConfig, 'queue'> {
  readonly db: Database;
  readonly broker: BrokerConnection;
  readonly topology: Topology;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Event type → handler. The worker consumes exactly these types. */
  readonly handlers: Handlers;
  /** Follow-up events handlers append go through it. */
  readonly writer: OutboxWriter;
  /** Given the history rows of every commit (live feeds fan them out, or read then). */
  readonly onHistory: (rows: readonly HistoryRow[]) => void;
}

/**
 * The idempotent receiver: a consume loop that hands each delivery to a pipeline of policies,
 * each in its own file under policies/, and acks it once the pipeline has settled it (handled,
 * a duplicate, or its retry, wait or parked copy confirmed), or gives it back to the queue
 * (nack with requeue) when it could not be settled, so the consumer never stalls at its
 * prefetch. An engine that knows the broker, the outbox and the history, and no event type:
 * handlers are given to it.
 *
 * The pipeline is the list in the constructor, outermost first: a policy sees what every policy
 * after it does. What each decides, and how to change one: docs/worker.md.
 */
export class Worker {
  /** The inbox's consumer name: shared by all instances of this worker, so they deduplicate together. */
  readonly consumer: string;
  private readonly session: ChannelSession<Channel>;
  private readonly copies: Copies;
  private readonly pipeline: Step;
  private readonly inFlight = new Set<Promise<void>>();
  private consumerTag: string | undefined;
  /** During an outage every message fails alike: one line per interval each (support/log-limit.ts). */
  private readonly unsettled: Condition;
  private readonly failing: Condition;

  constructor(options: WorkerOptions) {
    const { topology, log, db } = options;
    this.unsettled = new Condition(log, 'messages not settled');
    this.failing = new Condition(log, 'message processing failing');
    this.consumer = topology.workerQueue;
    this.copies = new Copies(options.broker, options.confirmTimeoutMs, log);
    const { copies, consumer } = this;
    const groupCommit = new GroupCommit({
      db,
      consumer,
      types: Object.keys(options.handlers),
      writer: options.writer,
      onHistory: options.onHistory,
      maxGroup: options.prefetch,
      log,
    });
    this.pipeline = compose(
      [
        countOutcomes(options.metrics, log),
        park({ copies, deadLetterQueue: topology.workerDeadLetterQueue, db, consumer, log }),
        parkRedelivered(),
        readEnvelope(options.handlers, options.maxMessageBytes),
        orderWait({ copies, waitQueue: topology.workerWaitQueue, waitMs: options.orderWaitMs, log }),
        retry({
          copies,
          retryQueue: topology.workerRetryQueue,
          maxAttempts: options.maxAttempts,
          delayMs: options.retryDelayMs,
          countFailure: (eventId) => countFailedAttempt(db, consumer, eventId),
          log,
        }),
      ],
      groupCommit.step,
    );
    this.session = new ChannelSession<Channel>(options.broker, 'worker', log, async (channel) => {
      guardPropertyDecoding(channel);
      await declareWorkerQueues(channel, topology);
      await channel.prefetch(options.prefetch);
      const { consumerTag } = await channel.consume(
        topology.workerQueue,
        (message) => {
          if (message) {
            this.track(traceConsume(topology.workerQueue, message, () => this.settle(channel, message)));
          } else ChannelSession.cancelled(channel, log, 'worker');
        },
        { noAck: false },
      );
      this.consumerTag = consumerTag;
      log.info({ queue: topology.workerQueue, prefetch: options.prefetch }, 'worker consuming');
    });
  }

  start(): void {
    this.session.start();
  }

  /**
   * Idempotent: cancels the consumer, lets in-flight messages finish (each bounded by the confirm
   * deadline), closes the channel; unacked messages go back to the queue with it.
   */
  async stop(): Promise<void> {
    await this.session.stop(async (channel) => {
      // Bounded: a broker behind a dead link never answers, and closing the channel cancels too.
      if (this.consumerTag)
        await Promise.race([channel.cancel(this.consumerTag).catch(() => {}), sleep(1_000)]);
      await Promise.allSettled([...this.inFlight]);
    });
    await this.copies.close();
  }

  private track(work: Promise<void>): void {
    const guarded = work.then(
      () => this.failing.cleared(),
      (error: unknown) =>
        this.failing.occurred('error', { err: error }, 'message processing failed; it will be redelivered'),
    );
    this.inFlight.add(guarded);
    void guarded.finally(() => this.inFlight.delete(guarded));
  }

  private async settle(channel: Channel, message: ConsumeMessage): Promise<void> {
    try {
      await this.pipeline({ message, attempts: 1, verified: false, traceparent: activeTraceparent() });
    } catch (error) {
      // A retry, wait or park copy was not confirmed (returned, nacked, timed out, channel
      // closed): give the message back to the queue rather than hold it unacked for ever.
      this.unsettled.occurred(
        'warn',
        { err: error, messageId: message.properties.messageId },
        'could not settle message; requeued',
      );
      try {
        channel.nack(message, false, true);
      } catch {
        // Channel closed: the broker requeues it anyway.
      }
      return;
    }
    this.unsettled.cleared({}, 'messages settled again');
    try {
      channel.ack(message);
    } catch {
      // Channel already closed: the broker redelivers; the inbox makes that harmless.
    }
  }
}
