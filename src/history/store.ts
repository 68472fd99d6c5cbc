/**
 * Every SQL statement on the history of handled events (handled_events, history_positions).
 *
 * Why positions need care: readers follow the history by position ("everything after p"),
 * and a reader must never find, later, a row below a position it has already passed. An
 * auto-increment id or a timestamp does not give that: ids are handed out at insert time but
 * rows become visible at commit, and concurrent transactions commit in any order, so a reader
 * could see id 8 before id 7 commits, move past 7 and never read it.
 *
 * Here positions come from one counter row, incremented as the very last statement before
 * COMMIT. Its row lock is held until the transaction commits, so the next transaction to take
 * a position waits until this one has committed: positions are handed out in commit order,
 * with no gaps (a rolled-back transaction's update of the counter is undone before its lock
 * goes). The cost is that the tails of concurrent handling transactions (the counter, the
 * rows, the COMMIT: one round trip, see appendHistoryAndCommit) run one at a time; the worker
 * handles its messages in groups per transaction, so that is one turn per group.
 *
 * What commit order does not give is a read that always sees a prefix: InnoDB builds a read
 * view without stopping commits, and one read in many thousands under load shows position p
 * without p - 1 (history/holes.ts). What does hold: once any read has shown position p, every
 * position up to p is visible to every read that starts afterwards. Readers build on that
 * (history/feed.ts): the feed hands out only contiguous runs and waits at a hole, and
 * catch-ups read no further than the feed has handed out.
 */
import { and, asc, eq, gt, lte, sql } from 'drizzle-orm';
import { commitWith, type Executor } from '../db/client.js';
import { asInsertId, insertOrUpdate, lastInsertId } from '../db/dialect.js';
import { placeholderAt, preparedPerCount, preparedSql } from '../db/prepared.js';
import { handledEvents, historyPositions } from '../db/schema.js';
import type { StoredEvent } from '../outbox/handler.js';

/** One handled event, as the history holds it: the stored event, where and when it was handled. */
export interface HistoryRow extends StoredEvent {
  readonly position: number;
  readonly handledAt: Date;
  readonly handler: string;
  /** The W3C traceparent of the span that handled it, when tracing was on (app/deliveries.ts). */
  readonly traceparent: string | null;
}

export type NewHistoryRow = Omit<HistoryRow, 'position'>;

/**
 * Under this key an object made from a history row (a subscription's event) keeps the row, so
 * that the engine delivering it (app/deliveries.ts) can trace the delivery without knowing the
 * object's shape.
 */
export const FROM_HISTORY_ROW: unique symbol = Symbol('history row');

/** An object that may keep the history row it was made from. */
export interface FromHistoryRow {
  readonly [FROM_HISTORY_ROW]?: HistoryRow;
}

/** Which rows a reader wants: one aggregate type, optionally one aggregate. */
export interface HistoryFilter {
  readonly aggregateType: string;
  readonly aggregateId?: string;
}

const POSITIONS_ROW = 1;

/**
 * Appends rows to the history and commits: the last step of a transaction (transaction() in
 * db/run-transaction.ts), which must return right after. It takes the position counter's lock, which
 * orders the commits (see above), so it holds that lock for one round trip only: the counter,
 * the rows and the COMMIT go to the server as one multi-statement query (commitWith).
 */
export async function appendHistoryAndCommit(
  tx: Executor,
  rows: readonly NewHistoryRow[],
): Promise<HistoryRow[]> {
  if (rows.length === 0) return [];
  // LAST_INSERT_ID(expr) makes the new counter value the statement's insert id, and the
  // session's LAST_INSERT_ID() for the next statement: the rows take their positions from it
  // on the server, and the insert id tells us which they are.
  const [counter] = await commitWith(tx, [
    takePositions({ count: rows.length }),
    insertRows(rows.length)(rowsValues(rows)),
  ]);
  const last = Number(counter?.insertId);
  if (!Number.isSafeInteger(last) || last < rows.length)
    throw new Error(`history position counter returned ${last}`);
  const first = last - rows.length + 1;
  return rows.map((row, i) => ({ ...row, position: first + i }));
}

