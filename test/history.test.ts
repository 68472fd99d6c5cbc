import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeHistoryCursor, encodeHistoryCursor } from '../src/customers/cursor.js';
import { type Executor, transaction } from '../src/db/client.js';
import { InvalidInputError } from '../src/errors.js';
import { appendHistoryAndCommit, headPosition, readHistory } from '../src/history/store.js';
import type { RunningService } from '../src/service.js';
import { startService } from '../src/service.js';
import { customerEventPage } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { appendRows, handledRow } from './support/history.js';
import { stopAndClean, testConfig, testLogger } from './support/service.js';
import { connectWs, subscribe, subscribeCustomerEvents, type WsClient } from './support/subscriptions.js';
import { waitFor } from './support/wait.js';

let db: TestDatabase;
let service: RunningService;
let url: string;
const clients: WsClient[] = [];

beforeAll(async () => {
  db = await createTestDatabase('history');
  // The app alone, polling fast: rows this file appends by hand wake no one.
  service = await startService(
    testConfig(db.url, { ROLES: 'app', LIVE_POLL_INTERVAL_MS: '50' }),
    testLogger(),
  );
  url = service.app?.url as string;
});

afterAll(async () => {
  await Promise.all(clients.splice(0).map((c) => c.dispose()));
  await stopAndClean(service);
  await db?.drop();
});

/** Positions of the rows with these event ids. */
async function positionsOf(eventIds: string[]): Promise<Map<string, number>> {
  const rows = await db.query<{ event_id: string; position: number | string }>(
    `SELECT event_id, position FROM handled_events WHERE event_id IN (${eventIds.map(() => '?').join(',')})`,
    eventIds,
  );
  return new Map(rows.map((r) => [r.event_id, Number(r.position)]));
}

async function connectionId(tx: Executor): Promise<number> {
  const [rows] = (await tx.execute(sql`SELECT CONNECTION_ID() AS id`)) as unknown as [Array<{ id: number }>];
  return Number(rows[0]?.id);
}

/** True while the connection's transaction waits for a row lock. */
async function waitsForLock(threadId: number): Promise<boolean> {
  const rows = await db.query<{ state: string }>(
    'SELECT trx_state AS state FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = ?',
    [threadId],
  );
  return rows[0]?.state === 'LOCK WAIT';
}

describe('history positions follow commit order', () => {
  it('a transaction that appends after an open one waits for its commit, and takes the next position', async () => {
    const committed: string[] = [];
    let releaseA!: () => void;
    const aMayCommit = new Promise<void>((resolve) => {
      releaseA = resolve;
    });
    let aAppended!: () => void;
    const aHasAppended = new Promise<void>((resolve) => {
      aAppended = resolve;
    });
    const rowB = handledRow('901', 1);
    const rowA = handledRow('902', 1);
    const headBefore = await headPosition(db.db);

    // B begins first and does its handling work first; A appends to the history first.
    let bThread = 0;
    let bMayAppend!: () => void;
    const bAppend = new Promise<void>((resolve) => {
      bMayAppend = resolve;
    });
    const b = db.db
      .transaction(async (tx) => {
        bThread = await connectionId(tx);
        await bAppend;
        await appendHistoryAndCommit(tx, [rowB]);
      })
      .then(() => committed.push('B'));
    const a = db.db
      .transaction(async (tx) => {
        await appendHistoryAndCommit(tx, [rowA]);
        aAppended();
        await aMayCommit;
      })
      .then(() => committed.push('A'));
    await aHasAppended;
    bMayAppend();

    // B is stuck on the position counter's lock, its commit not done, while A stays open.
    await waitFor('B to wait for the counter lock', () => waitsForLock(bThread));
    expect(committed).toEqual([]);
    // A reader now sees neither.
    expect(await readHistory(db.db, headBefore, 10)).toEqual([]);

    releaseA();
    await Promise.all([a, b]);
    expect(committed).toEqual(['A', 'B']);
    const positions = await positionsOf([rowA.eventId, rowB.eventId]);
    expect(positions.get(rowA.eventId)).toBe(headBefore + 1);
    expect(positions.get(rowB.eventId)).toBe(headBefore + 2);
  });

  it('under concurrent appends, every read returns positions right after the last one read: a reader never later finds a row below one it saw', async () => {
    const WRITERS = 6;
    const TRANSACTIONS = 15;
    const start = await headPosition(db.db);
    let writing = true;
    const readers = Array.from({ length: 3 }, async () => {
      let last = start;
      const gaps: string[] = [];
      let reads = 0;
      while (writing || last < (await headPosition(db.db))) {
        const rows = await readHistory(db.db, last, 50);
        reads++;
        for (const row of rows) {
          if (row.position !== last + 1) gaps.push(`read ${row.position} right after ${last}`);
          last = row.position;
        }
      }
      return { last, gaps, reads };
    });
    const writers = Array.from({ length: WRITERS }, async (_, w) => {
      for (let t = 0; t < TRANSACTIONS; t++) {
        // The service's transactions: the append, its counter and the COMMIT in one round trip.
        await transaction(db.db, async (tx) => {
          // The handling work before the append takes a varying time, so transactions that
          // began in one order reach their commit in another.
          await tx.execute(sql`SELECT SLEEP(${(((w * 7 + t * 3) % 5) / 1000).toFixed(3)})`);
          const rows = Array.from({ length: 1 + ((w + t) % 3) }, (_, i) =>
            handledRow(String(1000 + w), t * 3 + i + 1),
          );
          await appendHistoryAndCommit(tx, rows);
        });
      }
    });
    await Promise.all(writers);
    writing = false;
    const results = await Promise.all(readers);
    const head = await headPosition(db.db);
    for (const result of results) {
      expect(result.gaps).toEqual([]);
      expect(result.last).toBe(head);
      expect(result.reads).toBeGreaterThan(1);
    }
    // Positions are dense: no position was handed out twice or skipped.
    const [row] = await db.query<{ n: number | string }>(
      'SELECT COUNT(*) AS n FROM handled_events WHERE position > ?',
      [start],
    );
    expect(Number(row?.n)).toBe(head - start);
  });
});

