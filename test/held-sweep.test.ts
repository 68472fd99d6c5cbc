import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { releaseStranded } from '../src/outbox/settle.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('held_sweep');
});

afterAll(async () => {
  await db?.drop();
});

/** One outbox row of aggregate `id`, straight into the table. */
async function row(id: string, sequence: number, state: 'published' | 'pending' | 'held'): Promise<void> {
  await db.query(
    `INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, type, payload, headers, occurred_at,
       next_attempt_at, published_at, held)
     VALUES (?, 'Customer', ?, ?, 'CustomerUpdated', '{}', '{}', NOW(3),
       IF(? = 'held', '9999-12-31', NOW(3)), IF(? = 'published', NOW(3), NULL), ? = 'held')`,
    [randomUUID(), id, sequence, state, state, state],
  );
}

const heldOf = async (id: string) =>
  (
    await db.query<{ sequence: number; held: number }>(
      'SELECT sequence, held FROM outbox WHERE aggregate_id = ? AND held = 1 ORDER BY sequence',
      [id],
    )
  ).map((r) => r.sequence);

describe('releaseStranded: what a relay that died between mark and release leaves behind', () => {
  it('releases a held row whose predecessor is published or pruned, and no other', async () => {
    await row('10', 1, 'published');
    await row('10', 2, 'held'); // stranded: its predecessor is published
    await row('11', 1, 'pending');
    await row('11', 2, 'held'); // rightly held: its predecessor is not published yet
    await row('12', 3, 'held'); // stranded: its predecessor was pruned by retention
    await row('13', 1, 'published');
    await row('13', 2, 'pending');
    await row('13', 3, 'held'); // rightly held behind 2

    expect(await releaseStranded(db.db, 100)).toBe(2);

    expect(await heldOf('10')).toEqual([]);
    expect(await heldOf('11')).toEqual([2]);
    expect(await heldOf('12')).toEqual([]);
    expect(await heldOf('13')).toEqual([3]);
    const [due] = await db.query<{ n: number }>(
      "SELECT COUNT(*) AS n FROM outbox WHERE aggregate_id IN ('10', '12') AND published_at IS NULL AND next_attempt_at <= NOW(3)",
    );
    expect(Number(due?.n)).toBe(2);
    expect(await releaseStranded(db.db, 100)).toBe(0);
  });
});
