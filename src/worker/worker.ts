import { randomUUID } from 'node:crypto';
import type { ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import type { BrokerConnection } from '../broker/connection.js';
import { ChannelSession } from '../broker/session.js';
import { declareWorkerQueues, type Topology } from '../broker/topology.js';
import {
  type Database,
  defersWrites,
  execute,
  failedInDeferredWrite,
  flushDeferredWrites,
  rollbackFailureOf,
  type Transaction,
  transaction,
  writeAtCommit,
} from '../db/client.js';
import { isTransientDatabaseError } from '../db/errors.js';
import { appendHistoryAndCommit, type HistoryRow, type NewHistoryRow } from '../history/store.js';
import type { Logger } from '../log.js';
import { type Metrics, secondsSince } from '../metrics/index.js';
import type { EventEnvelope } from '../outbox/event.js';
import { ForeignMessage, type Handlers, PermanentFailure, type StoredEvent } from '../outbox/handler.js';
import type { AppendedEvent } from '../outbox/rows.js';
import { countPredecessors, findEvents } from '../outbox/stored.js';
import type { OutboxWriter } from '../outbox/writer.js';
import { canonicalJson } from '../support/json.js';
import { sleep } from '../support/sleep.js';
import { ATTEMPTS_HEADER, COPY_HEADER, ERROR_HEADER, PARKED_AT_HEADER } from './dead-letters.js';
import { parseEnvelope } from './envelope.js';
import {
  type AggregateKey,
  lastHandled,
  type Progress,
  passParked,
  recordFirstEvent,
  recordFirstEventAtCommit,
  recordInbox,
  setProgress,
  takeProgress,
  wasHandled,
} from './store.js';

export interface WorkerOptions {
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
  readonly prefetch: number;
  /** Deliveries of one message (first try included) before it is parked. */
  readonly maxAttempts: number;
  readonly retryDelayMs: number;
  /** How long a message whose predecessor is not handled yet waits before it comes back. */
  readonly orderWaitMs: number;
  /** Largest message body accepted; larger ones are parked. */
  readonly maxMessageBytes: number;
  /** Deadline for the broker to confirm a retry, wait or park copy. */
  readonly confirmTimeoutMs: number;
}

// x-attempts: our own attempt counter, carried on the copies the worker sends back through the
// retry queue; x-copy-id identifies one copy, to match a basic.return to it (and a parked one for
// the operator, dead-letters.ts).

/**
 * Redeliveries (a worker died holding the message, or gave it back) after which the message is
 * parked: below RabbitMQ 4's default quorum-queue delivery limit (20), past which the broker
 * would drop it, since the worker queue has no dead-letter target (topology.ts says why).
 */
const MAX_REDELIVERIES = 10;

/** The broker's count of earlier deliveries of a message (quorum queues set x-delivery-count). */
function redeliveries(message: ConsumeMessage): number {
  const value = Number(message.properties.headers?.['x-delivery-count'] ?? 0);
  return Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

/** Our attempt count from a message; anything but a small whole number counts as none. */
function attemptsSoFar(message: ConsumeMessage): number {
  const value = Number(message.properties.headers?.[ATTEMPTS_HEADER] ?? 0);
  return Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

type AnyHandler = Handlers[string];

/** A message waiting for its group's transaction, with how to tell it the decision. */
interface Member {
  readonly claim: EventEnvelope;
  readonly handler: AnyHandler;
  readonly resolve: (decision: Decision) => void;
  readonly reject: (error: unknown) => void;
}

/** What runGroup learns from a deferred attempt at a group. */
interface Attempt {
  /** A first event's progress and inbox rows were deferred: its handler ran before any duplicate check. */
  firstDeferred: boolean;
}

/** The order a group handles its messages in: by aggregate, then sequence. */
function compareClaims(a: EventEnvelope, b: EventEnvelope): number {
  if (a.aggregateType !== b.aggregateType) return a.aggregateType < b.aggregateType ? -1 : 1;
  if (a.aggregateId !== b.aggregateId) return a.aggregateId < b.aggregateId ? -1 : 1;
  return a.sequence - b.sequence;
}

type Outcome = 'handled' | 'duplicate' | 'waiting' | 'retried' | 'parked';

/** What one handling transaction decided. */
type Decision =
  | {
      readonly kind: 'handled';
      readonly appended: readonly AppendedEvent[];
      readonly history: readonly HistoryRow[];
    }
  | { readonly kind: 'duplicate' }
  | { readonly kind: 'waiting'; readonly missing: number };

/**
 * The idempotent receiver; an engine that knows the broker, the outbox and the history, and no
 * event type: handlers are given to it.
 *
 * For each message, one transaction:
 *   1. reads the stored event with the message's id from the outbox and compares the message's
 *      claims with it: the handler works from the database's row, never from the message, and a
 *      message that matches no stored event, or disagrees with it, is parked;
 *   2. locks the aggregate's progress: a sequence already handled is a duplicate (acked, no
 *      effect); one whose predecessor (of a type we handle) is not handled yet waits in the wait
 *      queue and comes back; so each aggregate's events are handled in sequence order with any
 *      number of workers and any prefetch;
 *   3. records the inbox row (consumer + message id), runs the handler, moves the progress,
 *      and appends the history row last (history/store.ts explains why last).
 *
 * Two round trips for the usual message, an aggregate's first event seen for the first time:
 * the read of step 1, then every write of steps 2 and 3 with the COMMIT. Nothing in between
 * needs their results, only to know they succeeded, and a failure among them stops the COMMIT:
 * the transaction is then done again with each statement run in its turn (handleGroup's
 * `deferred`), which decides as before (a redelivery is a duplicate, a waiting successor's
 * progress row is read, a handler's error is the handler's).
 *
 * Failures: a malformed message or a permanent failure is parked in the dead-letter queue at
 * once; a failing handler goes to the retry queue, and is parked after `maxAttempts`; the
 * database being away is nobody's fault and never spends an attempt. A message is acked only
 * after its retry, wait or parked copy is confirmed; if that copy fails, the message goes back
 * to the queue (nack with requeue), so the consumer never stalls on it.
 */
export class Worker {
  /** The inbox's consumer name: shared by all instances of this worker, so they deduplicate together. */
  readonly consumer: string;
  private readonly session: ChannelSession<ConfirmChannel>;
  private readonly types: readonly string[];
  private readonly inFlight = new Set<Promise<void>>();
  private consumerTag: string | undefined;
  /** Messages waiting for the next group transaction (see inGroup). */
  private readonly waiting: Member[] = [];
  private groupRunning = false;
  /** Copies (retry, wait, park) the broker returned as unroutable, by their x-copy-id. */
  private readonly returned = new Set<string>();

  constructor(private readonly options: WorkerOptions) {
    this.consumer = options.topology.workerQueue;
    this.types = Object.keys(options.handlers);
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

  /**
   * Idempotent: cancels the consumer, lets in-flight messages finish (each bounded by the confirm
   * deadline), closes the channel; unacked messages go back to the queue with it.
   */
  stop(): Promise<void> {
    return this.session.stop(async (channel) => {
      // Bounded: a broker behind a dead link never answers, and closing the channel cancels too.
      if (this.consumerTag)
        await Promise.race([channel.cancel(this.consumerTag).catch(() => {}), sleep(1_000)]);
      await Promise.allSettled([...this.inFlight]);
    });
  }

  private track(work: Promise<void>): void {
    const guarded = work.catch((error: unknown) =>
      this.options.log.error({ err: error }, 'message processing failed; it will be redelivered'),
    );
    this.inFlight.add(guarded);
    void guarded.finally(() => this.inFlight.delete(guarded));
  }

  private async process(channel: ConfirmChannel, message: ConsumeMessage): Promise<void> {
    const { log, metrics } = this.options;
    const startedAt = performance.now();
    let outcome: Outcome;
    try {
      outcome = await this.decide(channel, message);
    } catch (error) {
      // A retry, wait or park copy was not confirmed (returned, nacked, timed out, channel
      // closed): give the message back to the queue rather than hold it unacked for ever.
      log.warn({ err: error, messageId: message.properties.messageId }, 'could not settle message; requeued');
      metrics.workerHandled.inc({ outcome: 'requeued' });
      try {
        channel.nack(message, false, true);
      } catch {
        // Channel closed: the broker requeues it anyway.
      }
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
  }

  private async decide(channel: ConfirmChannel, message: ConsumeMessage): Promise<Outcome> {
    const { log, maxAttempts, retryDelayMs, topology, maxMessageBytes } = this.options;
    const attempts = attemptsSoFar(message) + 1;
    const redelivered = redeliveries(message);
    if (redelivered >= MAX_REDELIVERIES) {
      await this.park(
        channel,
        message,
        new PermanentFailure(`redelivered ${redelivered} times without being settled`),
        attempts,
      );
      return 'parked';
    }
    let envelope: EventEnvelope;
    let handler: AnyHandler | undefined;
    try {
      envelope = parseEnvelope(message.content, message.properties.messageId, maxMessageBytes);
      handler = this.options.handlers[envelope.type];
      if (!handler) throw new PermanentFailure(`no handler for event type "${envelope.type}"`);
    } catch (error) {
      await this.park(channel, message, error, attempts);
      return 'parked';
    }
    let decision: Decision;
    try {
      decision = await this.inGroup(envelope, handler);
    } catch (error) {
      if (error instanceof PermanentFailure) {
        await this.park(channel, message, error, attempts, envelope);
        return 'parked';
      }
      // The database being away (restart, failover, deadlock) is nobody's fault in the message:
      // it waits in the retry queue like any failure but the attempt is not counted, so a long
      // outage delays messages without ever parking them.
      const counted = isTransientDatabaseError(error, rollbackFailureOf(error)) ? attempts - 1 : attempts;
      if (counted >= maxAttempts) {
        await this.park(channel, message, error, counted, envelope);
        return 'parked';
      }
      log.warn(
        { err: error, eventId: envelope.eventId, attempts: counted, retryInMs: retryDelayMs },
        'handler failed; retrying later',
      );
      await this.send(channel, topology.workerRetryQueue, message, counted, error, String(retryDelayMs));
      return 'retried';
    }
    if (decision.kind === 'waiting') {
      log.debug(
        { eventId: envelope.eventId, missing: decision.missing },
        'earlier events not handled yet; waiting',
      );
      await this.send(
        channel,
        topology.workerWaitQueue,
        message,
        attempts - 1,
        'waiting for earlier events of its aggregate',
        String(this.options.orderWaitMs),
      );
      return 'waiting';
    }
    if (decision.kind === 'handled') {
      const now = Date.now();
      for (const row of decision.history)
        this.options.metrics.handleLatency.observe(secondsSince(row.occurredAt, now));
      this.options.writer.committed(decision.appended);
      this.options.onHistory(decision.history);
    }
    return decision.kind;
  }

  /**
   * Group commit. Messages that arrive while a handling transaction runs wait for it and are
   * then handled together, in one transaction: one read of their stored events, one history
   * append and one COMMIT for the group instead of for each message. Under light load a
   * group is one message and nothing waits that would not have; as load grows, groups grow and
   * the database work per message shrinks, instead of the queue growing. No message waits for a
   * group to fill.
   *
   * If the group's transaction fails for any reason, nothing of it was written and each message
   * is handled again on its own, with no write deferred to the COMMIT, so a failure (a bad
   * event, a handler's error, a deadlock, an outage) is attributed to the message it belongs to
   * and retried, waited or parked exactly as it would have been alone. A group of one is handled
   * again only if a deferred write failed (see runGroup).
   */
  private inGroup(claim: EventEnvelope, handler: AnyHandler): Promise<Decision> {
    return new Promise<Decision>((resolve, reject) => {
      this.waiting.push({ claim, handler, resolve, reject });
      this.runGroups();
    });
  }

  private runGroups(): void {
    if (this.groupRunning || this.waiting.length === 0) return;
    this.groupRunning = true;
    // In the order the group is handled in (handleGroup), so that members report their history
    // rows in position order and the live feed beside takes them without a read.
    const group = this.waiting
      .splice(0, this.options.prefetch)
      .sort((a, b) => compareClaims(a.claim, b.claim));
    void this.runGroup(group).finally(() => {
      this.groupRunning = false;
      this.runGroups();
    });
  }

  private async runGroup(group: readonly Member[]): Promise<void> {
    const alone = (member: Member) =>
      this.handleAlone(member.claim, member.handler).then(member.resolve, member.reject);
    let decisions: readonly Decision[];
    const attempt: Attempt = { firstDeferred: false };
    try {
      decisions = await this.handleGroup(group, { deferred: true, attempt });
    } catch (error) {
      // A message alone is handled again only if its deferred writes may be what failed, and not
      // for an outage or a deadlock, which the retry queue takes care of. Anything else (its
      // handler threw, say) is its own failure as it is, and its handler ran once.
      const deferredWriteFailed =
        failedInDeferredWrite(error) && !isTransientDatabaseError(error, rollbackFailureOf(error));
      const member = group[0] as Member;
      if (group.length === 1 && !deferredWriteFailed) {
        // Deferring, its handler ran before anything looked for a duplicate. A copy of an event
        // handled before is a duplicate, whatever its handler does now.
        if (attempt.firstDeferred && (await this.handledBefore(member.claim))) {
          member.resolve({ kind: 'duplicate' });
        } else member.reject(error);
        return;
      }
      this.options.log.debug(
        { err: error, messages: group.length },
        'group transaction failed; handling its messages one by one, each statement in its turn',
      );
      await Promise.all(group.map(alone));
      return;
    }
    for (const [i, member] of group.entries()) member.resolve(decisions[i] as Decision);
  }

  /** Whether the aggregate's progress is at `claim`'s sequence or past it; false if unknown. */
  private async handledBefore(claim: EventEnvelope): Promise<boolean> {
    const key = {
      consumer: this.consumer,
      aggregateType: claim.aggregateType,
      aggregateId: claim.aggregateId,
    };
    try {
      return ((await lastHandled(this.options.db, key)) ?? 0) >= claim.sequence;
    } catch {
      return false;
    }
  }

  /**
   * One transaction for one message (see the class comment for the steps), each statement in its
   * turn: whatever it fails with is the message's own failure.
   */
  private handleAlone(claim: EventEnvelope, handler: AnyHandler): Promise<Decision> {
    return this.handleGroup([{ claim, handler }], { deferred: false }).then(
      (decisions) => decisions[0] as Decision,
    );
  }

  /**
   * One transaction for a group of messages, given in compareClaims order (runGroup sorts it):
   * each decided as if alone, in the order of their aggregates and sequences (so the progress
   * rows are locked in one order by every worker, and a group holding an aggregate's next events
   * handles them in turn), the history appended once.
   *
   * `deferred`: an aggregate's first event records its progress and inbox rows, and handlers
   * their `write`s, with the COMMIT (see the class comment), where the transaction can defer
   * writes. Any other step first sends what was deferred, since it reads the progress rows those
   * writes make. `attempt` learns whether a first event was handled so.
   */
  private async handleGroup(
    group: readonly Pick<Member, 'claim' | 'handler'>[],
    { deferred, attempt }: { readonly deferred: boolean; readonly attempt?: Attempt },
  ): Promise<readonly Decision[]> {
    const handledAt = new Date();
    return transaction(this.options.db, async (tx) => {
      const deferring = deferred && defersWrites(tx);
      const stored = await findEvents(
        tx,
        group.map((m) => m.claim.eventId),
      );
      const decisions: Decision[] = new Array(group.length);
      const handled: Array<{ index: number; appended: AppendedEvent[] }> = [];
      const rows: NewHistoryRow[] = [];
      for (const [index, { claim, handler }] of group.entries()) {
        const result = await this.handleOne(
          tx,
          { claim, handler, stored: stored.get(claim.eventId), handledAt },
          deferring,
          attempt,
        );
        if ('kind' in result) {
          decisions[index] = result;
          continue;
        }
        handled.push({ index, appended: result.appended });
        rows.push(result.row);
      }
      // Last, right before the commit: the counter's lock orders commits (history/store.ts).
      const history = await appendHistoryAndCommit(tx, rows);
      handled.forEach(({ index, appended }, i) => {
        decisions[index] = { kind: 'handled', appended, history: [history[i] as HistoryRow] };
      });
      return decisions;
    });
  }

  /** Decides one message inside the group's transaction; a handled one returns its history row. */
  private async handleOne(
    tx: Transaction,
    {
      claim,
      handler,
      stored,
      handledAt,
    }: { claim: EventEnvelope; handler: AnyHandler; stored: EventEnvelope | undefined; handledAt: Date },
    deferred: boolean,
    attempt?: Attempt,
  ): Promise<Exclude<Decision, { kind: 'handled' }> | { appended: AppendedEvent[]; row: NewHistoryRow }> {
    const event = await this.storedEvent(tx, claim, handler, stored);
    if (event === 'handled before') return { kind: 'duplicate' };
    const key: AggregateKey = {
      consumer: this.consumer,
      aggregateType: event.aggregateType,
      aggregateId: event.aggregateId,
    };
    // The common case, an aggregate's first event seen for the first time: with the COMMIT when
    // deferred, else one round trip of its own.
    let first = false;
    if (deferred && event.sequence === 1) {
      await recordFirstEventAtCommit(tx, key, event.eventId, handledAt);
      first = true;
      if (attempt) attempt.firstDeferred = true;
    } else {
      await flushDeferredWrites(tx);
      first = event.sequence === 1 && (await recordFirstEvent(tx, key, event.eventId, handledAt));
    }
    const taken: Progress | 'handled' = first
      ? { last: 0, written: true }
      : await takeProgress(tx, key, event.sequence);
    // Past the progress mark with no inbox row: an event parked and passed (passParked), then
    // requeued by an operator (dead-letters.ts). It is handled now, after its successors, and
    // the mark stays where they left it. Anything else past the mark has its inbox row (inbox
    // rows outlive the outbox's), so this insert finds the duplicate.
    let passed = false;
    if (taken === 'handled') {
      if (!(await recordInbox(tx, this.consumer, event.eventId, handledAt))) return { kind: 'duplicate' };
      passed = true;
    }
    const progress: Progress = taken === 'handled' ? { last: event.sequence, written: true } : taken;
    const last = progress.last;
    if (event.sequence > last + 1) {
      const missing = await countPredecessors(
        tx,
        event.aggregateType,
        event.aggregateId,
        last,
        event.sequence,
        this.types,
      );
      if (missing > 0) return { kind: 'waiting', missing };
    }
    if (!first && !passed && !(await recordInbox(tx, this.consumer, event.eventId, handledAt))) {
      return { kind: 'duplicate' };
    }
    const appended: AppendedEvent[] = [];
    await handler.handle(tx, event, {
      handledAt,
      append: async (next) => {
        appended.push(await this.options.writer.append(tx, next));
      },
      write: async (statement) => {
        if (deferred) await writeAtCommit(tx, statement);
        else await execute(tx, statement);
      },
    });
    await setProgress(tx, key, event.sequence, progress);
    return {
      appended,
      row: {
        eventId: event.eventId,
        type: event.type,
        aggregateType: event.aggregateType,
        aggregateId: event.aggregateId,
        sequence: event.sequence,
        occurredAt: event.occurredAt,
        handledAt,
        handler: handler.name,
        payload: event.payload,
      },
    };
  }

  /**
   * The stored event the message claims to be, checked field by field. The handler gets the
   * stored one, so nothing a sender puts in a message reaches an effect.
   */
  private async storedEvent(
    tx: Transaction,
    claim: EventEnvelope,
    handler: AnyHandler,
    stored: EventEnvelope | undefined,
  ): Promise<StoredEvent | 'handled before'> {
    if (!stored) {
      // A late copy of a message handled long ago, whose outbox row retention has pruned: the
      // inbox, kept at least as long as the outbox (INBOX_RETENTION ≥ OUTBOX_RETENTION), knows it.
      if (await wasHandled(tx, this.consumer, claim.eventId)) return 'handled before';
      throw new ForeignMessage(
        'no stored event with this id (not written by this service, or pruned by OUTBOX_RETENTION)',
      );
    }
    for (const field of ['type', 'aggregateType', 'aggregateId', 'sequence'] as const) {
      if (stored[field] !== claim[field]) {
        throw new ForeignMessage(`message ${field} disagrees with the stored event`);
      }
    }
    // The same instant may be spelled with another offset; any other difference is a forgery.
    if (Date.parse(claim.occurredAt) !== Date.parse(stored.occurredAt)) {
      throw new ForeignMessage('message occurredAt disagrees with the stored event');
    }
    if (canonicalJson(stored.payload) !== canonicalJson(claim.payload)) {
      throw new ForeignMessage('message payload disagrees with the stored event');
    }
    const payload = handler.payload.safeParse(stored.payload);
    if (!payload.success) {
      const issue = payload.error.issues[0];
      throw new PermanentFailure(
        `${stored.type} payload ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
      );
    }
    return {
      eventId: stored.eventId,
      type: stored.type,
      aggregateType: stored.aggregateType,
      aggregateId: stored.aggregateId,
      sequence: stored.sequence,
      occurredAt: new Date(stored.occurredAt),
      payload: payload.data,
    };
  }

  private async park(
    channel: ConfirmChannel,
    message: ConsumeMessage,
    error: unknown,
    attempts: number,
    envelope?: EventEnvelope,
  ): Promise<void> {
    this.options.log.error(
      { reason: errorText(error), messageId: message.properties.messageId, attempts },
      'message parked in the dead-letter queue',
    );
    await this.send(
      channel,
      this.options.topology.workerDeadLetterQueue,
      message,
      attempts,
      error,
      undefined,
      {
        [PARKED_AT_HEADER]: new Date().toISOString(),
      },
    );
    // A real event given up on no longer holds back its aggregate's later events.
    if (envelope && !(error instanceof ForeignMessage)) {
      const key = {
        consumer: this.consumer,
        aggregateType: envelope.aggregateType,
        aggregateId: envelope.aggregateId,
      };
      await passParked(this.options.db, key, envelope.sequence).catch((e: unknown) =>
        this.options.log.warn({ err: e }, 'could not record a parked event as passed'),
      );
    }
  }

  /**
   * Sends a copy of `message`, carrying its attempt count and last error, straight to a queue
   * and waits (with a deadline) for the broker's confirm. Mandatory, like the relay's
   * publishes: were the queue missing, the broker would confirm the copy and drop it, and
   * acking the original would lose the message.
   */
  private send(
    channel: ConfirmChannel,
    queue: string,
    message: ConsumeMessage,
    attempts: number,
    error: unknown,
    expiration?: string,
    extraHeaders: Record<string, string> = {},
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
        ...extraHeaders,
      },
    };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no confirm for the copy to ${queue} within ${this.options.confirmTimeoutMs} ms`));
        // Late confirms cannot be matched any more; a new channel starts clean.
        channel.close().catch(() => {});
      }, this.options.confirmTimeoutMs);
      try {
        channel.sendToQueue(queue, message.content, options, (err) => {
          clearTimeout(timer);
          if (this.returned.delete(copy)) reject(new Error(`queue ${queue} does not exist`));
          else if (err) reject(err);
          else resolve();
        });
      } catch (err) {
        clearTimeout(timer);
        reject(err);
      }
    });
  }
}

function errorText(error: unknown): string {
  return (error instanceof Error ? `${error.name}: ${error.message}` : String(error)).slice(0, 500);
}
