/**
 * Every SQL statement that touches the outbox table lives here, one exported function each.
 * Functions that are a step of a caller's transaction take that transaction; the relay's own
 * short transactions (claim) are opened here so their isolation level is decided in one place.
 *
 * Time is always the database's: leases and back-off compare against NOW(3), so relays on
 * machines with skewed clocks still agree on when a lease has expired.
 */
import { and, asc, count, eq, gte, inArray, isNotNull, isNull, lte, min, sql } from 'drizzle-orm';
import type { Database, Executor } from '../db/client.js';
import { outbox } from '../db/schema.js';
import type { EventEnvelope, EventHeaders, NewEvent } from './event.js';

/** A row the relay has claimed, ready to publish. */
export interface ClaimedEvent {
  readonly id: number;
  /** The envelope without its payload… */
  readonly envelope: Omit<EventEnvelope, 'payload'>;
  /** …which stays the JSON text the database holds: the relay never needs it as an object. */
  readonly payloadJson: string;
  readonly headers: EventHeaders;
  /** The row carried another relay's (expired) lease: a crashed or stalled relay's work. */
  readonly takenOver: boolean;
}

export interface Lease {
  readonly owner: string;
  readonly token: string;
  readonly durationMs: number;
}

export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
}

export interface OutboxStats {
  readonly pending: number;
  readonly leased: number;
  readonly published: number;
  readonly dead: number;
  /** Seconds since the oldest unpublished, not-dead event occurred; null when there is none. */
  readonly oldestPendingAgeSeconds: number | null;
}

const now = sql`NOW(3)`;
/** The lease columns of a row nobody holds. */
const noLease = { leaseOwner: null, leaseToken: null, leaseExpiresAt: null } as const;

/**
 * `id IN (1,2,3)` with the ids inlined. The relay's statements carry hundreds of ids; as bound
 * parameters each one costs Drizzle an object and a type check, which measured as the largest
 * share of the relay's CPU. Inlining is safe only because every id is checked to be an integer.
 */
function idIn(ids: readonly number[]) {
  for (const id of ids) {
    if (!Number.isSafeInteger(id)) throw new TypeError(`not an outbox id: ${String(id)}`);
  }
  return sql`${outbox.id} IN (${sql.raw(ids.join(','))})`;
}

/** MariaDB returns JSON columns as text; MySQL returns them parsed. */
function parseJson(value: unknown): unknown {
  return typeof value === 'string' ? JSON.parse(value) : value;
}

/**
 * Appends an event in the caller's transaction and returns it as a relay would have claimed
 * it. With a `lease`, the row is written already leased to that relay (see relay/handoff.ts):
 * the relay in this process publishes it right after the commit, with no claim round trip,
 * and if the process dies first, the lease expires and any relay claims it as usual.
 */
export async function appendEvent(tx: Executor, event: NewEvent, lease?: Lease): Promise<ClaimedEvent> {
  const expiry = lease ? sql`NOW(3) + INTERVAL ${lease.durationMs * 1000} MICROSECOND` : undefined;
  const [inserted] = await tx
    .insert(outbox)
    .values({
      eventId: event.eventId,
      aggregateType: event.aggregateType,
      aggregateId: event.aggregateId,
      sequence: event.sequence,
      type: event.type,
      payload: event.payload,
      headers: event.headers,
      occurredAt: event.occurredAt,
      nextAttemptAt: expiry ?? now,
      leaseOwner: lease?.owner,
      leaseToken: lease?.token,
      leaseExpiresAt: expiry,
    })
    .$returningId();
  if (!inserted) throw new Error('INSERT into outbox returned no id');
  return {
    id: inserted.id,
    takenOver: false,
    headers: event.headers,
    envelope: envelopeHead(event),
    payloadJson: JSON.stringify(event.payload),
  };
}

/**
 * The next sequence number of an aggregate, locking its latest event so that two transactions
 * appending to the same aggregate queue up instead of both picking the same number.
 */
