import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrivateMariaDb } from '../scripts/chaos/mariadb.js';
import { PortPool } from '../scripts/chaos/ports.js';
import { CUSTOMER_AGGREGATE } from '../src/customers/events.js';
import { connectDatabase, type DatabaseHandle, ensureDatabase, transaction } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { HistoryFeed, type HistoryStream } from '../src/history/feed.js';
import { appendHistoryAndCommit, type HistoryFilter, headPosition } from '../src/history/store.js';
import { handledRow } from './support/history.js';
import { testLogger } from './support/service.js';
import { waitFor } from './support/wait.js';

// A reader must never hand out a position before every earlier one: on InnoDB a read can see
// a commit without an earlier one (docs/history.md). This runs the real race: many handling
// transactions appending to the history at once, and many readers following it, live, catching
// up while the history grows, per customer, and slow. A MariaDB of its own, because open
// transactions on the server make the race likelier (every read view walks them), which a test
// must not add to the shared one. Torn reads stay rare and depend on the machine's load, so a
// run of the old reader does not always skip; history-holes.test.ts makes the torn state on
// purpose and fails the old reader every time.

/** Handling transactions at once, in a process of their own. */
const WRITERS = 12;
/** More beside the readers, whose commits the first feed is told of in process (committed()). */
const IN_PROCESS_WRITERS = 4;
const WRITE_MS = 6_000;
const run = promisify(execFile);
const CUSTOMERS = 6;
/** Prepared XA transactions left open during the run: each read view walks past them. */
const OPEN_TRANSACTIONS = 300;

let dir: string;
let server: PrivateMariaDb;
let handle: DatabaseHandle;
const feeds: HistoryFeed[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'history-contiguity-'));
  // Without a flush per commit: more commits per second, so more of them meet a read.
  server = new PrivateMariaDb(dir, await new PortPool().take(), ['--innodb-flush-log-at-trx-commit=2']);
  await server.initialize();
  await server.start();
  const url = server.url('history');
  await ensureDatabase(url);
  handle = connectDatabase(url, IN_PROCESS_WRITERS + 4);
  await runMigrations(handle);
  await leaveTransactionsOpen(server.url(''), OPEN_TRANSACTIONS);
}, 180_000);

afterAll(async () => {
  await Promise.all(feeds.map((feed) => feed.stop()));
  await handle?.close();
  await server?.kill();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Prepared XA transactions outlive their connection, so they cost the server no threads. */
async function leaveTransactionsOpen(url: string, count: number): Promise<void> {
  const admin = await mysql.createConnection({ uri: url });
  await admin.query('CREATE DATABASE held');
  await admin.query('CREATE TABLE held.t (id INT PRIMARY KEY)');
  await admin.end();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let i = next++; i < count; i = next++) {
        const connection = await mysql.createConnection({ uri: url });
        await connection.query(`XA START 'held${i}'`);
        await connection.query('INSERT INTO held.t VALUES (?)', [i]);
        await connection.query(`XA END 'held${i}'`);
        await connection.query(`XA PREPARE 'held${i}'`);
        await connection.end();
      }
    }),
  );
}

interface Reader {
  readonly name: string;
  readonly filter: HistoryFilter;
  readonly stream: HistoryStream;
  readonly positions: number[];
}

const readers: Reader[] = [];

async function follow(name: string, feed: HistoryFeed, filter: HistoryFilter, after: number | 'now') {
  const stream = await feed.subscribe(filter, after === 'now' ? 'now' : { after });
  const reader: Reader = { name, filter, stream, positions: [] };
  readers.push(reader);
  void (async () => {
    for await (const row of stream) reader.positions.push(row.position);
  })();
}