describe('history cursors', () => {
  it('encode and decode a position, opaquely', () => {
    for (const position of [0, 1, 42, 1_000_000, Number.MAX_SAFE_INTEGER]) {
      const cursor = encodeHistoryCursor(position);
      expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(cursor).not.toContain(String(position === 0 ? 'x' : position));
      expect(decodeHistoryCursor(cursor, 'after')).toBe(position);
    }
  });

  it('refuses a cursor it did not make with BAD_USER_INPUT naming the field', () => {
    const b64 = (text: string) => Buffer.from(text).toString('base64url');
    const forged = [
      '',
      'abc',
      'h1:5',
      b64('h1:'),
      b64('h1:05'),
      b64('h1:-5'),
      b64('h1:5.5'),
      b64('h2:5'),
      b64('h1:99999999999999999'),
      `${b64('h1:5')}=`,
      // The same bytes, with the unused bits of the last character set: not canonical.
      b64('h1:5').replace(/Q$/, 'R'),
      'a'.repeat(65),
    ];
    for (const cursor of forged) {
      let caught: unknown;
      try {
        decodeHistoryCursor(cursor, 'after');
      } catch (error) {
        caught = error;
      }
      expect(caught, cursor).toBeInstanceOf(InvalidInputError);
      expect((caught as InvalidInputError).field).toBe('after');
    }
  });
});

describe('onCustomerEvent and customerEvents with `after`, over GraphQL', () => {
  const subscriptionErrors = (sub: ReturnType<typeof subscribe>) => [
    ...sub.results.flatMap((r) => r.errors ?? []),
    ...sub.errors.flatMap((e) => (Array.isArray(e) ? e : [])),
  ];

  it('a forged cursor and a cursor ahead of the history are BAD_USER_INPUT on the subscription and the query', async () => {
    const ws = connectWs(url);
    clients.push(ws);
    const head = await headPosition(db.db);
    const cursors = ['bm90LWEtY3Vyc29y', encodeHistoryCursor(head + 1000)];
    for (const after of cursors) {
      const sub = subscribe(
        ws,
        'subscription($after: String) { onCustomerEvent(after: $after) { eventId } }',
        {
          after,
        },
      );
      await waitFor(`the answer to ${after}`, () => sub.completed() || sub.errors.length > 0);
      expect(subscriptionErrors(sub)).toEqual([
        expect.objectContaining({
          message: 'Not a valid cursor',
          extensions: { code: 'BAD_USER_INPUT', field: 'after' },
        }),
      ]);
    }
    for (const after of cursors) {
      await expect(customerEventPage(url, '1', { after })).rejects.toThrow(/BAD_USER_INPUT/);
    }
    expect(ws.closes).toEqual([]);
  });

  it('after a cursor, exactly the rows after it, in position order, then live ones', async () => {
    const earlier = [handledRow('31', 1), handledRow('32', 1), handledRow('31', 2)];
    await appendRows(db.db, earlier);
    const later = [handledRow('32', 2), handledRow('33', 1), handledRow('31', 3)];
    await appendRows(db.db, later);
    const positions = await positionsOf([...earlier, ...later].map((r) => r.eventId));
    const cursor = encodeHistoryCursor(positions.get(earlier[2]?.eventId as string) as number);

    const ws = connectWs(url);
    clients.push(ws);
    const all = subscribeCustomerEvents(ws, { after: cursor });
    const only31 = subscribeCustomerEvents(ws, { customerId: '31', after: cursor });
    await waitFor('the rows after the cursor', () => all.events().length === later.length);
    expect(all.events().map((e) => e.eventId)).toEqual(later.map((r) => r.eventId));
    await waitFor("customer 31's row after the cursor", () => only31.events().length === 1);

    // Live: rows appended now arrive (the feed polls every 50 ms here; no hint is sent).
    const live = [handledRow('31', 4), handledRow('34', 1)];
    await appendRows(db.db, live);
    await waitFor('the live rows', () => all.events().length === later.length + live.length);
    expect(all.events().map((e) => e.eventId)).toEqual([...later, ...live].map((r) => r.eventId));
    expect(only31.events().map((e) => e.sequence)).toEqual([3, 4]);
    // Resuming from any delivered cursor gives the rest, again exactly.
    const resumed = subscribeCustomerEvents(ws, { after: all.events()[1]?.cursor as string });
    await waitFor('the resumed rows', () => resumed.events().length === 3);
    expect(resumed.events().map((e) => e.eventId)).toEqual([later[2], ...live].map((r) => r?.eventId));
    expect([all, only31, resumed].flatMap((s) => s.errors)).toEqual([]);
  });
});