export async function nextSequence(
  tx: Executor,
  aggregateType: string,
  aggregateId: string,
): Promise<number> {
  const rows = await tx
    .select({ sequence: outbox.sequence })
    .from(outbox)
    .where(and(eq(outbox.aggregateType, aggregateType), eq(outbox.aggregateId, aggregateId)))
    .orderBy(sql`${outbox.sequence} DESC`)
    .limit(1)
    .for('update');
  return (rows[0]?.sequence ?? 0) + 1;
}

/**
 * Claims up to `limit` due events for one relay and commits the lease before anything is
 * published, so no transaction stays open across a broker call.
 *
 * The select is
 *   WHERE published_at IS NULL AND dead_at IS NULL AND next_attempt_at <= NOW(3)
 *   ORDER BY next_attempt_at, id LIMIT n FOR UPDATE SKIP LOCKED
 * on outbox_claim_idx (published_at, dead_at, next_attempt_at, id). EXPLAIN on MariaDB 10.11 and
 * MySQL 8 shows `range` on that index with no filesort: the two IS NULL parts are equalities,
 * and next_attempt_at is both the range and the sort, so the scan starts at the oldest due row,
 * stops after n rows, and never reads a published, dead, leased or backing-off row. That is why
 * the order is (next_attempt_at, id) rather than plain id: with ORDER BY id the database must
 * walk every unpublished row in id order, including the ones other relays hold leases on, and
 * each claim would slow down as the backlog grows. A fresh event's next_attempt_at is its
 * insert time, so the order is still oldest first.
 *
 * The lease is written into next_attempt_at as well as lease_expires_at: a leased row is simply
 * "not due" until its lease runs out, which is what keeps it out of the index range above.
 *
 * READ COMMITTED: under REPEATABLE READ, InnoDB would keep gap locks on the scanned range and
 * make concurrent claims and inserts wait on each other.
 */
export async function claimBatch(db: Database, lease: Lease, limit: number): Promise<ClaimedEvent[]> {
  return db.transaction(
    async (tx) => {
      const rows = await tx
        .select({
          id: outbox.id,
          eventId: outbox.eventId,
          type: outbox.type,
          aggregateType: outbox.aggregateType,
          aggregateId: outbox.aggregateId,
          sequence: outbox.sequence,
          occurredAt: outbox.occurredAt,
          payload: outbox.payload,
          headers: outbox.headers,
          leaseToken: outbox.leaseToken,
        })
        .from(outbox)
        .where(and(isNull(outbox.publishedAt), isNull(outbox.deadAt), lte(outbox.nextAttemptAt, now)))
        .orderBy(asc(outbox.nextAttemptAt), asc(outbox.id))
        .limit(limit)
        .for('update', { skipLocked: true });
      if (rows.length === 0) return [];
      const expiry = sql`NOW(3) + INTERVAL ${lease.durationMs * 1000} MICROSECOND`;
      await tx
        .update(outbox)
        .set({
          leaseOwner: lease.owner,
          leaseToken: lease.token,
          leaseExpiresAt: expiry,
          nextAttemptAt: expiry,
        })
        .where(idIn(rows.map((r) => r.id)));
      return rows.map((r) => ({
        id: r.id,
        takenOver: r.leaseToken !== null,
        headers: parseJson(r.headers) as EventHeaders,
        envelope: envelopeHead(r),
        payloadJson: typeof r.payload === 'string' ? r.payload : JSON.stringify(r.payload),
      }));
    },
    { isolationLevel: 'read committed' },
  );
}

/**
 * Marks events published, in one statement, but only those whose lease is still this relay's
 * (fencing): if the lease expired and another relay took the rows over, this changes nothing
 * and the new owner settles them. Returns how many rows were marked.
 */
