import { randomUUID } from 'node:crypto';
import mysql from 'mysql2/promise';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { CUSTOMER_AGGREGATE } from '../src/customers/events.js';
import { HistoryFeed, type HistoryStream } from '../src/history/feed.js';
import { headPosition } from '../src/history/store.js';
import { Metrics } from '../src/metrics/index.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { appendRows, handledRow } from './support/history.js';
import { testLogger } from './support/service.js';
import { waitFor } from './support/wait.js';

// The state a torn read view shows (docs/history.md), made on purpose: a row visible while one
// below it is not. A transaction inserts position p and stays open; another commits p + 1
// past the counter. Every reader must hold p + 1 back until p is visible, and hand out p first.

let db: TestDatabase;
const feeds: HistoryFeed[] = [];
const streams: HistoryStream[] = [];

beforeAll(async () => {
  db = await createTestDatabase('history_holes');
  await appendRows(db.db, [handledRow('1', 1), handledRow('2', 1)]);
});

afterEach(async () => {
  await Promise.all(streams.splice(0).map((s) => s.return?.()));
  await Promise.all(feeds.splice(0).map((f) => f.stop()));
});

afterAll(async () => {
  await db?.drop();
});

function startFeed(options: { holeTimeoutMs?: number } = {}) {
  const log = testLogger();
  const metrics = new Metrics(db.db);
  const feed = new HistoryFeed({
    db: db.db,
    log,
    metrics,
    pollIntervalMs: 20,
    pageSize: 50,
    bufferSize: 100,
    ...options,
  });
  feed.start();
  feeds.push(feed);
  return { feed, metrics, errors: vi.spyOn(log, 'error') };
}

/** A subscription and the positions it has received so far. */
async function follow(feed: HistoryFeed, customerId: string | undefined, after: number | 'now') {
  const filter = { aggregateType: CUSTOMER_AGGREGATE, aggregateId: customerId };
  const stream = await feed.subscribe(filter, after === 'now' ? 'now' : { after });
  streams.push(stream);
  const got: number[] = [];
  void (async () => {
    for await (const row of stream) got.push(row.position);
  })();
  return got;
}

const INSERT = `INSERT INTO handled_events
  (position, event_id, type, aggregate_type, aggregate_id, sequence, occurred_at, handled_at, handler, payload)
  VALUES (?, ?, 'CustomerUpdated', ?, ?, 1, NOW(3), NOW(3), 'test', '{}')`;

/** Inserts `position` for `customerId` in a transaction left open on a connection of its own. */
async function openInsert(position: number, customerId: string) {
  const connection = await mysql.createConnection({ uri: db.url });
  await connection.query('START TRANSACTION');
  await connection.query(INSERT, [position, randomUUID(), CUSTOMER_AGGREGATE, customerId]);
  return {
    commit: async () => {
      await connection.query('COMMIT');
      await connection.end();
    },
    rollback: async () => {
      await connection.query('ROLLBACK');
      await connection.end();
    },
  };
}

async function feedReads(metrics: Metrics): Promise<number> {
  return (await metrics.historyReads.get()).values.find((v) => v.labels.reader === 'feed')?.value ?? 0;
}

/** Position p + 1 committed while p is held open: the hole. */
async function makeHole(customerId: string) {
  const p = (await headPosition(db.db)) + 1;
  const earlier = await openInsert(p, customerId);
  await db.query(INSERT, [p + 1, randomUUID(), CUSTOMER_AGGREGATE, customerId]);
  await db.query('UPDATE history_positions SET position = ? WHERE id = 1', [p + 1]);
  return { p, earlier };
}

describe('a reader at a hole in the history', () => {
  it('holds the later position back, live and catching up, filtered or not, and hands out the earlier one first', async () => {
    const { feed, metrics } = startFeed();
    const live = await follow(feed, undefined, 'now');
    const start = await headPosition(db.db);
    const { p, earlier } = await makeHole('7');
    const catchUp = await follow(feed, undefined, 0);
    const customer = await follow(feed, '7', 0);
    // Several reads of the feed and the catch-ups after the hole appeared, none handing out p + 1.
    const reads = await feedReads(metrics);
    await waitFor(
      'the feed to read the history again and again',
      async () => (await feedReads(metrics)) > reads + 5,
    );
    await waitFor('the catch-up to reach the hole', () => catchUp.includes(p - 1));
    for (const got of [live, catchUp, customer]) expect(got).not.toContain(p + 1);
    expect((await metrics.historyHoles.get()).values[0]?.value).toBe(1);

    await earlier.commit();
    await waitFor('every subscriber to get both', () =>
      [live, catchUp, customer].every((got) => got.includes(p + 1)),
    );
    expect(live).toEqual([p, p + 1]);
    expect(catchUp).toEqual([...Array.from({ length: start }, (_, i) => i + 1), p, p + 1]);
    expect(customer).toEqual([p, p + 1]);
    expect(
      (await metrics.historyHoleWait.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value,
    ).toBe(1);
  });

  it('calls a hole that outlives LIVE_HOLE_TIMEOUT_MS permanent: skips it, logs an error, counts it', async () => {
    const { feed, metrics, errors } = startFeed({ holeTimeoutMs: 300 });
    const live = await follow(feed, undefined, 'now');
    const { p, earlier } = await makeHole('8');
    await earlier.rollback();
    await waitFor('the feed to give up on the hole', () => live.includes(p + 1));
    expect(live).toEqual([p + 1]);
    expect((await metrics.historyHolesSkipped.get()).values[0]?.value).toBe(1);
    expect(errors).toHaveBeenCalledWith(expect.objectContaining({ from: p, to: p }), expect.any(String));
    // The history goes on after it.
    await appendRows(db.db, [handledRow('8', 2)]);
    feed.wake();
    await waitFor('the next row', () => live.includes(p + 2));
  });
});
