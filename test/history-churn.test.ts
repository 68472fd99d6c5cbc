import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CUSTOMER_AGGREGATE } from '../src/customers/events.js';
import { HistoryFeed } from '../src/history/feed.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { appendRows, handledRow } from './support/history.js';
import { testLogger } from './support/service.js';

// A full collection before each heap reading: without it the figures are the garbage
// collector's timing, not what the feed keeps.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const CYCLES = 100_000;
const BLOCK = 5_000;

let db: TestDatabase;
let feed: HistoryFeed;

beforeAll(async () => {
  db = await createTestDatabase('history_churn');
  await appendRows(db.db, [handledRow('1', 1)]);
  feed = new HistoryFeed({
    db: db.db,
    log: testLogger(),
    pollIntervalMs: 60_000,
    pageSize: 100,
    bufferSize: 100,
  });
  feed.start();
});

afterAll(async () => {
  await feed?.stop();
  await db?.drop();
});

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** A cost per subscription that grows with their number shows as a run past this. */
const RUN_DEADLINE_MS = 60_000;
let runStarted = 0;
let cycles = 0;

/** Milliseconds per subscribe-and-unsubscribe over `count` cycles. */
async function churn(count: number): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const rows = await feed.subscribe({ aggregateType: CUSTOMER_AGGREGATE, aggregateId: '1' }, { after: 0 });
    await rows.return?.();
    cycles++;
    if (cycles % 1000 === 0) {
      // Subscribing resolves in microtasks only: give timers and I/O their turn.
      await new Promise((resolve) => setImmediate(resolve));
      if (performance.now() - runStarted > RUN_DEADLINE_MS) {
        throw new Error(`only ${cycles} subscriptions in ${RUN_DEADLINE_MS} ms: subscribing slowed down`);
      }
    }
  }
  return (performance.now() - started) / count;
}

describe('subscribing and unsubscribing', () => {
  it(`${CYCLES} times leaves memory and subscribe time flat, with no listener warning`, async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      runStarted = performance.now();
      await churn(BLOCK); // warm-up: compiled code, pools, caches
      const heapBefore = heapAfterGc();
      const msFirst = await churn(BLOCK);
      await churn(CYCLES - 3 * BLOCK);
      const msLast = await churn(BLOCK);
      const heapAfter = heapAfterGc();
      const growth = heapAfter - heapBefore;
      // A leak of even 100 bytes per subscription would be 9 MB here.
      expect(growth, `heap grew by ${(growth / 1e6).toFixed(1)} MB`).toBeLessThan(5e6);
      // Generous: the machine is shared, so only a cost that grows with the count fails this.
      expect(
        msLast,
        `${msFirst.toFixed(4)} ms per subscribe at first, ${msLast.toFixed(4)} at the end`,
      ).toBeLessThan(msFirst * 3 + 0.05);
      expect(warnings.map((w) => w.name)).not.toContain('MaxListenersExceededWarning');
    } finally {
      process.off('warning', onWarning);
    }
  }, 120_000);
});