export async function markPublished(
  db: Executor,
  ids: readonly number[],
  leaseToken: string,
): Promise<number> {
  if (ids.length === 0) return 0;
  // Only published_at changes: the lease columns stay as a record of which relay published the
  // row (nothing reads a lease of a published row), and an update that keeps the row's size is
  // measurably cheaper for InnoDB than one that turns three columns to NULL.
  const [result] = await db
    .update(outbox)
    .set({ publishedAt: now })
    .where(and(idIn(ids), eq(outbox.leaseToken, leaseToken), isNull(outbox.publishedAt)));
  return result.affectedRows;
}

/**
 * Records a failed publish: attempts + 1, then either a retry time with exponential back-off
 * and jitter (capped), or, at the attempt limit, the dead state with the error kept.
 * Fenced by the lease token like markPublished. Returns the ids that went dead.
 */
export async function markFailed(
  db: Database,
  ids: readonly number[],
  leaseToken: string,
  error: string,
  policy: RetryPolicy,
): Promise<number[]> {
  if (ids.length === 0) return [];
  const lastError = error.slice(0, 1000);
  // delay = random(0.5 … 1) × min(max, base × 2^attempts), computed per row in SQL because
  // every row has its own attempt count. Half-jitter keeps a floor so retries never bunch at 0.
  const delayUs = sql`FLOOR(LEAST(${policy.backoffMaxMs}, ${policy.backoffBaseMs} * POW(2, ${outbox.attempts})) * (0.5 + RAND() / 2) * 1000)`;
  return db.transaction(
    async (tx) => {
      const fenced = and(idIn(ids), eq(outbox.leaseToken, leaseToken), isNull(outbox.publishedAt));
      const rows = await tx
        .select({ id: outbox.id, attempts: outbox.attempts })
        .from(outbox)
        .where(fenced)
        .for('update');
      if (rows.length === 0) return [];
      const dying = rows.filter((r) => r.attempts + 1 >= policy.maxAttempts).map((r) => r.id);
      const retrying = rows.filter((r) => r.attempts + 1 < policy.maxAttempts).map((r) => r.id);
      const released = { ...noLease, lastError };
      // Separate statements, each reading `attempts` before it is incremented: MySQL evaluates
      // SET assignments left to right, so one statement would see a half-updated row.
      if (dying.length > 0) {
        await tx
          .update(outbox)
          .set({ ...released, deadAt: now })
          .where(idIn(dying));
      }
      if (retrying.length > 0) {
        await tx
          .update(outbox)
          .set({ ...released, nextAttemptAt: sql`NOW(3) + INTERVAL ${delayUs} MICROSECOND` })
          .where(idIn(retrying));
      }
      await tx
        .update(outbox)
        .set({ attempts: sql`${outbox.attempts} + 1` })
        .where(idIn([...dying, ...retrying]));
      return dying;
    },
    { isolationLevel: 'read committed' },
  );
}

/**
 * Hands back the leases of events this relay claimed but did not settle, due at once, so a
 * stopping relay's work is taken by another relay without waiting for the lease to expire.
 */
export async function releaseLeases(
  db: Executor,
  ids: readonly number[],
  leaseToken: string,
): Promise<number> {
  if (ids.length === 0) return 0;
  const [result] = await db
    .update(outbox)
    .set({ ...noLease, nextAttemptAt: now })
    .where(and(idIn(ids), eq(outbox.leaseToken, leaseToken), isNull(outbox.publishedAt)));
  return result.affectedRows;
}

/**
 * Brings dead events back to life: attempts reset, due now. All dead events, or only those
 * with the given event ids. Returns the ids of the events revived.
 */
export async function reviveDead(db: Database, eventIds?: readonly string[]): Promise<string[]> {
  return db.transaction(async (tx) => {
    const which =
      eventIds === undefined
        ? isNotNull(outbox.deadAt)
        : and(isNotNull(outbox.deadAt), inArray(outbox.eventId, [...eventIds]));
    if (eventIds !== undefined && eventIds.length === 0) return [];
    const rows = await tx.select({ eventId: outbox.eventId }).from(outbox).where(which).for('update');
    if (rows.length === 0) return [];
    await tx
      .update(outbox)
      .set({ deadAt: null, attempts: 0, nextAttemptAt: now, lastError: null })
      .where(which);
    return rows.map((r) => r.eventId);
  });
}

