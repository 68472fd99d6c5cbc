/**
 * Every SQL statement that touches the outbox table lives here, one exported function each.
 * Functions that are a step of a caller's transaction take that transaction; the relay's own
 * short transactions (claim) are opened here so their isolation level is decided in one place.
 *
 * Time is always the database's: leases and back-off compare against NOW(3), so relays on
 * machines with skewed clocks still agree on when a lease has expired.
 */
import {
  and,
  asc,
  count,
  eq,
  gt,
  inArray,
  isNotNull,
  isNull,
  lte,
  min,
  or,
  type SQL,
  sql,
} from 'drizzle-orm';
import { escape as escapeLiteral } from 'mysql2';
import {
  commitWith,
  type Database,
  type Executor,
  flushDeferredWrites,
  readRows,
  transaction,
  utcIso,
  writeAtCommit,
} from '../db/client.js';
import { prepared, preparedPerCount, type Renderer } from '../db/prepared.js';
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

/** A row a writer appended: claimed-shaped, so a relay in the process can publish it as it is. */
export interface AppendedEvent extends ClaimedEvent {
  /** Written leased to the relay in this process, to be handed over after the commit. */
  readonly leased: boolean;
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
  /** Pending events waiting for an earlier event of their aggregate to be published. */
  readonly held: number;
  /** Seconds since the oldest unpublished, not-dead event occurred; null when there is none. */
  readonly oldestPendingAgeSeconds: number | null;
}

const now = sql`NOW(3)`;
/** The columns of an event's envelope: what a claim publishes and what the worker compares. */
const eventColumns = {
  eventId: outbox.eventId,
  type: outbox.type,
  aggregateType: outbox.aggregateType,
  aggregateId: outbox.aggregateId,
  sequence: outbox.sequence,
  occurredAt: outbox.occurredAt,
  payload: outbox.payload,
};
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
  aggregateId: sql`LAST_INSERT_ID()`,
  payload: sql`REPLACE(${sql.placeholder('payload')}, ${sql.placeholder('quotedToken')}, CONCAT('"', LAST_INSERT_ID(), '"'))`,
};
type Columns = typeof newRow | typeof newRowOfInserted;
type Lease_ = { leaseOwner: string; leaseToken: string; leaseMicroseconds: number };
/** A new row due now: a relay elsewhere claims it. */
const due = (columns: Columns) => (db: Renderer) =>
  db.insert(outbox).values({ ...columns, nextAttemptAt: now, held: false });
