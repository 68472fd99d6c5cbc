import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCustomer, updateCustomer, type WriteContext } from '../src/customers/service.js';
import { claimAndSettle } from '../src/outbox/claim.js';
import { prunePublished } from '../src/outbox/retention.js';
import type { ClaimedEvent } from '../src/outbox/rows.js';
import { markPublished } from '../src/outbox/settle.js';
import { OutboxWriter } from '../src/outbox/writer.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { uniqueSuffix } from './support/service.js';
import { waitFor } from './support/wait.js';

/** A writer outside the claimed batch must finish well within this, whatever the relay does. */
const WRITER_BOUND_MS = 1_000;
const retry = { maxAttempts: 5, backoffBaseMs: 100, backoffMaxMs: 1_000 };

let db: TestDatabase;
let ctx: WriteContext;
const suffix = uniqueSuffix();

beforeAll(async () => {
  db = await createTestDatabase('no-writer-wait');
  ctx = {
    db: db.db,
    writer: new OutboxWriter({ maxPayloadBytes: 65_536 }),
    headers: { correlationId: randomUUID() },
  };
});

afterAll(async () => {
  await db?.drop();
});

/**
 * Published rows old enough for retention, and due rows for a relay to claim (with `leaseToken`,
 * rows handed over to a relay whose lease has expired).
 */
async function seed(published: number, due: number, leaseToken?: string): Promise<void> {
  const token = leaseToken === undefined ? 'NULL' : `'${leaseToken}'`;
  const row = (state: 'published' | 'due') =>
    `(UUID(), 'Seeded', UUID(), 1, 'Seeded', '{}', '{}', NOW(3) - INTERVAL 2 DAY, ${
      state === 'published' ? 'NOW(3) - INTERVAL 1 DAY' : 'NULL'
    }, NOW(3) - INTERVAL 1 MINUTE, 0, ${token})`;
  const rows = [
    ...Array.from({ length: published }, () => row('published')),
    ...Array.from({ length: due }, () => row('due')),
  ];
  await db.query(
    `INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, type, payload, headers, occurred_at, published_at, next_attempt_at, held, lease_token) VALUES ${rows.join(', ')}`,
  );
}

/**
 * A relay frozen while it holds a claim: the claim's transaction stays open, its row locks
 * held, until `thaw` (it then hands everything back).
 */
async function frozenClaim(limit: number) {
  let thaw = () => {};
  const thawed = new Promise<void>((resolve) => {
    thaw = resolve;
  });
  let batch: readonly ClaimedEvent[] = [];
  const done = claimAndSettle(db.db, { limit, holdSeconds: 120, retry }, async (claimed) => {
    batch = claimed;
    await thawed;
    return { published: [], failed: new Map() };
  });
  await waitFor('the claim', () => batch.length > 0);
  return { batch, thaw, done };
}

/** Transactions of the test database that wait for a lock right now. */
async function lockWaits(): Promise<number> {
  const [row] = await db.query<{ n: number | string }>(
    "SELECT COUNT(*) AS n FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'",
  );
  return Number(row?.n ?? 0);
}

async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await work();
  return { ms: performance.now() - started, value };
}

describe('no writer waits on a relay or on retention', () => {
  it('with a relay frozen holding a claim and retention pruning, creates and updates of other customers finish at once', async () => {
    const existing = await createCustomer(ctx, { email: `before.${suffix}@example.com`, name: 'Before' });
    // The existing customer's event must not be in the claim: publish it out of the way.
    await db.query('UPDATE outbox SET published_at = NOW(3) - INTERVAL 1 DAY');
    // Fewer due rows than the claim's limit: its scan runs past the due range, onto the oldest
    // published row, which is the existing customer's event.
    await seed(2_000, 20);
    const claim = await frozenClaim(50);
    try {
      // Retention runs while the claim is held: a DELETE by age that queued behind the claim
      // held a gap lock where every new outbox row goes.
      const pruning = prunePublished(db.db, 60_000, 500);
      let pruned: number | undefined;
      void pruning.then((n) => {
        pruned = n;
      });
      await waitFor(
        'retention to prune or to wait for a lock',
        async () => pruned !== undefined || (await lockWaits()) > 0,
      );

      const created = await timed(() =>
        createCustomer(ctx, { email: `during.${suffix}@example.com`, name: 'During' }),
      );
      const updated = await timed(() =>
        updateCustomer(ctx, { id: String(existing.customer.id), name: 'Renamed during' }),
      );
      expect(created.ms).toBeLessThan(WRITER_BOUND_MS);
      expect(updated.ms).toBeLessThan(WRITER_BOUND_MS);
      // Retention did its work meanwhile: it never needed a claimed row.
      expect(await pruning).toBe(500);
    } finally {
      claim.thaw();
      await claim.done;
    }
  });

  it("a relay's mark of rows another relay's frozen claim holds gives up within seconds instead of waiting for the claim", async () => {
    await db.query('UPDATE outbox SET published_at = NOW(3) WHERE published_at IS NULL');
    // Handed over to a relay that is slow to mark them: its lease expired, another relay claimed them.
    await seed(0, 5, 'mine');
    const claim = await frozenClaim(5);
    try {
      const ids = claim.batch.map((e) => ({ id: e.id, envelope: e.envelope }));
      expect(claim.batch.every((e) => e.takenOver)).toBe(true);
      const started = performance.now();
      const outcome = await markPublished(db.db, ids, 'mine').then(
        () => 'marked',
        (error: unknown) => error,
      );
      expect(performance.now() - started).toBeLessThan(5_000);
      expect(outcome).not.toBe('marked');
    } finally {
      claim.thaw();
      await claim.done;
    }
  });
});
