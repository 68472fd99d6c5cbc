import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { hostname } from 'node:os';
import { isOutage, type Publisher } from '../broker/publisher.js';
import type { Database } from '../db/client.js';
import type { Logger } from '../log.js';
import { type Metrics, secondsSince } from '../metrics/index.js';
import { claimAndSettle } from '../outbox/claim.js';
import { durabilityBarrier } from '../outbox/durability.js';
import type { Handoff } from '../outbox/handoff.js';
import type { ClaimedEvent, Lease, RetryPolicy } from '../outbox/rows.js';
import { releaseStranded } from '../outbox/settle.js';
import { Condition } from '../support/log-limit.js';
import { Loop } from '../support/loop.js';
import { type BatchOutcome, HandedOver } from './handed-over.js';
import { toMessage } from './message.js';
import { traceDead, tracePublish } from './tracing.js';

export interface RelayOptions {
  readonly db: Database;
  readonly publisher: Publisher;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly batchSize: number;
  /** Batches one relay works on at once; each lane claims its own batch with SKIP LOCKED. */
  readonly lanes: number;
  readonly pollIntervalMs: number;
  readonly leaseMs: number;
  readonly retry: RetryPolicy;
  /** The exchange published to, for the publish span (messaging.destination.name). */
  readonly exchange?: string;
  /** Lease owner name; defaults to host:pid:random. */
  readonly owner?: string;
  /**
   * Commit the durability barrier after each claim and before its publish (outbox/durability.ts):
   * on unless the server makes a commit visible only once it is durable. Default true.
   */
  readonly durabilityBarrier?: boolean;
}

const DB_RETRY_BASE_MS = 100;
const DB_RETRY_MAX_MS = 2000;
/** How often a relay looks for held rows stranded behind a published one (releaseStranded). */
const SWEEP_INTERVAL_MS = 30_000;

/**
 * Moves committed outbox events to the broker. It knows events, leases and the broker, and
 * nothing of what the events are about.
 *
 * Two ways in. Writers in the same process hand their committed rows over directly (publish(),
 * see outbox/handoff.ts; handed-over.ts publishes and settles them): those rows are written
 * leased to this relay. Everything else is
 * claimed by the lanes: each lane is a Loop that claims a batch by locking its rows, publishes
 * it with confirms and settles it (mark published, or schedule a retry / park as dead) in the
 * same transaction (claimAndSettle in outbox/claim.ts), and goes again at once while there is
 * work. With nothing due it sleeps for the poll interval, unless wake() is called: by a hint
 * from another process (broker/hint.ts), by a writer in this process, or by the relay itself when a mark
 * released the held next event of an aggregate.
 *
 * Order: an aggregate has at most one event that is due or in flight; its successors are held
 * in the table until it is marked published (outbox/settle.ts), so lanes, relays and the
 * hand-off may publish in any interleaving and each aggregate's events still reach the exchange
 * in sequence order. A failing event holds back only its own aggregate.
 *
 * Crash safety: a lane's claim is its open transaction, so a relay that dies frees its batch at
 * once (the server rolls back when the connection closes), and one that freezes frees it after
 * RELAY_LEASE_MS (the session's wait_timeout); its settlement then fails on the closed
 * connection and writes nothing. Handed-over rows carry a lease instead: they become due when
 * it expires, and settlements of them only touch rows whose lease token is still ours (fencing).
 */
export class Relay implements Handoff {
  readonly owner: string;
  /** The lease writers in this process put on rows they hand over. */
  readonly lease: Lease;
  private readonly handedOver: HandedOver;
  private readonly lanes: Loop[] = [];
  /** Now and then releases successors left held behind published events (releaseStranded). */
  private readonly sweeper: Loop;
  private readonly refused: Condition;
  private readonly stopController = new AbortController();
  /** This relay's first slot of the durability barrier; its lanes take the ones after it. */
  private readonly slot = randomInt(1 << 16);
  private stopping: Promise<void> | undefined;

  constructor(private readonly options: RelayOptions) {
    this.owner = options.owner ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    // One token for every handed-over row of this relay's life. Fencing holds all the same: a
    // relay that takes a row over writes its own token into it.
    this.lease = { owner: this.owner, token: randomUUID(), durationMs: options.leaseMs };
    this.refused = new Condition(options.log, 'publishes refused');
    // Each publish waiting for a channel listens to the stop: during a broker cut every hand-off
    // batch waits (up to the confirm timeout), more than Node's 10 before it warns of a leak.
    setMaxListeners(0, this.stopController.signal);
    this.handedOver = new HandedOver({
      ...options,
      lease: this.lease,
      stopped: () => this.stopped,
      ready: () => options.publisher.isReady,
      publishBatch: (batch) => this.publishBatch(batch),
      reportDead: (ids, context, sent) => this.reportDead(ids, context, sent),
      wake: () => this.wake(),
    });
    this.sweeper = new Loop(
      {
        name: 'relay held-row sweep',
        log: options.log,
        idleMs: SWEEP_INTERVAL_MS,
        backoffBaseMs: DB_RETRY_BASE_MS,
        backoffMaxMs: SWEEP_INTERVAL_MS,
      },
      async () => {
        const released = await releaseStranded(options.db, options.batchSize);
        if (released > 0) {
          options.log.warn({ released }, 'released events held behind already published ones');
          this.wake();
        }
        return released === options.batchSize ? 'busy' : 'idle';
      },
    );
    for (let lane = 0; lane < options.lanes; lane++) {
      this.lanes.push(
        new Loop(
          {
            name: `relay lane ${lane}`,
            condition: 'relay lanes failing',
            log: options.log,
            idleMs: options.pollIntervalMs,
            backoffBaseMs: DB_RETRY_BASE_MS,
            backoffMaxMs: DB_RETRY_MAX_MS,
          },
          ({ signal }) => this.runBatch(lane, signal),
        ),
      );
    }
  }

