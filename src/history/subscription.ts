import type { HistoryFilter, HistoryRow } from './store.js';

/** A subscription's rows; `startedAfter` is the position it started after (`'now'` resolved). */
export interface HistoryStream extends AsyncIterableIterator<HistoryRow> {
  readonly startedAfter: number;
}

/** What a subscription asks of the feed it belongs to (feed.ts's HistoryFeed). */
export interface SubscriptionSource {
  /** The reader's watermark: every position up to it is visible to any read from now on. */
  readonly position: number | undefined;
  readonly settings: { readonly pageSize: number; readonly bufferSize: number };
  /** A catch-up's page after `after`, up to `through`. */
  read(after: number, through: number, filter: HistoryFilter): Promise<HistoryRow[]>;
  /** A row was handed to the client (timed if handled since `subscribedAt`). */
  deliveredLive(row: HistoryRow, subscribedAt: number): void;
  /** The subscription closed. */
  forget(subscription: FeedSubscription): void;
  /** Read the history now. */
  wake(): void;
}

/** One subscriber's view of the feed: an async iterator over its rows. */
export class FeedSubscription implements HistoryStream {
  readonly startedAfter: number;
  private readonly queue: HistoryRow[] = [];
  /** The last position queued or delivered: what a catch-up continues from. */
  private last: number;
  /** The last position delivered to the client. */
  private delivered: number;
  private live: boolean;
  /** The reader's position when this subscription began: rows after it were handled since. */
  private readonly subscribedAt: number;
  private closed = false;
  /** Resolves the next() waiting for a row, if any. */
  private resumeNext: (() => void) | undefined;

  constructor(
    private readonly feed: SubscriptionSource,
    private readonly filter: HistoryFilter,
    after: number,
    live: boolean,
  ) {
    this.startedAfter = after;
    this.last = after;
    this.delivered = after;
    this.live = live;
    this.subscribedAt = feed.position ?? after;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<HistoryRow> {
    return this;
  }

  /** Rows read and not yet delivered. */
  get queued(): number {
    return this.queue.length;
  }

  /** The reader's fan-out. Runs synchronously for every new row, in position order. */
  offer(row: HistoryRow): void {
    if (!this.live || row.position <= this.last || !this.matches(row)) return;
    if (this.queue.length >= this.feed.settings.bufferSize) {
      // Too slow for the live pace: forget what is queued and read it back in pages later.
      this.queue.length = 0;
      this.last = this.delivered;
      this.live = false;
      return;
    }
    this.queue.push(row);
    this.last = row.position;
    this.resumeNext?.();
  }

  async next(): Promise<IteratorResult<HistoryRow>> {
    for (;;) {
      if (this.closed) return { done: true, value: undefined };
      const row = this.queue.shift();
      if (row) {
        this.delivered = row.position;
        this.feed.deliveredLive(row, this.subscribedAt);
        return { done: false, value: row };
      }
      if (this.live) {
        await new Promise<void>((resolve) => {
          this.resumeNext = resolve;
        });
        this.resumeNext = undefined;
        continue;
      }
      // Catching up, never past the reader: everything up to its position is visible to this
      // read, while a row above it may have an earlier one this read cannot see (store.ts).
      const readerAt = this.feed.position ?? 0;
      const rows = this.last < readerAt ? await this.feed.read(this.last, readerAt, this.filter) : [];
      if (this.closed || this.live) continue;
      for (const r of rows) {
        this.queue.push(r);
        this.last = r.position;
      }
      if (rows.length < this.feed.settings.pageSize && this.feed.position === readerAt) {
        // Nothing of ours up to readerAt is left unread, and the reader has fanned out nothing
        // since: from here on its fan-out brings every row. Same tick, so no row falls between.
        this.last = Math.max(this.last, readerAt);
        this.live = true;
        // The database may hold more than the reader has read yet (a cursor from a busier
        // instance, a worker elsewhere whose hint has not come): have it look now, not at its
        // next poll. Calls to wake() while it reads coalesce into one more read.
        this.feed.wake();
      }
    }
  }

  async return(): Promise<IteratorResult<HistoryRow>> {
    this.close();
    return { done: true, value: undefined };
  }

  async throw(error?: unknown): Promise<IteratorResult<HistoryRow>> {
    this.close();
    throw error;
  }

  close(): void {
    this.closed = true;
    this.feed.forget(this);
    this.resumeNext?.();
  }

  private matches(row: HistoryRow): boolean {
    return (
      row.aggregateType === this.filter.aggregateType &&
      (this.filter.aggregateId === undefined || row.aggregateId === this.filter.aggregateId)
    );
  }
}