/** One handling transaction after another, each appending one to three rows, until `until`. */
async function write(until: number): Promise<void> {
  let sequence = 0;
  while (Date.now() < until) {
    const rows = Array.from({ length: 1 + Math.floor(Math.random() * 3) }, () =>
      handledRow(String(1 + Math.floor(Math.random() * CUSTOMERS)), ++sequence),
    );
    // The first feed is the worker's neighbour (rows handed over in process); the others poll.
    // A transaction that passed a bound on a loaded machine is not the readers' business.
    await transaction(handle.db, (tx) => appendHistoryAndCommit(tx, rows)).then(
      (committed) => feeds[0]?.deliverCommitted(committed),
      () => undefined,
    );
  }
}

/** The writers in a process of their own, so that the readers here do not slow them down. */
async function writeElsewhere(): Promise<number> {
  const script = fileURLToPath(new URL('./support/history-writers.ts', import.meta.url));
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', script, server.url('history'), String(WRITERS), String(WRITE_MS), String(CUSTOMERS)],
    { timeout: WRITE_MS + 60_000 },
  );
  return Number(stdout.trim());
}

describe('history readers under concurrent commits', () => {
  it('every subscriber of every feed gets each position once, in order, with none skipped', async () => {
    const all = { aggregateType: CUSTOMER_AGGREGATE };
    for (const bufferSize of [1000, 1000, 5]) {
      const feed = new HistoryFeed({
        db: handle.db,
        log: testLogger(),
        pollIntervalMs: 2,
        pageSize: 20,
        bufferSize,
      });
      feed.start();
      feeds.push(feed);
    }
    for (const [i, feed] of feeds.entries()) {
      await follow(`feed ${i}, live from now`, feed, all, 'now');
      await follow(`feed ${i}, from the start`, feed, all, 0);
    }
    const until = Date.now() + WRITE_MS;
    const writing = Promise.all([
      writeElsewhere(),
      ...Array.from({ length: IN_PROCESS_WRITERS }, () => write(until)),
    ]);
    // Catch-ups that start while the history grows, every customer or one.
    for (let round = 0; round < 4; round++) {
      await new Promise((resolve) => setTimeout(resolve, WRITE_MS / 5));
      for (const [i, feed] of feeds.entries()) {
        await follow(`feed ${i}, from the start, round ${round}`, feed, all, 0);
        const customerId = String(1 + ((round + i) % CUSTOMERS));
        await follow(`feed ${i}, customer ${customerId}`, feed, { ...all, aggregateId: customerId }, 0);
      }
    }
    await writing;

    const end = await headPosition(handle.db);
    const [byCustomer] = (await handle.pool.query(
      'SELECT aggregate_id AS customerId, position FROM handled_events ORDER BY position',
    )) as unknown as [Array<{ customerId: string; position: number }>];
    const expected = (reader: Reader) =>
      byCustomer
        .filter(
          (row) => reader.filter.aggregateId === undefined || row.customerId === reader.filter.aggregateId,
        )
        .map((row) => Number(row.position))
        .filter((position) => position > reader.stream.startedAfter);
    // A reader that skipped a position reaches the end too; one that is stuck does not: both
    // are reported below, with what each one is missing.
    const reachedEnd = await waitFor(
      'every reader to reach the end of the history',
      () => readers.every((r) => (r.positions.at(-1) ?? r.stream.startedAfter) >= (expected(r).at(-1) ?? 0)),
      { timeoutMs: 60_000 },
    ).then(
      () => true,
      () => false,
    );
    const wrong = readers.flatMap((reader) => {
      const want = expected(reader);
      const got = new Set(reader.positions);
      const missing = want.filter((position) => !got.has(position));
      const inOrder = reader.positions.every((p, i) => i === 0 || p > (reader.positions[i - 1] as number));
      return missing.length === 0 && inOrder && reader.positions.length === want.length
        ? []
        : [
            `${reader.name}: ${reader.positions.length} of ${want.length}, missing ${missing.slice(0, 10).join(', ')}`,
          ];
    });
    // The race was run, whatever the load on the machine allowed.
    expect(end).toBeGreaterThan(200);
    expect(wrong).toEqual([]);
    expect(reachedEnd).toBe(true);
    await Promise.all(readers.map((r) => r.stream.return?.()));
  }, 240_000);
});
