/**
 * Holes in a read of the history, and how long a reader waits at one.
 *
 * A read may show a position without an earlier one although the earlier one committed first:
 * InnoDB builds a read view by walking the open transactions without stopping commits, so the
 * walk can pass an earlier transaction while it is still open and then find a later one
 * already gone (committed). The earlier one had left the open set before the later one could
 * take the position counter, so the very next read sees it. A reader therefore hands out a read
 * only as far as its positions follow on, and at a hole reads again (docs/history.md).
 *
 * A hole that outlives many reads cannot be a commit on its way: positions are gapless (the
 * counter's update rolls back with its transaction), so only a row deleted by hand, or a
 * restore of part of the table, leaves one. After `timeoutMs` the reader skips it, loudly,
 * rather than stall every subscriber of the instance for ever.
 */

/** The rows a reader may hand out from one read, and the hole it stopped at, if any. */
export interface ContiguousRows<Row> {
  /** Rows after `after` whose positions follow on from it, in order. */
  readonly ready: Row[];
  /** The missing positions where the read stopped, with a later row present above them. */
  readonly hole?: { readonly from: number; readonly to: number };
}

/**
 * The contiguous run of `rows` (in position order) that starts right after `after`. Rows at or
 * below `after` are already out (a reader may have moved on while the read was on its way).
 */
export function contiguousRows<Row extends { readonly position: number }>(
  rows: readonly Row[],
  after: number,
): ContiguousRows<Row> {
  const ready: Row[] = [];
  let expected = after + 1;
  for (const row of rows) {
    if (row.position < expected) continue;
    if (row.position > expected) return { ready, hole: { from: expected, to: row.position - 1 } };
    ready.push(row);
    expected++;
  }
  return { ready };
}

/** What a reader does at a hole. */
export type HoleVerdict =
  /** Read again after `delayMs`; `first` when this hole was not met before. */
  | { readonly action: 'reread'; readonly delayMs: number; readonly first: boolean }
  /** The hole outlived the timeout: hand out what lies above it. */
  | { readonly action: 'skip'; readonly waitedMs: number };

/** First re-read at once (it fills a commit's hole), then backing off to this. */
const MAX_REREAD_DELAY_MS = 100;

/** One reader's wait at its current hole. The clock is a parameter for the unit tests. */
export class HoleWait {
  private hole: { from: number; since: number; rereads: number } | undefined;

  constructor(
    private readonly timeoutMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** A read stopped at a hole starting at `from`. */
  met(from: number): HoleVerdict {
    const now = this.now();
    if (this.hole?.from !== from) {
      this.hole = { from, since: now, rereads: 0 };
      return { action: 'reread', delayMs: 0, first: true };
    }
    const waitedMs = now - this.hole.since;
    if (waitedMs >= this.timeoutMs) {
      this.hole = undefined;
      return { action: 'skip', waitedMs };
    }
    const delayMs = Math.min(MAX_REREAD_DELAY_MS, 2 ** this.hole.rereads);
    this.hole.rereads++;
    return { action: 'reread', delayMs, first: false };
  }

  /**
   * The reader has handed out everything up to `position`: if that covers the hole it waited
   * at, returns how long it waited and forgets the hole.
   */
  passed(position: number): number | undefined {
    if (!this.hole || position < this.hole.from) return undefined;
    const waitedMs = this.now() - this.hole.since;
    this.hole = undefined;
    return waitedMs;
  }
}
