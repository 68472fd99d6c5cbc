import { type Database, withDeadline } from '../db/client.js';
import type { Logger } from '../log.js';
import { type Metrics, secondsSince } from '../metrics/index.js';
import type { Deadline } from '../support/deadline.js';
import { Loop, type Turn, type TurnContext } from '../support/loop.js';
import { sleep } from '../support/sleep.js';
import { contiguousRows, HoleWait } from './holes.js';
import { type HistoryFilter, type HistoryRow, headPosition, readHistory } from './store.js';
import { FeedSubscription, type HistoryStream, type SubscriptionSource } from './subscription.js';

export type { HistoryStream } from './subscription.js';

export interface HistoryFeedOptions {
  readonly db: Database;
  readonly log: Logger;
  /** Counts the reads (live_history_reads_total) and reports what is queued (live_queued_rows). */
  readonly metrics?: Metrics;
  /** How often the reader looks for new rows when no hint arrives. */
  readonly pollIntervalMs: number;
  /** Rows per read, for the feed and for each subscriber's catch-up. */
  readonly pageSize: number;
  /** Rows queued for one subscriber before it leaves the live fan-out and reads pages instead. */
  readonly bufferSize: number;
  /** How long the reader waits at a hole before it calls it permanent and skips it (5 s). */
  readonly holeTimeoutMs?: number;
}

/** Where a subscription starts. */
export type StartAt = { readonly after: number } | 'now';

/** A cursor ahead of the history: it was not made by this service. */
export class CursorAheadError extends Error {
  override readonly name = 'CursorAheadError';
}

/**
 * The live side of the history, one per app instance: a single reader follows the history by
 * position and fans every new row out to this instance's subscribers, so a thousand
 * subscribers cost one query per new page, not one each.
 *
 * The reader learns of new rows from hints (a broker message from workers in other processes,
 * which calls wake()), from a worker in this process (deliverCommitted()), and otherwise polls. Hints only save
 * time: the database is the truth, and a lost hint costs at most one poll interval.
 *
 * Positions go out contiguously: the reader hands out a read only as far as its positions
 * follow on, and at a hole (a later commit visible before an earlier one, store.ts) reads again
 * until it fills (holes.ts). Its position is therefore a watermark: every position up to it is
 * visible to any read that starts afterwards.
 *
 * Subscribers start in one of two modes. Catching up, they read pages of the history
 * themselves from their cursor, never past the reader's position, so they need no hole logic of
 * their own, filtered or not; once a read finds nothing more up to it, they switch, in the same
 * tick, to live, where the reader's fan-out fills their queue. A
 * subscriber whose queue grows past `bufferSize` (a slow client) drops its queue and goes back
 * to catching up from the last row it delivered: memory stays bounded, nothing is skipped and
 * nobody is cut off.
 */
export class HistoryFeed implements SubscriptionSource {
  private readonly subscribers = new Set<FeedSubscription>();
  private readonly loop: Loop;
  /** The last position the reader has read and fanned out; undefined until the first read. */
  private head: number | undefined;
  /**
   * Resolved once the reader knows where the history ends, or once the feed stops: what
   * subscribe() waits for. One promise for the feed's life, not a listener on the loop's signal
   * per subscribe, which nothing would remove (a leak per subscription, and a listener list that
   * grew with every subscribe and made each one slower).
   */
  private readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private readonly holes: HoleWait;

  constructor(private readonly options: HistoryFeedOptions) {
    this.ready = new Promise((resolve) => {
      this.resolveReady = resolve;
    });
    this.holes = new HoleWait(options.holeTimeoutMs ?? 5_000);
    options.metrics?.trackQueuedRows(() => this.queuedRows);
    this.loop = new Loop(
      {
        name: 'history feed',
        log: options.log,
        idleMs: options.pollIntervalMs,
        backoffBaseMs: 200,
        // Short: after a network cut heals, the feed must read again within seconds.
        backoffMaxMs: 2_000,
      },
      (turn) => this.readNext(turn),
    );
  }

  start(): void {
    this.loop.start();
  }

  /** New rows may have been committed: read now. */
  wake(): void {
    this.loop.wake();
  }

  /**
   * Rows a worker in this process has just committed. When they are the very next positions,
   * they are fanned out as they are, with no read: the in-process path from commit to
   * subscriber. Anything else (a gap: rows of another process, or of a transaction here that
   * has not reported yet) wakes the reader, which reads the history in order as always.
   */
  deliverCommitted(rows: readonly HistoryRow[]): void {
    const first = rows[0];
    if (first === undefined || this.head === undefined || first.position !== this.head + 1) {
      this.wake();
      return;
    }
    for (const row of rows) {
      if (row.position !== this.head + 1) {
        this.wake();
        return;
      }
      this.fanOut(row);
    }
  }

  private fanOut(row: HistoryRow): void {
    this.head = row.position;
    for (const subscription of this.subscribers) subscription.offer(row);
  }

