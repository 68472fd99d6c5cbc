import type { Database } from '../db/client.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/index.js';
import type { ClaimedEvent, Lease, RetryPolicy } from '../outbox/rows.js';
import { markFailed, markPublished, releaseLeases } from '../outbox/settle.js';
import { Condition } from '../support/log-limit.js';
import { backoffDelay, sleep } from '../support/sleep.js';

/** How long published marks of handed-over events are gathered before one statement writes them. */
const MARK_DELAY_MS = 25;
const SETTLE_ATTEMPTS = 5;
const RETRY_BASE_MS = 100;
const RETRY_MAX_MS = 2000;

/** A published batch's outcomes (relay.ts's publishBatch). */
export interface BatchOutcome {
  readonly published: ClaimedEvent[];
  readonly failed: Map<string, number[]>;
  readonly handBack: number[];
}

/** What the hand-off path asks of the relay it belongs to. */
export interface HandedOverDeps {
  readonly db: Database;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly retry: RetryPolicy;
  readonly batchSize: number;
  /** The lease writers put on the rows they hand over. */
  readonly lease: Lease;
  /** Whether the relay is stopping, and whether its publisher can publish now. */
  stopped(): boolean;
  ready(): boolean;
  publishBatch(batch: readonly ClaimedEvent[]): Promise<BatchOutcome>;
  reportDead(
    ids: readonly number[],
    context: Record<string, unknown>,
    sent: { batch: readonly ClaimedEvent[]; failed: ReadonlyMap<string, number[]> },
  ): void;
  /** Held next events became due: the lanes should claim them now. */
  wake(): void;
}

/**
 * The relay's way in for rows a writer in this process committed leased to it (outbox/
 * handoff.ts): published at once, without a claim, and settled under the lease's token, so a
 * relay that took a row over (its lease expired) fences this one out.
 */
export class HandedOver {
  private pending: ClaimedEvent[] = [];
  private flushScheduled = false;
  private readonly inFlight = new Set<Promise<void>>();
  private toMark: ClaimedEvent[] = [];
  private markTimer: NodeJS.Timeout | undefined;
  /** During an outage every hand-off fails alike: one line per interval each (support/log-limit.ts). */
  private readonly handingBack: Condition;
  private readonly fenced: Condition;
  private readonly settling: Condition;
  private readonly failing: Condition;

  constructor(private readonly deps: HandedOverDeps) {
    this.handingBack = new Condition(deps.log, 'hand-off handing back');
    this.fenced = new Condition(deps.log, 'hand-off fenced out');
    this.settling = new Condition(deps.log, 'hand-off settlement failing');
    this.failing = new Condition(deps.log, 'hand-off failing');
  }

  /**
   * Publishes rows a writer in this process committed leased to us. Rows handed over in the
   * same tick go out as one batch, so concurrent requests share a confirm round trip and one
   * settlement statement.
   */
  publish(events: readonly ClaimedEvent[]): void {
    this.pending.push(...events);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const batch = this.pending.splice(0);
      if (batch.length > 0) this.track(this.publishHandedOver(batch));
    });
  }

  /** At a stop: what waits for the next tick, every batch in flight, then the gathered marks. */
  async drain(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    await Promise.all([...this.inFlight]);
    this.flushMarks();
    await Promise.all([...this.inFlight]);
  }

  private async publishHandedOver(batch: readonly ClaimedEvent[]): Promise<void> {
    const { db, retry } = this.deps;
    const token = this.deps.lease.token;
    if (this.deps.stopped() || !this.deps.ready()) {
      // Handed over while stopping or while the broker is away: give it straight back (due
      // now, no attempt counted) rather than start publishing.
      await this.settle('release', () =>
        releaseLeases(
          db,
          batch.map((e) => e.id),
          token,
        ),
      );
      return;
    }
    const { published, failed, handBack } = await this.deps.publishBatch(batch);
    this.markLater(published);
    if (handBack.length === 0) this.handingBack.cleared({}, 'handed-over events published again');
    else {
      const released = await this.settle('release', () => releaseLeases(db, handBack, token));
      if (released) {
        this.handingBack.occurred(
          'info',
          { released, why: this.deps.stopped() ? 'stopping' : 'broker connection lost' },
          'handed back unpublished events',
        );
      }
    }
    for (const [error, failedIds] of failed) {
      const dead = await this.settle('mark failed', () => markFailed(db, failedIds, token, error, retry));
      this.deps.reportDead(dead ?? [], { error }, { batch, failed });
    }
  }

  private async markNow(events: readonly ClaimedEvent[], token: string): Promise<void> {
    if (events.length === 0) return;
    const { db, metrics } = this.deps;
    const result = await this.settle('mark published', () => markPublished(db, events, token));
    if (result === undefined) return;
    metrics.published.inc(result.marked);
    // The held next events of these aggregates are due now: claim them without waiting a poll.
    if (result.released > 0) this.deps.wake();
    if (result.marked === events.length) this.fenced.cleared();
    else {
      metrics.fencedOut.inc(events.length - result.marked);
      this.fenced.occurred(
        'warn',
        { fenced: events.length - result.marked },
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
    if (this.toMark.length >= this.deps.batchSize) {
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
    this.track(this.markNow(events, this.deps.lease.token));
  }

  private track(work: Promise<void>): void {
    const guarded = work.then(
      () => this.failing.cleared(),
      (error: unknown) =>
        this.failing.occurred(
          'error',
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
        const result = await statement();
        this.settling.cleared();
        return result;
      } catch (error) {
        if (attempt >= SETTLE_ATTEMPTS) {
          this.settling.occurred(
            'error',
            { err: error, what },
            'settlement failed; the lease will expire and the events be retried',
          );
          return undefined;
        }
        await sleep(backoffDelay(attempt, RETRY_BASE_MS, RETRY_MAX_MS));
      }
    }
  }
}
