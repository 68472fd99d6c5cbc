/**
 * The writer's statements (writer.ts is their only caller): append an event in the caller's
 * transaction, and ask whether its predecessor is still unpublished.
 */
import { and, eq, sql } from 'drizzle-orm';
import { type Executor, flushDeferredWrites, writeAtCommit } from '../db/client.js';
import { fromNow, lastInsertId, now } from '../db/dialect.js';
import { prepared, type Renderer } from '../db/prepared.js';
import { outbox } from '../db/schema.js';
import type { EventHeaders, NewEvent } from './event.js';
import { type AppendedEvent, envelopeHead, type Lease } from './rows.js';

/** A held row's next_attempt_at: never due, so the claim's index range never reaches it. */
const HELD_UNTIL = new Date('9999-12-31T00:00:00.000Z');

/** The columns every new row sets; the payload is the JSON text as it is (not encoded again). */
type NewRowValues = {
  eventId: string;
  aggregateType: string;
  aggregateId: string;
  sequence: number;
  type: string;
  payload: string;
  headers: EventHeaders;
  occurredAt: Date;
};
const newRow = {
  eventId: sql.placeholder('eventId'),
  aggregateType: sql.placeholder('aggregateType'),
  aggregateId: sql.placeholder('aggregateId'),
  sequence: sql.placeholder('sequence'),
  type: sql.placeholder('type'),
  payload: sql`${sql.placeholder('payload')}`,
  headers: sql.placeholder('headers'),
  occurredAt: sql.placeholder('occurredAt'),
};
/**
 * The same, for the event of a row inserted by the statement right before it (see
 * appendEvent's `insertedIdToken`): the aggregate id is that row's id, LAST_INSERT_ID(), and the
 * payload's text takes it where the token stands.
 */
const newRowOfInserted = {
  ...newRow,
  aggregateId: lastInsertId,
  payload: sql`REPLACE(${sql.placeholder('payload')}, ${sql.placeholder('quotedToken')}, CONCAT('"', ${lastInsertId}, '"'))`,
};
type Columns = typeof newRow | typeof newRowOfInserted;
type Lease_ = { leaseOwner: string; leaseToken: string; leaseMicroseconds: number };
/** A new row due now: a relay elsewhere claims it. */
const due = (columns: Columns) => (db: Renderer) =>
  db.insert(outbox).values({ ...columns, nextAttemptAt: now, held: false });
/** A new row leased to the relay in this process (see handoff.ts), due again when the lease ends. */
const leased = (columns: Columns) => (db: Renderer) => {
  const expiry = fromNow(sql.placeholder('leaseMicroseconds'));
  return db.insert(outbox).values({
    ...columns,
    nextAttemptAt: expiry,
    held: false,
    leaseOwner: sql.placeholder('leaseOwner'),
    leaseToken: sql.placeholder('leaseToken'),
    leaseExpiresAt: expiry,
  });
};
const insertDue = prepared<NewRowValues>(due(newRow));
const insertLeased = prepared<NewRowValues & Lease_>(leased(newRow));
/** A new row waiting for its predecessor (see releaseSuccessors). */
const insertHeld = prepared<NewRowValues>((db) =>
  db.insert(outbox).values({ ...newRow, nextAttemptAt: sql`${HELD_UNTIL}`, held: true }),
);
type OfInserted = Omit<NewRowValues, 'aggregateId'> & { quotedToken: string };
const insertDueOfInserted = prepared<OfInserted>(due(newRowOfInserted));
const insertLeasedOfInserted = prepared<OfInserted & Lease_>(leased(newRowOfInserted));

/**
 * Appends an event in the caller's transaction and returns it as a relay would have claimed
 * it. With a `lease`, the row is written already leased to that relay (see handoff.ts); `held`
 * writes it waiting for its predecessor (see releaseSuccessors). Only writer.ts calls this.
 */
export async function appendEvent(
  tx: Executor,
  event: NewEvent,
  payloadJson: string,
  mode: Lease | 'held' | undefined,
  /**
   * The event is of the row the transaction's previous statement inserted, whose id only the
   * database knows yet: the event's aggregateId is this token, and so is the id wherever the
   * payload holds it (as a JSON string); the row takes LAST_INSERT_ID() in their place. The
   * returned envelope and payload still show the token (writer.ts resolves them after the commit).
   */
  insertedIdToken?: string,
): Promise<AppendedEvent> {
  const lease = typeof mode === 'object' ? mode : undefined;
  const row = {
    eventId: event.eventId,
    aggregateType: event.aggregateType,
    aggregateId: event.aggregateId,
    sequence: event.sequence,
    type: event.type,
    payload: payloadJson,
    headers: event.headers,
    occurredAt: event.occurredAt,
    quotedToken: JSON.stringify(insertedIdToken ?? ''),
  };
  const leaseValues = lease && {
    leaseOwner: lease.owner,
    leaseToken: lease.token,
    leaseMicroseconds: lease.durationMs * 1000,
  };
  if (insertedIdToken !== undefined && (mode === 'held' || event.aggregateId !== insertedIdToken)) {
    throw new Error(
      "an event of an inserted row is its aggregate's first, with the token as its aggregate id",
    );
  }
  const statement =
    insertedIdToken !== undefined
      ? leaseValues
        ? insertLeasedOfInserted({ ...row, ...leaseValues })
        : insertDueOfInserted(row)
      : leaseValues
        ? insertLeased({ ...row, ...leaseValues })
        : mode === 'held'
          ? insertHeld(row)
          : insertDue(row);
  // Nothing in the transaction needs the row before it commits, so it goes with the COMMIT.
  const inserted = await writeAtCommit(tx, statement);
  return {
    // Known once the transaction has committed: the relay is handed the event only then.
    get id() {
      return Number(inserted().insertId);
    },
    takenOver: false,
    leased: lease !== undefined,
    headers: event.headers,
    envelope: envelopeHead(event),
    payloadJson,
  };
}

/**
 * Whether the event before `event` in its aggregate is still unpublished, locking that row so
 * the answer holds until the caller commits: a relay marking it published waits for us, and
 * then finds our held row to release (markPublished); or it marked first, and we read it
 * published. A predecessor pruned by retention was published.
 */
export async function predecessorUnpublished(
  tx: Executor,
  event: Pick<NewEvent, 'aggregateType' | 'aggregateId' | 'sequence'>,
): Promise<boolean> {
  // The predecessor may have been appended in this same transaction, its row deferred to the commit.
  await flushDeferredWrites(tx);
  const [row] = await tx
    .select({ publishedAt: outbox.publishedAt })
    .from(outbox)
    .where(
      and(
        eq(outbox.aggregateType, event.aggregateType),
        eq(outbox.aggregateId, event.aggregateId),
        eq(outbox.sequence, event.sequence - 1),
      ),
    )
    .for('update');
  return row !== undefined && row.publishedAt === null;
}