  /** Rows a writer in this process committed leased to us: published at once (handed-over.ts). */
  publish(events: readonly ClaimedEvent[]): void {
    this.handedOver.publish(events);
  }

  start(): void {
    for (const lane of this.lanes) lane.start();
    this.sweeper.start();
    this.options.log.info({ owner: this.owner, lanes: this.options.lanes }, 'relay started');
  }

  /** There may be new events: end any idle wait now. Cheap; call it as often as you like. */
  wake(): void {
    for (const lane of this.lanes) lane.wake();
  }

  private get stopped(): boolean {
    return this.stopController.signal.aborted;
  }

  /**
   * Idempotent. Stops claiming, lets each lane finish the batch in hand (its confirms are bounded
   * by the confirm timeout), settles it, and hands back any lease not settled.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.stopController.abort();
      await Promise.all([...this.lanes.map((lane) => lane.stop()), this.sweeper.stop()]);
      await this.handedOver.drain();
      this.options.log.info({ owner: this.owner }, 'relay stopped');
    })();
    return this.stopping;
  }

  /**
   * One turn of a lane: claim a batch (its row locks held until it is settled), publish it,
   * settle it, in one transaction (claimAndSettle). Throws (the Loop backs off) when the
   * database fails; whatever was claimed is then due again, and a batch already published is
   * published again: a duplicate, never a loss.
   */
  private async runBatch(lane: number, signal: AbortSignal): Promise<'busy' | 'idle'> {
    const { db, log, batchSize, leaseMs, metrics, retry } = this.options;
    // Claim only what can be published now. During a broker outage the rows stay untouched,
    // so an outage does not push events towards dead.
    await this.options.publisher.ready(signal);
    if (signal.aborted) return 'idle';
    const startedAt = performance.now();
    let claimedAt = startedAt;
    // What was sent and how it failed, for the trace of any event that goes dead.
    let sent: { batch: readonly ClaimedEvent[]; failed: ReadonlyMap<string, number[]> } | undefined;
    const outcome = await claimAndSettle(
      db,
      { limit: batchSize, holdSeconds: Math.ceil(leaseMs / 1000), retry },
      async (batch) => {
        claimedAt = performance.now();
        // Claimed just as the stop came: leave it all due for the next relay.
        if (this.stopped) return { published: [], failed: new Map() };
        // What is handed back is left as it is: due again once this transaction ends.
        const result = await this.publishBatch(batch);
        sent = { batch, failed: result.failed };
        return result;
      },
      this.options.durabilityBarrier === false ? undefined : () => durabilityBarrier(db, this.slot + lane),
    );
    if (outcome === undefined) return 'idle';
    if (outcome.takenOver > 0) {
      metrics.leaseTakeovers.inc(outcome.takenOver);
      log.info({ lane, takeovers: outcome.takenOver }, 'took over events whose hand-off lease had expired');
    }
    metrics.published.inc(outcome.marked);
    this.reportDead(outcome.dead, { lane }, sent);
    // The held next events of these aggregates are due now: claim them without waiting a poll.
    if (outcome.released > 0) this.wake();
    const seconds = (performance.now() - startedAt) / 1000;
    metrics.batchDuration.observe(seconds);
    log.debug(
      {
        lane,
        events: outcome.claimed,
        claimMs: round(claimedAt - startedAt),
        totalMs: round(seconds * 1000),
      },
      'batch settled',
    );
    return 'busy';
  }

  /**
   * Publishes a batch with confirms and sorts the outcomes: confirmed; refused by the broker
   * (nacked, returned, timed out, not encodable: the event's attempt counts), by error; and
   * handed back as they are (never sent for want of a channel, lost with a closing channel, or
   * unconfirmed at a stop: not the events' fault, no attempt counted).
   */
  private async publishBatch(batch: readonly ClaimedEvent[]): Promise<BatchOutcome> {
    const outcomes = await tracePublish(this.options.exchange ?? '', batch, () =>
      this.options.publisher.publishAll(batch.map(toMessage), this.stopController.signal),
    );
    const published: ClaimedEvent[] = [];
    const handBack: number[] = [];
    const failed = new Map<string, number[]>();
    const now = Date.now();
    outcomes.forEach((outcome, i) => {
      const event = batch[i] as ClaimedEvent;
      if (outcome.ok) {
        this.options.metrics.publishLatency.observe(secondsSince(event.envelope.occurredAt, now));
        published.push(event);
        return;
      }
      this.options.metrics.publishFailures.inc({ reason: outcome.reason });
      if (isOutage(outcome) || this.stopped) handBack.push(event.id);
      else {
        const same = failed.get(outcome.error);
        if (same) same.push(event.id);
        else failed.set(outcome.error, [event.id]);
      }
    });
    if (failed.size === 0) this.refused.cleared();
    for (const [error, ids] of failed) {
      this.refused.occurred('warn', { count: ids.length, error }, 'publish failed; will retry with back-off');
    }
    return { published, failed, handBack };
  }

  private reportDead(
    ids: readonly number[],
    context: Record<string, unknown>,
    sent: { batch: readonly ClaimedEvent[]; failed: ReadonlyMap<string, number[]> } | undefined,
  ): void {
    if (ids.length === 0) return;
    if (sent) traceDead(this.options.exchange ?? '', ids, sent.batch, sent.failed);
    this.options.metrics.deadEvents.inc(ids.length);
    this.options.log.error({ ...context, ids }, 'events parked as dead after their last attempt');
  }
}

const round = (ms: number) => Math.round(ms * 100) / 100;
