import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { claimAndSettle } from '../src/outbox/claim.js';
import { checkDurability, durabilityBarrier } from '../src/outbox/durability.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { seedEvents } from './support/seed.js';

let db: TestDatabase;
const retry = { maxAttempts: 5, backoffBaseMs: 100, backoffMaxMs: 1_000 };

beforeAll(async () => {
  db = await createTestDatabase('durability');
});

afterAll(async () => {
  await db?.drop();
});

const flushes = async () =>
  Number((await db.query<{ n: number | null }>('SELECT SUM(flushes) AS n FROM outbox_flushes'))[0]?.n ?? 0);

describe('durability barrier', () => {
  it('the test server passes the start-up check (innodb_flush_log_at_trx_commit=1), with the barrier on without a binary log', async () => {
    const verdict = await checkDurability(db.db, 'refuse', createLogger('silent'));
    expect(verdict.problems).toEqual([]);
    const [row] = await db.query<{ log_bin: number }>('SELECT @@log_bin AS log_bin');
    expect(verdict.barrier).toBe(Number(row?.log_bin) !== 1);
  });

  it('a claimed batch is published only after one barrier write has committed: one per batch, not per event', async () => {
    await seedEvents(db.db, 40);
    const before = await flushes();
    const order: string[] = [];
    const outcome = await claimAndSettle(
      db.db,
      { limit: 100, holdSeconds: 30, retry },
      async (batch) => {
        order.push(`publish ${batch.length}`);
        // The barrier's write is committed, and so visible from another connection.
        order.push(`flushes seen at publish: ${(await flushes()) - before}`);
        return { published: batch, failed: new Map() };
      },
      async () => {
        order.push('barrier');
        await durabilityBarrier(db.db, 7);
      },
    );
    expect(outcome?.marked).toBe(40);
    expect(order).toEqual(['barrier', 'publish 40', 'flushes seen at publish: 1']);
    expect(await flushes()).toBe(before + 1);
  });
});
