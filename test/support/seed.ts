import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Database } from '../../src/db/client.js';
import { outbox } from '../../src/db/schema.js';

export interface SeedOptions {
  readonly type?: string;
  readonly aggregateType?: string;
  readonly headers?: Record<string, string>;
}

/**
 * Writes `count` committed outbox events straight into the table, as createCustomer would,
 * in multi-row inserts. Returns their event ids in insert order.
 */
export async function seedEvents(db: Database, count: number, options: SeedOptions = {}): Promise<string[]> {
  const ids: string[] = [];
  const now = new Date();
  for (let start = 0; start < count; start += 500) {
    const rows = Array.from({ length: Math.min(500, count - start) }, (_, i) => {
      const eventId = randomUUID();
      ids.push(eventId);
      return {
        eventId,
        aggregateType: options.aggregateType ?? 'Test',
        aggregateId: eventId,
        sequence: 1,
        type: options.type ?? 'CustomerCreated',
        payload: { n: start + i },
        headers: options.headers ?? { correlationId: eventId },
        occurredAt: now,
        nextAttemptAt: sql`NOW(3)`,
      };
    });
    await db.insert(outbox).values(rows);
  }
  return ids;
}
