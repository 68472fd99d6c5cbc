/**
 * The worker's reads of the outbox: the stored events it trusts instead of a message's claims,
 * and how many of an aggregate's events it must still see before a message that arrived early.
 */
import { and, count, eq, inArray, type SQLWrapper, sql } from 'drizzle-orm';
import { type Executor, readAll } from '../db/client.js';
import { parseJson } from '../db/dialect.js';
import { placeholderAt, preparedPerCount } from '../db/prepared.js';
import { outbox } from '../db/schema.js';
import type { EventEnvelope } from './event.js';
import { type EventRow, envelopeOfRow, eventColumns } from './rows.js';

/**
 * How many of an aggregate's events strictly between two sequences a consumer still has to
 * see first: events of the given types (the ones it handles), not skipped by an operator. The
 * worker asks when a message arrives with a gap before it. Rows pruned by retention were
 * published long ago and do not count.
 */
export async function countPredecessors(
  db: Executor,
  aggregateType: string,
  aggregateId: string,
  afterSequence: number,
  beforeSequence: number,
  types: readonly string[],
): Promise<number> {
  if (types.length === 0 || beforeSequence - afterSequence <= 1) return 0;
  const [row] = await db
    .select({ n: count() })
    .from(outbox)
    .where(
      and(
        eq(outbox.aggregateType, aggregateType),
        eq(outbox.aggregateId, aggregateId),
        sql`${outbox.sequence} > ${afterSequence} AND ${outbox.sequence} < ${beforeSequence}`,
        inArray(outbox.type, [...types]),
        sql`NOT (${outbox.deadAt} IS NOT NULL AND ${outbox.publishedAt} IS NOT NULL)`,
      ),
    );
  return row?.n ?? 0;
}

/** The stored events with these ids: what the worker trusts instead of a message's claims. */
export async function findEvents(
  db: Executor,
  eventIds: readonly string[],
): Promise<Map<string, EventEnvelope>> {
  return (await findEventsWith(db, eventIds, [])).events;
}

/**
 * findEvents, and `alongside` (other reads of the same transaction) in the same round trip:
 * their rows as the driver gives them, in order.
 */
export async function findEventsWith(
  db: Executor,
  eventIds: readonly string[],
  alongside: readonly SQLWrapper[],
): Promise<{ events: Map<string, EventEnvelope>; alongside: unknown[][] }> {
  if (eventIds.length === 0) {
    return { events: new Map(), alongside: alongside.length > 0 ? await readAll(db, alongside) : [] };
  }
  // Read and mapped by hand (readRows): this runs for every group the worker handles.
  const [rows, ...others] = (await readAll(db, [findStatement(eventIds.length)(eventIds), ...alongside])) as [
    EventRow[],
    ...unknown[][],
  ];
  return {
    events: new Map(rows.map((r) => [r.event_id, { ...envelopeOfRow(r), payload: parseJson(r.payload) }])),
    alongside: others,
  };
}

/** findEvents' read of n ids, rendered once per n (a worker's group is 1 to its prefetch). */
const findStatement = preparedPerCount<readonly string[]>((n) => (db) => {
  const ids = Array.from({ length: n }, (_, i) => placeholderAt(i));
  return db.select(eventColumns).from(outbox).where(inArray(outbox.eventId, ids));
});