  /** Idempotent. Ends every subscription, then the reader. */
  async stop(): Promise<void> {
    for (const subscription of [...this.subscribers]) subscription.close();
    const stopping = this.loop.stop();
    this.resolveReady();
    await stopping;
  }

  /**
   * The last position fanned out: every position up to it has been handed out (or skipped as a
   * permanent hole) and is visible to any read that starts from now on.
   */
  get position(): number | undefined {
    return this.head;
  }

  /**
   * Rows matching `filter` after `start`, in position order, then live ones, each once.
   * `'now'` starts at the current end of the history. `deadline`, the subscriber's request's,
   * bounds the read this makes for it (db/deadline.ts): the feed's own reads have none.
   */
  async subscribe(filter: HistoryFilter, start: StartAt, deadline?: Deadline): Promise<HistoryStream> {
    await this.ready;
    if (this.loop.stopped) throw new Error('The history feed is stopped');
    const db = deadline ? withDeadline(this.options.db, deadline) : this.options.db;
    let after: number;
    let live = false;
    if (start === 'now') {
      // "Now" is the database's end, not the reader's: a reader still paging through a burst of
      // rows must not hand a new subscriber rows committed before it came. When the reader is
      // behind, the subscription catches up from the database's end (so a row committed while
      // this asked is not missed) and goes live when it reaches the reader.
      const end = await headPosition(db);
      after = Math.max(end, this.head ?? 0);
      live = end <= (this.head ?? 0);
    } else {
      after = start.after;
      // The reader may lag the database by a poll; ask the database before calling a cursor forged.
      if (after > (this.head ?? 0) && after > (await headPosition(db))) {
        throw new CursorAheadError('The cursor is ahead of the history');
      }
    }
    const subscription = new FeedSubscription(this, filter, after, live);
    this.subscribers.add(subscription);
    return subscription;
  }

  /** For FeedSubscription: a row handed to a subscriber, timed if handled since it began. */
  deliveredLive(row: HistoryRow, subscribedAt: number): void {
    if (row.position > subscribedAt)
      this.options.metrics?.deliveryLatency.observe(secondsSince(row.occurredAt));
  }

  /** For FeedSubscription: it closed. */
  forget(subscription: FeedSubscription): void {
    this.subscribers.delete(subscription);
  }

  /** Subscriptions open now (live_subscriptions). */
  get subscriptions(): number {
    return this.subscribers.size;
  }

  /** Rows read and not yet delivered, over all subscriptions. */
  get queuedRows(): number {
    let total = 0;
    for (const subscription of this.subscribers) total += subscription.queued;
    return total;
  }

  /** For FeedSubscription: a catch-up's page, up to `through` (the reader's position). */
  async read(after: number, through: number, filter: HistoryFilter): Promise<HistoryRow[]> {
    const rows = await readHistory(this.options.db, after, this.options.pageSize, filter, through);
    this.counted('catch_up', rows.length);
    return rows;
  }

  private counted(reader: 'feed' | 'catch_up', rows: number): void {
    this.options.metrics?.historyReads.inc({ reader });
    this.options.metrics?.historyRowsRead.inc({ reader }, rows);
  }

  /** For FeedSubscription. */
  get settings(): Pick<HistoryFeedOptions, 'pageSize' | 'bufferSize'> {
    return this.options;
  }

  private async readNext({ signal }: TurnContext): Promise<Turn> {
    if (this.head === undefined) {
      // Start at the end: subscribers bring their own cursors for anything before. Every
      // position up to it is visible to the reads that follow (store.ts): a safe watermark.
      this.head = await headPosition(this.options.db);
      this.resolveReady();
    }
    const rows = await readHistory(this.options.db, this.head, this.options.pageSize);
    this.counted('feed', rows.length);
    // From the head as it is now: deliverCommitted() may have handed rows out while this read was out.
    const { ready, hole } = contiguousRows(rows, this.head);
    for (const row of ready) this.fanOut(row);
    const waitedMs = this.holes.passed(this.head);
    if (waitedMs !== undefined) this.options.metrics?.historyHoleWait.observe(waitedMs / 1000);
    if (hole) return this.atHole(hole, signal);
    return rows.length === this.options.pageSize ? 'busy' : 'idle';
  }

  /** The read stopped at missing positions with a later one visible: read again, or skip them. */
  private async atHole(hole: { from: number; to: number }, signal: AbortSignal): Promise<Turn> {
    const verdict = this.holes.met(hole.from);
    if (verdict.action === 'skip') {
      this.options.metrics?.historyHolesSkipped.inc(hole.to - hole.from + 1);
      this.options.log.error(
        { from: hole.from, to: hole.to, waitedMs: verdict.waitedMs },
        'History positions missing for longer than LIVE_HOLE_TIMEOUT_MS: rows deleted or not restored; subscribers will not get them',
      );
      this.head = hole.to;
      return 'busy';
    }
    if (verdict.first) this.options.metrics?.historyHoles.inc();
    await sleep(verdict.delayMs, signal);
    return 'busy';
  }
}