/** A new row leased to the relay in this process (see handoff.ts), due again when the lease ends. */
const leased = (columns: Columns) => (db: Renderer) => {
  const expiry = sql`NOW(3) + INTERVAL ${sql.placeholder('leaseMicroseconds')} MICROSECOND`;
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

/** What a relay did with a claimed batch (claimAndSettle writes it). */
export interface Settlement {
  /** Confirmed by the broker. */
  readonly published: readonly ClaimedEvent[];
  /** Refused by the broker (nacked, returned, timed out, not encodable): event ids by error. */
  readonly failed: ReadonlyMap<string, readonly number[]>;
  // Every other event of the batch is left as it was: due now, no attempt counted (the broker
  // went away, or the relay is stopping).
}

export interface ClaimOutcome {
  readonly claimed: number;
  /** Claimed rows that carried another relay's expired hand-off lease. */
  readonly takenOver: number;
  readonly marked: number;
  /** Held successors made due by the marks. */
  readonly released: number;
  /** Ids that went dead with this attempt. */
  readonly dead: readonly number[];
}

export interface ClaimOptions {
  readonly limit: number;
  /** How long the server keeps the claim of a relay that stops answering (frozen, cut off). */
  readonly holdSeconds: number;
  readonly retry: RetryPolicy;
}

/** An event's columns as the driver gives them (readRows), by column name. */
interface EventRow {
  readonly event_id: string;
  readonly type: string;
  readonly aggregate_type: string;
  readonly aggregate_id: string;
  readonly sequence: number;
  readonly occurred_at: Date | string;
  readonly payload: unknown;
}

/** A claimed row: the payload as the text the database holds. */
interface ClaimRow extends EventRow {
  readonly id: number | string;
  readonly payload: string;
  readonly headers: unknown;
  readonly lease_token: string | null;
  readonly attempts: number;
}

/** The envelope of an event read by readRows, without its payload. */
function envelopeOfRow(r: EventRow): Omit<EventEnvelope, 'payload'> {
  return {
    eventId: r.event_id,
    type: r.type,
    aggregateType: r.aggregate_type,
    aggregateId: r.aggregate_id,
    sequence: r.sequence,
    occurredAt: utcIso(r.occurred_at),
  };
}

/** The claim's locking read (see claimAndSettle), rendered once; its rows are mapped by hand. */
const claimStatement = prepared<{ limit: number }>((db) =>
  db
    .select({
      id: outbox.id,
      ...eventColumns,
      // As the text the database holds: the relay sends it as it is, so parsing it (which
      // mysql2 does for a JSON column) and serializing it again would be wasted work.
      payload: sql<string>`CAST(${outbox.payload} AS CHAR)`.as('payload'),
      headers: outbox.headers,
      leaseToken: outbox.leaseToken,
      attempts: outbox.attempts,
    })
    .from(outbox)
    .where(and(isNull(outbox.publishedAt), isNull(outbox.deadAt), lte(outbox.nextAttemptAt, now)))
    .orderBy(asc(outbox.nextAttemptAt), asc(outbox.id))
    .limit(sql.placeholder('limit'))
    .for('update', { skipLocked: true }),
);

/**
 * Claims up to `limit` due events by locking their rows, lets `publish` send them, and writes
 * its settlement, in one transaction held open across the broker's confirms. The row locks are
 * the claim: other relays' SKIP LOCKED reads pass over them, so each row is written once (its
 * mark, or its failure) instead of twice (a lease, then a mark): the database's share of the
 * relay's work halves (README, Performance). Returns undefined when nothing is due.
 *
 * What bounds a claim held open (docs/DESIGN: "unless the server bounds it"):
 *   - a relay that crashes: its connection closes and the server rolls back at once, so its
 *     batch is due again immediately;
 *   - a relay that freezes or is cut off: the session's wait_timeout, set to `holdSeconds`
 *     (RELAY_LEASE_MS) for the claim's life, makes the server close the connection and roll
 *     back; the relay's settlement then fails on the dead connection and writes nothing, so
 *     another relay publishes the batch again: a duplicate, never a loss;
 *   - a graceful stop: the batch in hand is settled, what was not confirmed is left due.
 * The confirm timeout is at most half of it (config), so a relay that keeps answering settles
 * well before the server would end its claim.
 *
 * Rows an in-process writer handed over carry a lease instead (outbox/handoff.ts); once that
 * lease has expired, they are due and claimed here like any other row ("taken over"), and the
 * mark or failure written here fences the old lease holder out (markPublished, markFailed).
 *
 * The select is
 *   WHERE published_at IS NULL AND dead_at IS NULL AND next_attempt_at <= NOW(3)
 *   ORDER BY next_attempt_at, id LIMIT n FOR UPDATE SKIP LOCKED
 * on outbox_claim_idx (published_at, dead_at, next_attempt_at, id). EXPLAIN on MariaDB 10.11 and
 * MySQL 8 shows `range` on that index with no filesort: the two IS NULL parts are equalities,
 * and next_attempt_at is both the range and the sort, so the scan starts at the oldest due row,
 * stops after n rows, and never reads a published, dead, handed-over or backing-off row. That
 * is why the order is (next_attempt_at, id) rather than plain id: with ORDER BY id the database
 * must walk every unpublished row in id order, and each claim would slow down as the backlog
 * grows. A fresh event's next_attempt_at is its insert time, so the order is still oldest
 * first. Rows other relays hold are skipped, one lock check each.
 *
 * READ COMMITTED: under REPEATABLE READ, InnoDB would keep gap locks on the scanned range and
 * make writers' inserts wait for the claim, across the broker call.
 */
export async function claimAndSettle(
  db: Database,
  options: ClaimOptions,
  publish: (batch: readonly ClaimedEvent[]) => Promise<Settlement>,
): Promise<ClaimOutcome | undefined> {
  return transaction(
    db,
    async (tx) => {
      const rows = await readRows<ClaimRow>(tx, claimStatement({ limit: options.limit }));
      if (rows.length === 0) return undefined;
      const batch: ClaimedEvent[] = rows.map((r) => ({
        id: Number(r.id),
        takenOver: r.lease_token != null,
        headers: parseJson(r.headers) as EventHeaders,
        envelope: envelopeOfRow(r),
        payloadJson: r.payload,
      }));
      const attempts = new Map(rows.map((r) => [Number(r.id), r.attempts]));
      const settlement = await publish(batch);

      const statements: SQL[] = [];
      const { published } = settlement;
      // Whether any row is held at all, the usual answer being no: then the release (hundreds
      // of OR-ed conditions the server must plan, a quarter of its work per batch) is left
      // out. The answer cannot go stale for our batch: a writer deciding to hold a successor
      // of one of our rows must first lock that row (predecessorUnpublished), which waits for
      // our commit and then reads it published; a writer that held one before our claim has
      // committed it, and READ COMMITTED shows it to this read.
      const release = published.length > 0 && (await anyHeld(tx));
      if (published.length > 0) {
        statements.push(
          tx
            .update(outbox)
            .set({ publishedAt: now })
            .where(idIn(published.map((e) => e.id)))
            .getSQL(),
        );
        if (release) statements.push(releaseSuccessorsStatement(tx, published));
      }
      const dead: number[] = [];
      for (const [error, ids] of settlement.failed) {
        const failure = failureStatements(
          tx,
          ids.map((id) => ({ id, attempts: attempts.get(id) ?? 0 })),
          error,
          options.retry,
        );
        statements.push(...failure.statements);
        dead.push(...failure.dying);
      }
      const results = await commitWith(tx, statements);
      return {
        claimed: batch.length,
        takenOver: batch.filter((e) => e.takenOver).length,
        marked: published.length > 0 ? (results[0]?.affectedRows ?? 0) : 0,
        released: release ? (results[1]?.affectedRows ?? 0) : 0,
        dead,
      };
    },
    { isolationLevel: 'read committed', idleTimeoutSeconds: options.holdSeconds },
  );
}

/** What markPublished needs of each event: its row and its place in its aggregate. */
export type Publishable = Pick<ClaimedEvent, 'id'> & {
  readonly envelope: Pick<EventEnvelope, 'aggregateType' | 'aggregateId' | 'sequence'>;
};

export interface MarkResult {
  /** Rows marked published by this call. */
  readonly marked: number;
  /** Held successors made due by it. */
  readonly released: number;
}

/**
 * Marks events published, but only those whose lease is still this relay's (fencing): if the
 * lease expired and another relay took the rows over, this changes nothing and the new owner
 * settles them. Then releases the held successor of each event: the broker has confirmed them
 * all, so each aggregate's next event may follow, even when the mark itself was fenced out.
 *
 * One transaction, sent as one round trip (commitWith): READ COMMITTED (no gap locks held
 * against writers), the mark, the release, the COMMIT. The order matters: the mark waits for
 * a writer that holds the predecessor's row (predecessorUnpublished) and so commits before
 * it; the release, a locking read, then sees the writer's held row.
 */
export async function markPublished(
  db: Database,
  events: readonly Publishable[],
  leaseToken: string,
): Promise<MarkResult> {
  if (events.length === 0) return { marked: 0, released: 0 };
  return transaction(db, async (tx) => {
    // Only published_at changes: the lease columns stay as a record of which relay published
    // the row, and an update that keeps the row's size is measurably cheaper for InnoDB.
    const mark = tx
      .update(outbox)
      .set({ publishedAt: now })
      .where(
        and(idIn(events.map((e) => e.id)), eq(outbox.leaseToken, leaseToken), isNull(outbox.publishedAt)),
      )
      .getSQL();
    const [marked, released] = await commitWith(tx, [mark, releaseSuccessorsStatement(tx, events)], {
      isolationLevel: 'read committed',
    });
    return { marked: marked?.affectedRows ?? 0, released: released?.affectedRows ?? 0 };
  });
}

/**
 * Releases held rows whose predecessor is published (or pruned). markPublished marks and
 * releases in one transaction, so this finds nothing unless something else left a row held: a
 * relay of an earlier version that marked and released in two statements and died between
 * them, or a row changed by hand. A safety net; the relays run it now and then.
 */
export async function releaseStranded(db: Executor, limit: number): Promise<number> {
  const [rows] = await db.execute(sql`
    SELECT s.id AS id FROM ${outbox} s
    LEFT JOIN ${outbox} p ON p.aggregate_type = s.aggregate_type AND p.aggregate_id = s.aggregate_id
      AND p.sequence = s.sequence - 1
    WHERE s.held = 1 AND (p.id IS NULL OR p.published_at IS NOT NULL)
    LIMIT ${limit}`);
  const ids = (rows as unknown as Array<{ id: number | string }>).map((r) => Number(r.id));
  if (ids.length === 0) return 0;
  const [result] = await db
    .update(outbox)
    .set({ held: false, nextAttemptAt: now })
    .where(and(idIn(ids), eq(outbox.held, true)));
  return result.affectedRows;
}

/** Whether any row waits for its predecessor: one entry of outbox_held_idx read at most. */
async function anyHeld(tx: Executor): Promise<boolean> {
  const rows = await tx.select({ id: outbox.id }).from(outbox).where(eq(outbox.held, true)).limit(1);
  return rows.length > 0;
}

/**
 * Makes the held successor (sequence + 1) of each event due now. Runs on outbox_held_idx, whose
 * first column is `held`: with no held row at all, the usual case, it reads nothing.
 */
async function releaseSuccessors(tx: Executor, events: readonly Publishable[]): Promise<number> {
  if (events.length === 0) return 0;
  const [result] = await tx.execute(releaseSuccessorsStatement(tx, events));
  return (result as unknown as { affectedRows: number }).affectedRows;
}

function releaseSuccessorsStatement(tx: Executor, events: readonly Publishable[]): SQL {
  // The conditions as literals, escaped by mysql2 as its own client-side formatting does: as
  // bound parameters, the three values of each of hundreds of events cost Drizzle an object and
  // type checks apiece, the largest share of a relay's CPU in profiles.
  const successors = events
    .map(({ envelope: e }) => {
      if (!Number.isSafeInteger(e.sequence)) throw new TypeError(`not a sequence: ${String(e.sequence)}`);
      return `(aggregate_type = ${escapeLiteral(e.aggregateType)} AND aggregate_id = ${escapeLiteral(e.aggregateId)} AND sequence = ${e.sequence + 1})`;
    })
    .join(' OR ');
  return tx
    .update(outbox)
    .set({ held: false, nextAttemptAt: now })
    .where(and(eq(outbox.held, true), sql.raw(`(${successors})`)))
    .getSQL();
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
  return transaction(
    db,
    async (tx) => {
      const fenced = and(idIn(ids), eq(outbox.leaseToken, leaseToken), isNull(outbox.publishedAt));
      const rows = await tx
        .select({ id: outbox.id, attempts: outbox.attempts })
        .from(outbox)
        .where(fenced)
        .for('update');
      if (rows.length === 0) return [];
      const { statements, dying } = failureStatements(tx, rows, error, policy);
      await commitWith(tx, statements);
      return dying;
    },
    { isolationLevel: 'read committed' },
  );
}

/**
 * The statements that record a failed attempt of locked rows whose attempt counts are known:
 * the ones at the limit go dead with the error kept, the others get a retry time with
 * exponential back-off and jitter (capped); all count the attempt and lose any lease.
 */
function failureStatements(
  tx: Executor,
  rows: readonly { readonly id: number; readonly attempts: number }[],
  error: string,
  policy: RetryPolicy,
): { statements: SQL[]; dying: number[] } {
  const released = { ...noLease, lastError: error.slice(0, 1000) };
  // delay = random(0.5 … 1) × min(max, base × 2^attempts), computed per row in SQL because
  // every row has its own attempt count. Half-jitter keeps a floor so retries never bunch at 0.
  const delayUs = sql`FLOOR(LEAST(${policy.backoffMaxMs}, ${policy.backoffBaseMs} * POW(2, ${outbox.attempts})) * (0.5 + RAND() / 2) * 1000)`;
  const dying = rows.filter((r) => r.attempts + 1 >= policy.maxAttempts).map((r) => r.id);
  const retrying = rows.filter((r) => r.attempts + 1 < policy.maxAttempts).map((r) => r.id);
  const statements: SQL[] = [];
  // Separate statements, each reading `attempts` before it is incremented: MySQL evaluates
  // SET assignments left to right, so one statement would see a half-updated row.
  if (dying.length > 0) {
    statements.push(
      tx
        .update(outbox)
        .set({ ...released, deadAt: now })
        .where(idIn(dying))
        .getSQL(),
    );
  }
  if (retrying.length > 0) {
    statements.push(
      tx
        .update(outbox)
        .set({ ...released, nextAttemptAt: sql`NOW(3) + INTERVAL ${delayUs} MICROSECOND` })
        .where(idIn(retrying))
        .getSQL(),
    );
  }
  if (rows.length > 0) {
    statements.push(
      tx
        .update(outbox)
        .set({ attempts: sql`${outbox.attempts} + 1` })
        .where(idIn(rows.map((r) => r.id)))
        .getSQL(),
    );
  }
  return { statements, dying };
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

/** Dead events revived per transaction by reviveDead. */
const REVIVE_CHUNK = 1_000;

/**
 * Brings dead events back to life: attempts reset, due now. All dead events, or only those
 * with the given event ids. Returns the ids of the events revived.
 *
 * In transactions of at most `chunk` rows, walking outbox_dead_idx (dead_at, then id) from
 * where the last one stopped: one statement over every dead row would be one transaction over
 * possibly many thousands, whose rows the relays' claims must step over until it commits,
 * taking lock memory from the buffer pool (README, Operating it). Only events dead when the
 * call began are revived, so one that dies again meanwhile is not revived twice. A failure
 * part way leaves the chunks before it revived.
 */
export async function reviveDead(
  db: Database,
  eventIds?: readonly string[],
  chunk = REVIVE_CHUNK,
): Promise<string[]> {
  if (eventIds !== undefined && eventIds.length === 0) return [];
  // The database's clock, kept as the driver returns it and sent back as a bound value.
  const [[{ at: started }]] = (await db.execute(sql`SELECT NOW(3) AS at`)) as unknown as [[{ at: unknown }]];
  const revived: string[] = [];
  let after: { deadAt: Date; id: number } | undefined;
  for (;;) {
    const batch = await transaction(db, async (tx) => {
      const rows = await tx
        .select({ id: outbox.id, eventId: outbox.eventId, deadAt: outbox.deadAt })
        .from(outbox)
        .where(
          and(
            deadWhere(eventIds),
            lte(outbox.deadAt, sql`${started}`),
            after &&
              or(
                gt(outbox.deadAt, after.deadAt),
                and(eq(outbox.deadAt, after.deadAt), gt(outbox.id, after.id)),
              ),
          ),
        )
        .orderBy(asc(outbox.deadAt), asc(outbox.id))
        .limit(chunk)
        .for('update');
      if (rows.length === 0) return [];
      await tx
        .update(outbox)
        .set({ deadAt: null, attempts: 0, nextAttemptAt: now, lastError: null })
        .where(idIn(rows.map((r) => r.id)));
      return rows;
    });
    revived.push(...batch.map((r) => r.eventId));
    const last = batch.at(-1);
    if (batch.length < chunk || !last?.deadAt) return revived;
    after = { deadAt: last.deadAt, id: last.id };
  }
}

/**
 * Gives up on dead events on purpose: each is recorded as skipped (published_at set, dead_at
 * and the error kept, never sent) and the next event of its aggregate is released, so an
 * aggregate stopped by a dead event moves on. Consumers see a gap in that aggregate's
 * sequence; the worker accepts it only for events skipped here (isSkipped). Returns the ids.
 */
export async function skipDead(db: Database, eventIds: readonly string[]): Promise<string[]> {
  if (eventIds.length === 0) return [];
  return transaction(db, async (tx) => {
    const which = deadWhere(eventIds);
    const rows = await tx
      .select({
        id: outbox.id,
        eventId: outbox.eventId,
        aggregateType: outbox.aggregateType,
        aggregateId: outbox.aggregateId,
        sequence: outbox.sequence,
      })
      .from(outbox)
      .where(and(which, isNull(outbox.publishedAt)))
      .for('update');
    if (rows.length === 0) return [];
    await tx
      .update(outbox)
      .set({
        publishedAt: now,
        lastError: sql`LEFT(CONCAT('skipped by an operator; ', COALESCE(${outbox.lastError}, '')), 1000)`,
      })
      .where(idIn(rows.map((r) => r.id)));
    await releaseSuccessors(
      tx,
      rows.map((r) => ({ id: r.id, envelope: r })),
    );
    return rows.map((r) => r.eventId);
  });
}

function deadWhere(eventIds?: readonly string[]) {
  return eventIds === undefined
    ? and(isNotNull(outbox.deadAt), isNull(outbox.publishedAt))
    : and(isNotNull(outbox.deadAt), isNull(outbox.publishedAt), inArray(outbox.eventId, [...eventIds]));
}

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
  if (eventIds.length === 0) return new Map();
  // Read and mapped by hand (readRows): this runs for every group the worker handles.
  const values = Object.fromEntries(eventIds.map((id, i) => [`id${i}`, id]));
  const rows = await readRows<EventRow>(db, findStatement(eventIds.length)(values));
  return new Map(rows.map((r) => [r.event_id, { ...envelopeOfRow(r), payload: parseJson(r.payload) }]));
}

/** findEvents' read of n ids, rendered once per n (a worker's group is 1 to its prefetch). */
const findStatement = preparedPerCount<Record<string, string>>((n) => (db) => {
  const ids = Array.from({ length: n }, (_, i) => sql.placeholder(`id${i}`));
  return db.select(eventColumns).from(outbox).where(inArray(outbox.eventId, ids));
});

/**
 * Deletes up to `limit` events published more than `olderThanMs` ago, oldest first; returns how
 * many. Reads the range published_at < cutoff on outbox_claim_idx (published_at leads it), so it
 * never reads, let alone locks, a pending, leased or dead row, and a small limit keeps each
 * statement's locks short enough not to delay claims.
 */
export async function prunePublished(db: Executor, olderThanMs: number, limit: number): Promise<number> {
  const [result] = await db.execute(
    sql`DELETE FROM ${outbox} WHERE ${outbox.publishedAt} < NOW(3) - INTERVAL ${olderThanMs * 1000} MICROSECOND ORDER BY ${outbox.publishedAt} LIMIT ${limit}`,
  );
  return (result as unknown as { affectedRows: number }).affectedRows;
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
    .where(and(isNotNull(outbox.deadAt), isNull(outbox.publishedAt)))
    .orderBy(asc(outbox.deadAt))
    .limit(limit);
  return rows.map((r) => ({ ...r, deadAt: r.deadAt ?? new Date(0) }));
}

/** The envelope's fields but the payload, from a row or from an event about to be written. */
export function envelopeHead(
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

export async function readStats(db: Executor): Promise<OutboxStats> {
  const pendingWhere = and(isNull(outbox.publishedAt), isNull(outbox.deadAt));
  const [row] = await db
    .select({
      pending: count(),
      leased: sql<string>`COALESCE(SUM(${outbox.leaseExpiresAt} > NOW(3)), 0)`,
      held: sql<string>`COALESCE(SUM(${outbox.held}), 0)`,
      oldest: min(outbox.occurredAt),
      dbNow: sql<Date>`NOW(3)`.mapWith(outbox.occurredAt),
    })
    .from(outbox)
    .where(pendingWhere);
  const [dead] = await db
    .select({ n: count() })
    .from(outbox)
    .where(and(isNotNull(outbox.deadAt), isNull(outbox.publishedAt)));
  const [published] = await db
    .select({ n: count() })
    .from(outbox)
    .where(and(isNotNull(outbox.publishedAt), isNull(outbox.deadAt)));
  const oldest = row?.oldest ?? null;
  return {
    pending: row?.pending ?? 0,
    leased: Number(row?.leased ?? 0),
    published: published?.n ?? 0,
    dead: dead?.n ?? 0,
    held: Number(row?.held ?? 0),
    oldestPendingAgeSeconds:
      oldest && row?.dbNow ? Math.max(0, (row.dbNow.getTime() - oldest.getTime()) / 1000) : null,
  };
}
