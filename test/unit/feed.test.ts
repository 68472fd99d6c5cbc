import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Database } from '../../src/db/client.js';
import type { Logger } from '../../src/log.js';

// The history in memory: the feed's logic (catch-up, switch to live, fan-out, slow subscribers,
// holes) without MariaDB. The queries themselves are covered by the integration tests.
const history = vi.hoisted(() => ({
  rows: [] as import('../../src/history/store.js').HistoryRow[],
  reads: 0,
}));

vi.mock('../../src/history/store.js', () => ({
  headPosition: async () => history.rows.at(-1)?.position ?? 0,
  readHistory: async (
    _db: unknown,
    after: number,
    limit: number,
    filter?: import('../../src/history/store.js').HistoryFilter,
    through = Number.POSITIVE_INFINITY,
  ) => {
    history.reads++;
    return history.rows
      .filter(
        (row) =>
          row.position > after &&
          row.position <= through &&
          (!filter ||
            (row.aggregateType === filter.aggregateType &&
              (filter.aggregateId === undefined || row.aggregateId === filter.aggregateId))),
      )
      .slice(0, limit);
  },
}));

const { CursorAheadError, HistoryFeed } = await import('../../src/history/feed.js');

/** Commits rows for the given aggregate ids, positions following on. */
function commit(...aggregateIds: string[]): void {
  for (const aggregateId of aggregateIds) {
    const position = (history.rows.at(-1)?.position ?? 0) + 1;
    history.rows.push({
      position,
      eventId: `event-${position}`,
      type: 'CustomerUpdated',
      aggregateType: 'customer',
      aggregateId,
      sequence: position,
      occurredAt: new Date(0),
      handledAt: new Date(0),
      handler: 'test',
      traceparent: null,
      payload: {},
    });
  }
}

const feeds: InstanceType<typeof HistoryFeed>[] = [];
function startFeed(options: { pageSize?: number; bufferSize?: number; holeTimeoutMs?: number } = {}) {
  const log = { warn: vi.fn(), error: vi.fn(), info: vi.fn(), bindings: () => ({}) };
  const feed = new HistoryFeed({
    db: {} as Database,
    log: log as unknown as Logger,
    holeTimeoutMs: options.holeTimeoutMs,
    // Long: the tests wake the reader, so a row reaches it only when a test says so.
    pollIntervalMs: 60_000,
    pageSize: options.pageSize ?? 3,
    bufferSize: options.bufferSize ?? 100,
  });
  feeds.push(feed);
  feed.start();
  return Object.assign(feed, { log });
}

/** The positions of the next `count` rows, failing after a deadline rather than hanging. */
async function take(iterator: AsyncIterator<{ position: number }>, count: number): Promise<number[]> {
  const positions: number[] = [];
  const deadline = new Promise<never>((_, reject) => {
    setTimeout(() => reject(new Error(`got only ${JSON.stringify(positions)}`)), 2_000).unref();
  });
  while (positions.length < count) {
    const result = await Promise.race([iterator.next(), deadline]);
    if (result.done) break;
    positions.push(result.value.position);
  }
  return positions;
}

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 2_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met within 2 s');
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

afterEach(async () => {
  await Promise.all(feeds.splice(0).map((feed) => feed.stop()));
  history.rows.length = 0;
  history.reads = 0;
});

