import { randomUUID } from 'node:crypto';
import { CUSTOMER_AGGREGATE } from '../../src/customers/events.js';
import type { Database } from '../../src/db/client.js';
import { appendHistoryAndCommit, type NewHistoryRow } from '../../src/history/store.js';
import type { TestDatabase } from './database.js';

/** A handled CustomerUpdated of `customerId`, as the worker would append it to the history. */
export function handledRow(customerId: string, sequence: number): NewHistoryRow {
  const now = new Date();
  return {
    eventId: randomUUID(),
    type: sequence === 1 ? 'CustomerCreated' : 'CustomerUpdated',
    aggregateType: CUSTOMER_AGGREGATE,
    aggregateId: customerId,
    sequence,
    occurredAt: now,
    handledAt: now,
    handler: 'test',
    payload: { customerId, n: sequence },
    traceparent: null,
  };
}

/** Appends rows to the history in one transaction, as one handling transaction would. */
export async function appendRows(db: Database, rows: readonly NewHistoryRow[]): Promise<void> {
  await db.transaction((tx) => appendHistoryAndCommit(tx, rows));
}

/**
 * `count` history rows of `customers` customers (round robin, each customer's sequence from
 * 1; `padding` characters more in each payload), written with multi-row INSERTs straight into handled_events and the position counter:
 * fast enough for tens of thousands. Positions continue after the current counter. Returns the
 * event ids in position order.
 */
export async function bulkSeedHistory(
  db: TestDatabase,
  count: number,
  { customers = 100, padding = 0 }: { customers?: number; padding?: number } = {},
): Promise<string[]> {
  const pad = 'x'.repeat(padding);
  const [counter] = await db.query<{ position: number | string }>(
    'SELECT position FROM history_positions WHERE id = 1',
  );
  const start = Number(counter?.position ?? 0);
  const ids: string[] = [];
  const CHUNK = 2000;
  for (let from = 0; from < count; from += CHUNK) {
    const values: unknown[] = [];
    const tuples: string[] = [];
    for (let i = from; i < Math.min(count, from + CHUNK); i++) {
      const eventId = randomUUID();
      ids.push(eventId);
      const customerId = String(1_000_000 + (i % customers));
      const sequence = Math.floor(i / customers) + 1;
      tuples.push("(?, ?, 'CustomerUpdated', ?, ?, ?, NOW(3), NOW(3), 'seed', ?)");
      values.push(
        start + i + 1,
        eventId,
        CUSTOMER_AGGREGATE,
        customerId,
        sequence,
        JSON.stringify(padding > 0 ? { customerId, n: i, pad } : { customerId, n: i }),
      );
    }
    await db.query(
      `INSERT INTO handled_events (position, event_id, type, aggregate_type, aggregate_id, sequence, occurred_at, handled_at, handler, payload) VALUES ${tuples.join(',')}`,
      values,
    );
  }
  await db.query(
    'INSERT INTO history_positions (id, position) VALUES (1, ?) ON DUPLICATE KEY UPDATE position = VALUES(position)',
    [start + count],
  );
  return ids;
}
