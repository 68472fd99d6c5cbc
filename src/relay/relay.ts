import { randomBytes, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { isOutage, type Publisher } from '../broker/publisher.js';
import type { Database } from '../db/client.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/index.js';
import type { Handoff } from '../outbox/handoff.js';
import {
  type ClaimedEvent,
  claimBatch,
  type Lease,
  markFailed,
  markPublished,
  type RetryPolicy,
  releaseLeases,
  releaseStranded,
} from '../outbox/store.js';
import { Loop } from '../support/loop.js';
import { backoffDelay, sleep } from '../support/sleep.js';
import { toMessage } from './message.js';

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
  /** Lease owner name; defaults to host:pid:random. */
  readonly owner?: string;
}

const DB_RETRY_BASE_MS = 100;
const DB_RETRY_MAX_MS = 5000;
const SETTLE_ATTEMPTS = 5;
/** How long published marks of handed-over events are gathered before one statement writes them. */
const MARK_DELAY_MS = 25;
/** How often a relay looks for held rows stranded behind a published one (releaseStranded). */
const SWEEP_INTERVAL_MS = 30_000;

/** Where a batch came from: a lane's claim, or writers in this process (handoff). */
type Source = { readonly lane: number } | 'handoff';

/**
 * Moves committed outbox events to the broker. It knows events, leases and the broker, and
 * nothing of what the events are about.
 *
 * Two ways in. Writers in the same process hand their committed rows over directly (publish(),
 * see outbox/handoff.ts). Everything else is claimed by the lanes: each lane is a Loop that
 * claims a batch (a short transaction that writes a lease and commits), publishes it with
 * confirms, settles it (mark published, or schedule a retry / park as dead), and goes again at
 * once while there is work. With nothing due it sleeps for the poll interval, unless wake() is
 * called: by the broker hint of wakeup.ts, by a writer in this process, or by the relay itself
 * when a mark released the held next event of an aggregate.
 *
 * Order: an aggregate has at most one event that is due or in flight; its successors are held
 * in the table until it is marked published (outbox/store.ts), so lanes, relays and the
 * hand-off may publish in any interleaving and each aggregate's events still reach the exchange
 * in sequence order. A failing event holds back only its own aggregate.
 *
 * Crash safety comes from the lease: when a relay dies holding rows, they become due when the
 * lease expires and any relay claims them. Correctness under takeover comes from fencing:
 * settlements only touch rows whose lease token is still ours.
 */
export class Relay implements Handoff {
  readonly owner: string;
  /** The lease writers in this process put on rows they hand over. */
  readonly lease: Lease;
  private handedOver: ClaimedEvent[] = [];
  private flushScheduled = false;
  private readonly inFlight = new Set<Promise<void>>();
  private toMark: ClaimedEvent[] = [];
  private markTimer: NodeJS.Timeout | undefined;
  private readonly lanes: Loop[] = [];
  /** Now and then releases successors left held behind published events (releaseStranded). */
  private readonly sweeper: Loop;
  private readonly stopController = new AbortController();
  private stopping: Promise<void> | undefined;

