import { randomUUID } from 'node:crypto';
import type { NewEvent } from '../../src/outbox/event.js';
import type { TestDatabase } from './database.js';

/** `SELECT COUNT(*)` of one table of the test database, as a number. */
export async function countRows(db: TestDatabase, table: 'customers' | 'outbox'): Promise<number> {
  const [row] = await db.query<{ n: number | string }>(`SELECT COUNT(*) AS n FROM \`${table}\``);
  return Number(row?.n ?? Number.NaN);
}

/** MariaDB returns JSON columns as text, MySQL as parsed values: accept both. */
export function parseJsonColumn<T = Record<string, unknown>>(value: unknown): T {
  return (typeof value === 'string' ? JSON.parse(value) : value) as T;
}

/** What a client must never see in an error response: stack traces, SQL, driver internals. */
export const INTERNALS = [
  /stacktrace/i,
  /\n\s+at /,
  /node_modules/,
  /\.ts:\d+/,
  /\binsert into\b/i,
  /\bselect\b.*\bfrom\b/i,
  /`outbox`|`customers`/,
  /\bER_[A-Z_]+/,
  /SQLSTATE|sqlMessage|errno/i,
];

/** An event of a test aggregate (type `Test`) for a writer to append: its sequence as the payload. */
export const testEvent = (aggregateId: string, sequence: number): NewEvent => ({
  eventId: randomUUID(),
  type: 'CustomerCreated',
  aggregateType: 'Test',
  aggregateId,
  sequence,
  occurredAt: new Date(),
  payload: { sequence },
  headers: { correlationId: randomUUID() },
});
