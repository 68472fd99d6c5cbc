import { randomBytes, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Publisher } from '../broker/publisher.js';
import type { Database } from '../db/client.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/index.js';
import {
  type ClaimedEvent,
  claimBatch,
  type Lease,
  markFailed,
  markPublished,
  type RetryPolicy,
  releaseLeases,
} from '../outbox/store.js';
import { backoffDelay, sleep } from '../support/sleep.js';
import type { Handoff } from './handoff.js';
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

/**
 * Moves committed outbox events to the broker.
 *
 * Two ways in. Writers in the same process hand their committed rows over directly (publish(),
 * see handoff.ts). Everything else is claimed by the lanes: each lane loops: claim a batch (a
 * short transaction that writes a lease and commits), publish it with confirms, settle it (mark
 * published, or schedule a retry / park as dead), and go again at once while there is work.
 * With nothing due it sleeps for the poll interval, unless wake() is called, which the broker
 * hint of relay/wakeup.ts does when another process committed events.
 *
 * Crash safety comes from the lease: when a relay dies holding rows, they become due when the
 * lease expires and any relay claims them. Correctness under takeover comes from fencing:
 * settlements only touch rows whose lease token is still ours.
 */
export class Relay implements Handoff {
  readonly owner: string;
  /** The lease writers in this process put on rows they hand over (see handoff.ts). */
  readonly lease: Lease;
  private handedOver: ClaimedEvent[] = [];
  private flushScheduled = false;
  private readonly inFlight = new Set<Promise<void>>();
  private toMark: number[] = [];
  private markTimer: NodeJS.Timeout | undefined;
  private readonly stopController = new AbortController();
  private wakeController = new AbortController();
  private lanes: Promise<void>[] = [];
  private stopping: Promise<void> | undefined;

  constructor(private readonly options: RelayOptions) {
    this.owner = options.owner ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    // One token for every handed-over row of this relay's life. Fencing holds all the same: a
    // relay that takes a row over writes its own token into it.
    this.lease = { owner: this.owner, token: randomUUID(), durationMs: options.leaseMs };
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
    if (this.lanes.length > 0) return;
    for (let lane = 0; lane < this.options.lanes; lane++) this.lanes.push(this.runLane(lane));
    this.options.log.info({ owner: this.owner, lanes: this.options.lanes }, 'relay started');
  }

  /** There may be new events: end any idle wait now. Cheap; call it as often as you like. */
  wake(): void {
    this.wakeController.abort();
  }

