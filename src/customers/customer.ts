import type { Database } from '../db/client.js';
import type { EventHeaders } from '../outbox/event.js';
import type { OutboxWriter } from '../outbox/writer.js';

export interface Customer {
  /** Decimal, exact (db/ids.ts): ids above 2^53 are not numbers here. */
  readonly id: string;
  readonly email: string;
  readonly name: string;
  readonly createdAt: Date;
  /** The sequence of the customer's latest event. */
  readonly version: number;
}

export interface CustomerMutationResult {
  readonly customer: Customer;
  readonly eventId: string;
}

export interface Page<T> {
  readonly items: readonly T[];
  readonly hasNextPage: boolean;
}

/** What a mutation needs besides its input. */
export interface WriteContext {
  readonly db: Database;
  readonly writer: OutboxWriter;
  readonly headers: EventHeaders;
  /** The client's Idempotency-Key, if it sent one. */
  readonly idempotencyKey?: string;
}

/** Stored with an idempotency key, and read back on a retry. */
export const resultReplay = (operation: string) => ({
  operation,
  encode: (r: CustomerMutationResult) => ({
    ...r,
    customer: { ...r.customer, createdAt: r.customer.createdAt.toISOString() },
  }),
  decode: (stored: unknown) => {
    // The id is a number in answers stored before ids became strings (they were below 2^53).
    const r = stored as CustomerMutationResult & { customer: { createdAt: string; id: string | number } };
    return {
      ...r,
      customer: { ...r.customer, id: String(r.customer.id), createdAt: new Date(r.customer.createdAt) },
    };
  },
});
