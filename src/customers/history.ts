import type { Database } from '../db/client.js';
import { InvalidInputError } from '../errors.js';
import { CursorAheadError, type HistoryFeed, type HistoryStream } from '../history/feed.js';
import {
  FROM_HISTORY_ROW,
  type FromHistoryRow,
  type HistoryRow,
  headPosition,
  readHistory,
} from '../history/store.js';
import type { Deadline } from '../support/deadline.js';
import { decodeHistoryCursor, encodeHistoryCursor } from './cursor.js';
import { CUSTOMER_AGGREGATE } from './events.js';

/** What onCustomerEvent, customerEvents and Customer.events return: one handled event. */
export interface CustomerEvent extends FromHistoryRow {
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
    [FROM_HISTORY_ROW]: row,
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
 * Where onCustomerEvent resumes: `after` (the argument) and `lastEventId` (the `Last-Event-ID`
 * header of a reconnecting SSE client), both cursors.
 */
export interface StreamStart {
  readonly after?: string;
  readonly lastEventId?: string;
}

/** The cursor field a client sends `Last-Event-ID` in, as errors name it. */
export const LAST_EVENT_ID = 'Last-Event-ID';

/**
 * The position to resume after, and which field gave it: the later of the two when both are
 * given. A browser's EventSource reconnects with the request it was opened with (its first
 * `after`, if any) plus the id of the last event it received, which is later; taking the later
 * one never hands a client an event twice. Each must be a cursor this service made.
 */
export function resumeAfter(start: StreamStart): { position: number; field: string } | undefined {
  const given = [
    start.after === undefined
      ? undefined
      : { position: decodeHistoryCursor(start.after, 'after'), field: 'after' },
    start.lastEventId === undefined
      ? undefined
      : { position: decodeHistoryCursor(start.lastEventId, LAST_EVENT_ID), field: LAST_EVENT_ID },
  ].filter((g) => g !== undefined);
  return given.reduce<(typeof given)[number] | undefined>(
    (later, g) => (later === undefined || g.position > later.position ? g : later),
    undefined,
  );
}

/** onCustomerEvent's events; `startCursor` is the position the stream starts after. */
export interface CustomerEventStream extends AsyncIterableIterator<CustomerEvent> {
  readonly startCursor: string;
}

/**
 * onCustomerEvent: after `after` (or a later `Last-Event-ID`) when given (any customer's cursor
 * works: positions are one sequence for the whole history); else, with a customer, that
 * customer's whole history; else from now on. Then live. A cursor ahead of the history is
 * refused as BAD_USER_INPUT on the field that gave it. `deadline` is the subscriber's request's.
 */
export async function customerEventStream(
  feed: HistoryFeed,
  customerId: string | undefined,
  start: StreamStart = {},
  deadline?: Deadline,
): Promise<CustomerEventStream> {
  const resume = resumeAfter(start);
  let rows: HistoryStream;
  try {
    rows = await feed.subscribe(
      { aggregateType: CUSTOMER_AGGREGATE, aggregateId: customerId },
      resume !== undefined ? { after: resume.position } : customerId !== undefined ? { after: 0 } : 'now',
      deadline,
    );
  } catch (error) {
    if (error instanceof CursorAheadError && resume)
      throw new InvalidInputError(resume.field, 'Not a valid cursor');
    throw error;
  }
  // Not an async generator: one waiting inside `await` sees return() only at its next yield,
  // which for a quiet customer may be never; this one passes return() straight to the feed.
  const events: CustomerEventStream = {
    startCursor: encodeHistoryCursor(rows.startedAfter),
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