export interface DeadEvent {
  readonly eventId: string;
  readonly type: string;
  readonly aggregateType: string;
  readonly aggregateId: string;
  readonly attempts: number;
  readonly deadAt: Date;
  readonly lastError: string | null;
}

export async function listDead(db: Executor, limit: number): Promise<DeadEvent[]> {
  const rows = await db
    .select({
      eventId: outbox.eventId,
      type: outbox.type,
      aggregateType: outbox.aggregateType,
      aggregateId: outbox.aggregateId,
      attempts: outbox.attempts,
      deadAt: outbox.deadAt,
      lastError: outbox.lastError,
    })
    .from(outbox)
    .where(isNotNull(outbox.deadAt))
    .orderBy(asc(outbox.deadAt))
    .limit(limit);
  return rows.map((r) => ({ ...r, deadAt: r.deadAt ?? new Date(0) }));
}

/** The events of one aggregate with one type, oldest first. */
export async function listAggregateEvents(
  db: Executor,
  aggregateType: string,
  aggregateId: string,
  type: string,
): Promise<EventEnvelope[]> {
  const rows = await db
    .select()
    .from(outbox)
    .where(
      and(
        eq(outbox.aggregateType, aggregateType),
        eq(outbox.aggregateId, aggregateId),
        eq(outbox.type, type),
      ),
    )
    .orderBy(asc(outbox.sequence));
  return rows.map(toEnvelope);
}

function toEnvelope(row: typeof outbox.$inferSelect): EventEnvelope {
  return { ...envelopeHead(row), payload: parseJson(row.payload) };
}

/** The envelope's fields but the payload, from a row or from an event about to be written. */
function envelopeHead(
  event: Pick<NewEvent, 'eventId' | 'type' | 'aggregateType' | 'aggregateId' | 'sequence' | 'occurredAt'>,
): Omit<EventEnvelope, 'payload'> {
  return {
    eventId: event.eventId,
    type: event.type,
    aggregateType: event.aggregateType,
    aggregateId: event.aggregateId,
    sequence: event.sequence,
    occurredAt: event.occurredAt.toISOString(),
  };
}

/** Events of one type published at or after `since`, in publishing order, at most `limit`. */
export async function listPublishedSince(
  db: Executor,
  type: string,
  since: Date,
  limit: number,
): Promise<EventEnvelope[]> {
  const rows = await db
    .select()
    .from(outbox)
    .where(and(eq(outbox.type, type), gte(outbox.publishedAt, since)))
    .orderBy(asc(outbox.publishedAt))
    .limit(limit);
  return rows.map(toEnvelope);
}

export async function readStats(db: Executor): Promise<OutboxStats> {
  const pendingWhere = and(isNull(outbox.publishedAt), isNull(outbox.deadAt));
  const [row] = await db
    .select({
      pending: count(),
      leased: sql<string>`COALESCE(SUM(${outbox.leaseExpiresAt} > NOW(3)), 0)`,
      oldest: min(outbox.occurredAt),
      dbNow: sql<Date>`NOW(3)`.mapWith(outbox.occurredAt),
    })
    .from(outbox)
    .where(pendingWhere);
  const [dead] = await db.select({ n: count() }).from(outbox).where(isNotNull(outbox.deadAt));
  const [published] = await db.select({ n: count() }).from(outbox).where(isNotNull(outbox.publishedAt));
  const oldest = row?.oldest ?? null;
  return {
    pending: row?.pending ?? 0,
    leased: Number(row?.leased ?? 0),
    published: published?.n ?? 0,
    dead: dead?.n ?? 0,
    oldestPendingAgeSeconds:
      oldest && row?.dbNow ? Math.max(0, (row.dbNow.getTime() - oldest.getTime()) / 1000) : null,
  };
}