describe('HistoryFeed subscriptions', () => {
  it('deliver the rows after the cursor page by page, then live ones, each once and in order', async () => {
    commit('1', '1', '1', '1', '1', '1', '1');
    const feed = startFeed({ pageSize: 3 });
    const rows = await feed.subscribe({ aggregateType: 'customer' }, { after: 2 });
    expect(await take(rows, 5)).toEqual([3, 4, 5, 6, 7]);
    commit('1', '1');
    feed.wake();
    expect(await take(rows, 2)).toEqual([8, 9]);
  });

  it('keep to their aggregate, while catching up and live', async () => {
    commit('1', '2', '1', '2');
    const feed = startFeed();
    const rows = await feed.subscribe({ aggregateType: 'customer', aggregateId: '2' }, { after: 0 });
    expect(await take(rows, 2)).toEqual([2, 4]);
    commit('1', '2', '1', '2');
    feed.wake();
    expect(await take(rows, 2)).toEqual([6, 8]);
  });

  it("from 'now' start at the end of the history", async () => {
    commit('1', '1');
    const feed = startFeed();
    const rows = await feed.subscribe({ aggregateType: 'customer' }, 'now');
    commit('1');
    feed.wake();
    expect(await take(rows, 1)).toEqual([3]);
  });

  it('refuse a cursor ahead of the history, but not one the reader has not reached yet', async () => {
    commit('1', '1');
    const feed = startFeed();
    await expect(feed.subscribe({ aggregateType: 'customer' }, { after: 3 })).rejects.toBeInstanceOf(
      CursorAheadError,
    );
    // Committed, not yet read by the feed (it polls once a minute here).
    await until(() => feed.position === 2);
    commit('1', '1');
    const rows = await feed.subscribe({ aggregateType: 'customer' }, { after: 3 });
    expect(await take(rows, 1)).toEqual([4]);
  });

  it('let a slow subscriber fall back to reading pages without losing or repeating a row', async () => {
    const feed = startFeed({ pageSize: 4, bufferSize: 3 });
    const rows = await feed.subscribe({ aggregateType: 'customer' }, 'now');
    const fast = await feed.subscribe({ aggregateType: 'customer' }, 'now');
    commit(...Array.from({ length: 20 }, () => '1'));
    feed.wake();
    // The reader fans out all 20 while neither subscriber reads: both queues overflow.
    await until(() => feed.position === 20);
    expect(await take(rows, 20)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(await take(fast, 20)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    // And they are live again afterwards.
    commit('1');
    feed.wake();
    expect(await take(rows, 1)).toEqual([21]);
  });

  it('end when the feed stops, and a stopped feed takes no new subscriptions', async () => {
    const feed = startFeed();
    const rows = await feed.subscribe({ aggregateType: 'customer' }, 'now');
    const pending = rows.next();
    await feed.stop();
    expect(await pending).toEqual({ done: true, value: undefined });
    await expect(feed.subscribe({ aggregateType: 'customer' }, 'now')).rejects.toThrow('stopped');
  });

  it('hold a row back while an earlier position is missing from the reads, live and catching up', async () => {
    commit('1');
    const feed = startFeed();
    const live = await feed.subscribe({ aggregateType: 'customer' }, 'now');
    const catchUp = await feed.subscribe({ aggregateType: 'customer' }, { after: 0 });
    commit('1', '1', '1');
    // Position 3 committed but not yet visible to the reads: what a torn read view shows.
    const [third] = history.rows.splice(2, 1);
    feed.wake();
    await until(() => feed.position === 2);
    const reads = history.reads;
    await until(() => history.reads > reads + 3);
    expect(feed.position).toBe(2);
    history.rows.splice(2, 0, third as (typeof history.rows)[number]);
    expect(await take(live, 3)).toEqual([2, 3, 4]);
    expect(await take(catchUp, 4)).toEqual([1, 2, 3, 4]);
    expect(feed.log.error).not.toHaveBeenCalled();
  });

  it('skip a position missing for longer than the hole timeout, with an error', async () => {
    const feed = startFeed({ holeTimeoutMs: 50 });
    const live = await feed.subscribe({ aggregateType: 'customer' }, 'now');
    commit('1', '1', '1');
    history.rows.splice(1, 1);
    feed.wake();
    expect(await take(live, 2)).toEqual([1, 3]);
    expect(feed.log.error).toHaveBeenCalledWith(
      expect.objectContaining({ from: 2, to: 2 }),
      expect.any(String),
    );
  });

  it('end when the client returns, and leave the fan-out', async () => {
    const feed = startFeed();
    const rows = await feed.subscribe({ aggregateType: 'customer' }, 'now');
    await rows.return?.();
    commit('1');
    feed.wake();
    await until(() => feed.position === 1);
    expect(await rows.next()).toEqual({ done: true, value: undefined });
  });
});