  /**
   * Idempotent. Stops claiming, lets each lane finish the batch in hand (its confirms are bounded
   * by the confirm timeout), settles it, and hands back any lease not settled.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.stopController.abort();
      this.wake();
      await Promise.all(this.lanes);
      // Anything still waiting for the next tick, then every handed-over batch in flight.
      await new Promise((resolve) => setImmediate(resolve));
      await Promise.all([...this.inFlight]);
      this.flushMarks();
      await Promise.all([...this.inFlight]);
      this.options.log.info({ owner: this.owner }, 'relay stopped');
    })();
    return this.stopping;
  }

  private get stopped(): boolean {
    return this.stopController.signal.aborted;
  }

  private async runLane(lane: number): Promise<void> {
    const { db, log, batchSize, leaseMs, pollIntervalMs } = this.options;
    let failures = 0;
    while (!this.stopped) {
      // Taken before the claim: a wake() that arrives while we claim must not be lost.
      const wakeSignal = this.wakeController.signal;
      try {
        // Claim only what can be published now. During a broker outage the rows stay unleased
        // and untouched, so an outage does not push events towards dead.
        await this.options.publisher.ready(this.stopController.signal);
      } catch (error) {
        if (this.stopped) break;
        failures++;
        const delay = backoffDelay(failures, DB_RETRY_BASE_MS, DB_RETRY_MAX_MS);
        log.warn({ err: error, lane, failures, retryInMs: delay }, 'broker not ready; backing off');
        await sleep(delay, this.stopController.signal);
        continue;
      }
      let batch: ClaimedEvent[];
      const token = randomUUID();
      const startedAt = performance.now();
      try {
        batch = await claimBatch(db, { owner: this.owner, token, durationMs: leaseMs }, batchSize);
        failures = 0;
      } catch (error) {
        failures++;
        const delay = backoffDelay(failures, DB_RETRY_BASE_MS, DB_RETRY_MAX_MS);
        log.warn({ err: error, lane, failures, retryInMs: delay }, 'claim failed; backing off');
        await sleep(delay, this.stopController.signal);
        continue;
      }
      if (batch.length === 0) {
        await sleep(pollIntervalMs, wakeSignal, this.stopController.signal);
        if (wakeSignal.aborted && this.wakeController.signal === wakeSignal)
          this.wakeController = new AbortController();
        continue;
      }
      const takeovers = batch.filter((e) => e.takenOver).length;
      if (takeovers > 0) {
        this.options.metrics.leaseTakeovers.inc(takeovers);
        log.info({ lane, takeovers }, 'took over events whose lease had expired');
      }
      const claimedAt = performance.now();
      await this.publishAndSettle(batch, token, lane);
      const seconds = (performance.now() - startedAt) / 1000;
      this.options.metrics.batchDuration.observe(seconds);
      log.debug(
        { lane, events: batch.length, claimMs: round(claimedAt - startedAt), totalMs: round(seconds * 1000) },
        'batch settled',
      );
    }
  }

  private async publishAndSettle(
    batch: readonly ClaimedEvent[],
    token: string,
    lane: number | 'handoff',
  ): Promise<void> {
    const { db, log, metrics, retry } = this.options;
    const ids = batch.map((e) => e.id);
    if (this.stopped || (lane === 'handoff' && !this.options.publisher.isReady)) {
      // Claimed just as the stop came, or handed over while the broker is away: give it
      // straight back (due now, no attempt counted) rather than start publishing.
      await this.settle('release', () => releaseLeases(db, ids, token));
      return;
    }
    const outcomes = await this.options.publisher.publishAll(
      batch.map(toMessage),
      this.stopController.signal,
    );
    // Stopping, or never sent for want of a channel: handed back as it is (no attempt counted,
    // due now), so that another relay, or this one once the broker is back, publishes it at
    // once instead of after the lease or a back-off.
    const stopping = this.stopped || outcomes.some((o) => !o.ok && o.unsent);

    const published: number[] = [];
    const failedByError = new Map<string, number[]>();
    outcomes.forEach((outcome, i) => {
      const id = ids[i] as number;
      if (outcome.ok) published.push(id);
      else {
        const same = failedByError.get(outcome.error);
        if (same) same.push(id);
        else failedByError.set(outcome.error, [id]);
      }
    });

    if (lane === 'handoff') this.markLater(published);
    else await this.markNow(published, token, lane);
    if (stopping) {
      const unsettled = [...failedByError.values()].flat();
      const released = await this.settle('release', () => releaseLeases(db, unsettled, token));
      if (released) log.info({ lane, released }, 'handed back unpublished events on stop');
      return;
    }
    for (const [error, failedIds] of failedByError) {
      metrics.publishFailures.inc({ reason: error.split(':')[0] ?? error }, failedIds.length);
      const dead = await this.settle('mark failed', () => markFailed(db, failedIds, token, error, retry));
      if (dead && dead.length > 0) {
        metrics.deadEvents.inc(dead.length);
        log.error({ lane, ids: dead, error }, 'events parked as dead after their last attempt');
      } else {
        log.warn({ lane, count: failedIds.length, error }, 'publish failed; will retry with back-off');
      }
    }
  }

  private async markNow(ids: readonly number[], token: string, lane: number | 'handoff'): Promise<void> {
    const { db, log, metrics } = this.options;
    const marked = await this.settle('mark published', () => markPublished(db, ids, token));
    if (marked === undefined) return;
    metrics.published.inc(marked);
    if (marked < ids.length) {
      metrics.fencedOut.inc(ids.length - marked);
      log.warn(
        { lane, fenced: ids.length - marked },
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
  private markLater(ids: readonly number[]): void {
    this.toMark.push(...ids);
    if (this.toMark.length >= this.options.batchSize) {
      this.flushMarks();
      return;
    }
    this.markTimer ??= setTimeout(() => this.flushMarks(), MARK_DELAY_MS);
  }

  private flushMarks(): void {
    clearTimeout(this.markTimer);
    this.markTimer = undefined;
    const ids = this.toMark.splice(0);
    if (ids.length === 0) return;
    this.track(this.markNow(ids, this.lease.token, 'handoff'));
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