  constructor(private readonly options: RelayOptions) {
    this.owner = options.owner ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    // One token for every handed-over row of this relay's life. Fencing holds all the same: a
    // relay that takes a row over writes its own token into it.
    this.lease = { owner: this.owner, token: randomUUID(), durationMs: options.leaseMs };
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

  /**
   * Publishes rows a writer in this process committed leased to us. Rows handed over in the
   * same tick go out as one batch, so concurrent requests share a confirm round trip and one
   * settlement statement.
   */
  publish(events: readonly ClaimedEvent[]): void {
    this.handedOver.push(...events);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const batch = this.handedOver.splice(0);
      if (batch.length > 0) this.track(this.publishAndSettle(batch, this.lease.token, 'handoff'));
    });
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
      // Anything still waiting for the next tick, then every handed-over batch in flight.
      await new Promise((resolve) => setImmediate(resolve));
      await Promise.all([...this.inFlight]);
      this.flushMarks();
      await Promise.all([...this.inFlight]);
      this.options.log.info({ owner: this.owner }, 'relay stopped');
    })();
    return this.stopping;
  }

  /** One turn of a lane: claim, publish, settle. Throws (the Loop backs off) when it cannot claim. */
  private async runBatch(lane: number, signal: AbortSignal): Promise<'busy' | 'idle'> {
    const { db, log, batchSize, leaseMs, metrics } = this.options;
    // Claim only what can be published now. During a broker outage the rows stay unleased and
    // untouched, so an outage does not push events towards dead.
    await this.options.publisher.ready(signal);
    if (signal.aborted) return 'idle';
    const token = randomUUID();
    const startedAt = performance.now();
    const batch = await claimBatch(db, { owner: this.owner, token, durationMs: leaseMs }, batchSize);
    if (batch.length === 0) return 'idle';
    const takeovers = batch.filter((e) => e.takenOver).length;
    if (takeovers > 0) {
      metrics.leaseTakeovers.inc(takeovers);
      log.info({ lane, takeovers }, 'took over events whose lease had expired');
    }
    const claimedAt = performance.now();
    await this.publishAndSettle(batch, token, { lane });
    const seconds = (performance.now() - startedAt) / 1000;
    metrics.batchDuration.observe(seconds);
    log.debug(
      { lane, events: batch.length, claimMs: round(claimedAt - startedAt), totalMs: round(seconds * 1000) },
      'batch settled',
    );
    return 'busy';
  }

  private async publishAndSettle(
    batch: readonly ClaimedEvent[],
    token: string,
    source: Source,
  ): Promise<void> {
    const { db, log, metrics, retry } = this.options;
    const ids = batch.map((e) => e.id);
    if (this.stopped || (source === 'handoff' && !this.options.publisher.isReady)) {
      // Claimed just as the stop came, or handed over while the broker is away: give it
      // straight back (due now, no attempt counted) rather than start publishing.
      await this.settle('release', () => releaseLeases(db, ids, token));
      return;
    }
    const outcomes = await this.options.publisher.publishAll(
      batch.map(toMessage),
      this.stopController.signal,
    );

    const published: ClaimedEvent[] = [];
    // Handed back as they are (no attempt counted, due now): never sent for want of a channel,
    // lost with a closing channel, or still unconfirmed at a stop. Not the events' fault.
    const handBack: number[] = [];
    const failed = new Map<string, number[]>();
    outcomes.forEach((outcome, i) => {
      const event = batch[i] as ClaimedEvent;
      if (outcome.ok) {
        published.push(event);
        return;
      }
      metrics.publishFailures.inc({ reason: outcome.reason });
      if (isOutage(outcome) || this.stopped) handBack.push(event.id);
      else {
        const same = failed.get(outcome.error);
        if (same) same.push(event.id);
        else failed.set(outcome.error, [event.id]);
      }
    });

    if (source === 'handoff') this.markLater(published);
    else await this.markNow(published, token, source);

    if (handBack.length > 0) {
      const released = await this.settle('release', () => releaseLeases(db, handBack, token));
      if (released) {
        log.info(
          { source, released, why: this.stopped ? 'stopping' : 'broker connection lost' },
          'handed back unpublished events',
        );
      }
    }
    for (const [error, failedIds] of failed) {
      const dead = await this.settle('mark failed', () => markFailed(db, failedIds, token, error, retry));
      if (dead && dead.length > 0) {
        metrics.deadEvents.inc(dead.length);
        log.error({ source, ids: dead, error }, 'events parked as dead after their last attempt');
      } else {
        log.warn({ source, count: failedIds.length, error }, 'publish failed; will retry with back-off');
      }
    }
  }

  private async markNow(events: readonly ClaimedEvent[], token: string, source: Source): Promise<void> {
    if (events.length === 0) return;
    const { db, log, metrics } = this.options;
    const result = await this.settle('mark published', () => markPublished(db, events, token));
    if (result === undefined) return;
    metrics.published.inc(result.marked);
    // The held next events of these aggregates are due now: claim them without waiting a poll.
    if (result.released > 0) this.wake();
    if (result.marked < events.length) {
      metrics.fencedOut.inc(events.length - result.marked);
      log.warn(
        { source, fenced: events.length - result.marked },
        'lease was taken over before settling; left to the new owner',
      );
    }
  }

  /**
   * Handed-over events arrive one or two at a time; marking each batch at once would cost a
   * statement per event. Nothing waits for the mark (the broker already has the message), so
   * marks are gathered for a few milliseconds and written in one statement. A crash in between
   * only means the lease expires and the events are published again: a duplicate, never a loss.
   */
  private markLater(events: readonly ClaimedEvent[]): void {
    this.toMark.push(...events);
    if (this.toMark.length >= this.options.batchSize) {
      this.flushMarks();
      return;
    }
    this.markTimer ??= setTimeout(() => this.flushMarks(), MARK_DELAY_MS);
  }

  private flushMarks(): void {
    clearTimeout(this.markTimer);
    this.markTimer = undefined;
    const events = this.toMark.splice(0);
    if (events.length === 0) return;
    this.track(this.markNow(events, this.lease.token, 'handoff'));
  }

  private track(work: Promise<void>): void {
    const guarded = work.catch((error: unknown) =>
      this.options.log.error(
        { err: error },
        'handed-over work failed; its lease will expire and a relay retry it',
      ),
    );
    this.inFlight.add(guarded);
    void guarded.finally(() => this.inFlight.delete(guarded));
  }

  /**
   * Runs a settlement statement, retrying while the database is unreachable. If it still fails,
   * the lease runs out and the events are published again: a duplicate, which at-least-once
   * delivery and idempotent receivers absorb, never a loss.
   */
  private async settle<T>(what: string, statement: () => Promise<T>): Promise<T | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await statement();
      } catch (error) {
        if (attempt >= SETTLE_ATTEMPTS) {
          this.options.log.error(
            { err: error, what },
            'settlement failed; the lease will expire and the events be retried',
          );
          return undefined;
        }
        await sleep(backoffDelay(attempt, DB_RETRY_BASE_MS, DB_RETRY_MAX_MS));
      }
    }
  }
}

const round = (ms: number) => Math.round(ms * 100) / 100;
