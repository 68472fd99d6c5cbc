import type { Database } from '../db/client.js';
import { InvalidInputError } from '../errors.js';
import { decodeHistoryCursor, encodeHistoryCursor } from '../history/cursor.js';
import type { HistoryFeed } from '../history/feed.js';
import { type HistoryRow, headPosition, readHistory } from '../history/store.js';
import { CUSTOMER_AGGREGATE } from './events.js';

/** What onCustomerEvent, customerEvents and Customer.events return: one handled event. */
export interface CustomerEvent {
  readonly eventId: string;
  readonly type: string;
  readonly customerId: string;
  readonly sequence: number;
  readonly occurredAt: Date;
  readonly handledAt: Date;
  readonly payload: unknown;
  /** Opaque; `after` in onCustomerEvent and customerEvents resumes right after this event. */
  readonly cursor: string;
}

export function toCustomerEvent(row: HistoryRow): CustomerEvent {
  return {
    eventId: row.eventId,
    type: row.type,
    customerId: row.aggregateId,
    sequence: row.sequence,
    occurredAt: row.occurredAt,
    handledAt: row.handledAt,
    payload: row.payload,
    cursor: encodeHistoryCursor(row.position),
  };
}

export interface CustomerEventPage {
  readonly edges: ReadonlyArray<{ readonly cursor: string; readonly node: CustomerEvent }>;
  readonly pageInfo: { readonly hasNextPage: boolean; readonly endCursor: string | null };
}

/** One customer's handled events after a cursor, in handling order (each customer's in sequence order). */
export async function customerEventPage(
  db: Database,
  customerId: string,
  first: number,
  after: string | undefined,
  field = 'after',
): Promise<CustomerEventPage> {
  const position = after === undefined ? 0 : decodeHistoryCursor(after, field);
  const rows = await readHistory(db, position, first + 1, {
    aggregateType: CUSTOMER_AGGREGATE,
    aggregateId: customerId,
  });
  // A well-formed cursor past the end of the history was not made here: refused like a forged one.
  if (rows.length === 0 && position > 0 && position > (await headPosition(db))) {
    throw new InvalidInputError(field, 'Not a valid cursor');
  }
  const edges = rows.slice(0, first).map((row) => {
    const node = toCustomerEvent(row);
    return { cursor: node.cursor, node };
  });
  return { edges, pageInfo: { hasNextPage: rows.length > first, endCursor: edges.at(-1)?.cursor ?? null } };
}

/**
 * onCustomerEvent: after `after` when given (any customer's cursor works: positions are one
 * sequence for the whole history); else, with a customer, that customer's whole history; else
 * from now on. Then live.
 */
export async function customerEventStream(
  feed: HistoryFeed,
  customerId: string | undefined,
  after: string | undefined,
): Promise<AsyncIterableIterator<CustomerEvent>> {
  const start =
    after !== undefined
      ? { after: decodeHistoryCursor(after, 'after') }
      : customerId !== undefined
        ? { after: 0 }
        : 'now';
  const rows = await feed.subscribe({ aggregateType: CUSTOMER_AGGREGATE, aggregateId: customerId }, start);
  // Not an async generator: one waiting inside `await` sees return() only at its next yield,
  // which for a quiet customer may be never; this one passes return() straight to the feed.
  const events: AsyncIterableIterator<CustomerEvent> = {
    next: async () => {
      const r = await rows.next();
      return r.done ? r : { done: false, value: toCustomerEvent(r.value) };
    },
    return: async () => {
      await rows.return?.();
      return { done: true, value: undefined };
    },
    [Symbol.asyncIterator]: () => events,
  };
  return events;
}