/** The counter's statement, rendered once: takes `count` positions (see appendHistoryAndCommit). */
const takePositions = preparedSql<{ count: number }>(
  insertOrUpdate(
    sql`${historyPositions} (${sql.identifier(historyPositions.id.name)}, ${sql.identifier(historyPositions.position.name)})`,
    sql`${POSITIONS_ROW}, ${asInsertId(sql.placeholder('count'))}`,
    sql`${sql.identifier(historyPositions.position.name)} = ${asInsertId(sql`${historyPositions.position} + ${sql.placeholder('count')}`)}`,
  ),
);

/** A history row's values in the order insertRows binds them. */
const ROW_FIELDS = [
  'eventId',
  'type',
  'aggregateType',
  'aggregateId',
  'sequence',
  'occurredAt',
  'handledAt',
  'handler',
  'payload',
  'traceparent',
] as const;

/**
 * Inserts of n rows (a worker's group), each taking the positions just counted: the i-th is
 * LAST_INSERT_ID() - (n - 1 - i). Bound from one flat list of values, ROW_FIELDS of each row.
 */
const insertRows = preparedPerCount<unknown[]>(
  (n) => (db) =>
    db.insert(handledEvents).values(
      Array.from({ length: n }, (_, i) => {
        const at = (field: (typeof ROW_FIELDS)[number]) =>
          placeholderAt(i * ROW_FIELDS.length + ROW_FIELDS.indexOf(field));
        return {
          position: sql`${lastInsertId} - ${n - 1 - i}`,
          eventId: at('eventId'),
          type: at('type'),
          aggregateType: at('aggregateType'),
          aggregateId: at('aggregateId'),
          sequence: at('sequence'),
          occurredAt: at('occurredAt'),
          handledAt: at('handledAt'),
          handler: at('handler'),
          // The JSON text as it is, not through the column's encoding (which would encode it again).
          payload: sql`${at('payload')}`,
          traceparent: at('traceparent'),
        };
      }),
    ),
);

/** The rows' values, ROW_FIELDS of each in turn (insertRows). */
function rowsValues(rows: readonly NewHistoryRow[]): unknown[] {
  const values: unknown[] = [];
  for (const row of rows) {
    for (const field of ROW_FIELDS)
      values.push(field === 'payload' ? JSON.stringify(row.payload) : row[field]);
  }
  return values;
}

/** MariaDB returns JSON columns as text; MySQL returns them parsed. */
const parseJson = (value: unknown): unknown => (typeof value === 'string' ? JSON.parse(value) : value);

/**
 * Rows after `afterPosition` (and at most `through`, when given), in position order, at most
 * `limit`, optionally filtered. A read may miss a row below one it returns (see above).
 */
export async function readHistory(
  db: Executor,
  afterPosition: number,
  limit: number,
  filter?: HistoryFilter,
  through?: number,
): Promise<HistoryRow[]> {
  const rows = await db
    .select()
    .from(handledEvents)
    .where(
      and(
        gt(handledEvents.position, afterPosition),
        through !== undefined ? lte(handledEvents.position, through) : undefined,
        filter ? eq(handledEvents.aggregateType, filter.aggregateType) : undefined,
        filter?.aggregateId !== undefined ? eq(handledEvents.aggregateId, filter.aggregateId) : undefined,
      ),
    )
    .orderBy(asc(handledEvents.position))
    .limit(limit);
  return rows.map((row) => ({ ...row, payload: parseJson(row.payload) }));
}

/**
 * The highest visible position (0 for an empty history). Every position up to it is visible to
 * any read that starts after this one returned (see above), though not always to this one.
 */
export async function headPosition(db: Executor): Promise<number> {
  const [row] = await db
    .select({ head: sql<string | null>`MAX(${handledEvents.position})` })
    .from(handledEvents);
  return Number(row?.head ?? 0);
}
