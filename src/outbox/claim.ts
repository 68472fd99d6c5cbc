/**
 * The relay's claim: lock a batch of due rows, publish them, and settle them in the same
 * transaction. The settlement's statements are settle.ts's; the relay is the only caller.
 */
import { and, asc, isNull, lte, type SQL, type SQLWrapper, sql } from 'drizzle-orm';
import { commitWith, type Database, readAll, type Transaction, transaction } from '../db/client.js';
import { asText, idIn, jsonText, literal, now, parseJson } from '../db/dialect.js';
import { prepared } from '../db/prepared.js';
import { outbox } from '../db/schema.js';
import type { EventHeaders } from './event.js';
import { type ClaimedEvent, type EventRow, envelopeOfRow, eventColumns, type RetryPolicy } from './rows.js';
import {
  anyHeldStatement,
  failureStatements,
  RELAY_TRANSACTION,
  releaseSuccessorsStatement,
} from './settle.js';

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

/** A claimed row: the payload as the text the database holds. */
interface ClaimRow extends EventRow {
  readonly id: number | string;
  readonly payload: string;
  readonly headers: unknown;
  readonly lease_token: string | null;
  readonly attempts: number;
  readonly next_attempt_key: string;
}

/** What a claim reads of each row. */
const claimColumns = {
  id: outbox.id,
  ...eventColumns,
  // As the text the database holds: the relay sends it as it is, so parsing it (which
  // mysql2 does for a JSON column) and serializing it again would be wasted work.
  payload: jsonText(outbox.payload).as('payload'),
  headers: outbox.headers,
  leaseToken: outbox.leaseToken,
  attempts: outbox.attempts,
  // The row's exact key in outbox_claim_idx, as the server's text (see relockStatement).
  nextAttemptKey: asText(outbox.nextAttemptAt).as('next_attempt_key'),
};

/** The claim's locking read (see claimAndSettle), rendered once; its rows are mapped by hand. */
const claimStatement = prepared<{ limit: number }>((db) =>
  db
    .select(claimColumns)
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
 * mark, or its failure) instead of twice (a lease, then a mark), and moving a row's entry in the
 * claim index is the dearest write the relay makes. Returns undefined when nothing is due.
 *
 * What bounds a claim held open (no transaction stays open across the broker call unless the
 * server bounds it; docs/design.md):
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
 * make writers' inserts wait for the claim, across the broker call. A claim that finds fewer
 * than n rows is taken again by the rows' exact keys (see below), so that it holds the locks
 * of its own rows and of nothing else.
 */
export async function claimAndSettle(
  db: Database,
  options: ClaimOptions,
  publish: (batch: readonly ClaimedEvent[]) => Promise<Settlement>,
  /** Runs once a batch is locked, before it is published (the relay's durability barrier). */
  beforePublish?: () => Promise<void>,
): Promise<ClaimOutcome | undefined> {
  const config = { ...RELAY_TRANSACTION, idleTimeoutSeconds: options.holdSeconds };
  const first = await transaction(
    db,
    async (tx) => {
      const { rows, held } = await lock(tx, claimStatement({ limit: options.limit }));
      // A full batch: the scan stopped at its LIMIT, on a row of the batch.
      if (rows.length === options.limit)
        return { settled: await settle(tx, rows, held, options, publish, beforePublish) };
      return { partial: rows };
    },
    config,
  );
  if ('settled' in first) return first.settled;
  if (first.partial.length === 0) return undefined;
  // The scan ran off the end of the due range, and InnoDB keeps the lock it took on the first
  // row past it (the oldest published row, a handed-over or held row): a frozen relay would
  // stall whoever needs that row (retention; a writer updating that row's customer; a
  // hand-off's mark). That claim has ended; the same rows are locked again by their exact
  // keys, which locks nothing else.
  return transaction(
    db,
    async (tx) => {
      const { rows, held } = await lock(tx, relockStatement(tx, first.partial));
      if (rows.length === 0) return undefined;
      return settle(tx, rows, held, options, publish, beforePublish);
    },
    config,
  );
}

/**
 * Runs a claim's locking read and, in the same round trip, asks whether any row is held, the
 * usual answer being no: then the settlement leaves out the release of held successors
 * (hundreds of OR-ed conditions the server must plan, a quarter of its work per batch). Asked
 * once the rows are locked, the answer cannot go stale for this batch: a writer deciding to
 * hold a successor of one of them must first lock that row (predecessorUnpublished), which
 * waits for this claim's commit and then reads it published; a writer that locked it earlier
 * made the claim skip it; one that held a successor before the claim has committed it, and
 * READ COMMITTED shows it to this read.
 */
async function lock(tx: Transaction, statement: SQLWrapper): Promise<{ rows: ClaimRow[]; held: boolean }> {
  const [rows = [], held = []] = await readAll(tx, [statement, anyHeldStatement]);
  return { rows: rows as ClaimRow[], held: held.length > 0 };
}

/** The claim's read again, for the rows of a partial claim only, by their exact index keys. */
function relockStatement(tx: Transaction, rows: readonly ClaimRow[]): SQL {
  const keys = rows
    .map((r) => `(next_attempt_at = ${literal(r.next_attempt_key)} AND id = ${Number(r.id)})`)
    .join(' OR ');
  return tx
    .select(claimColumns)
    .from(outbox)
    .where(and(isNull(outbox.publishedAt), isNull(outbox.deadAt), sql.raw(`(${keys})`)))
    .orderBy(asc(outbox.nextAttemptAt), asc(outbox.id))
    .for('update', { skipLocked: true })
    .getSQL();
}

/** Publishes a locked batch and writes its settlement and the COMMIT in one round trip. */
async function settle(
  tx: Transaction,
  rows: readonly ClaimRow[],
  /** Whether any row was held when the batch was locked (lock). */
  anyHeld: boolean,
  options: ClaimOptions,
  publish: (batch: readonly ClaimedEvent[]) => Promise<Settlement>,
  beforePublish: (() => Promise<void>) | undefined,
): Promise<ClaimOutcome> {
  const batch: ClaimedEvent[] = rows.map((r) => ({
    id: Number(r.id),
    takenOver: r.lease_token != null,
    headers: parseJson(r.headers) as EventHeaders,
    envelope: envelopeOfRow(r),
    payloadJson: r.payload,
  }));
  const attempts = new Map(rows.map((r) => [Number(r.id), r.attempts]));
  await beforePublish?.();
  const settlement = await publish(batch);

  const statements: SQLWrapper[] = [];
  const { published } = settlement;
  const release = published.length > 0 && anyHeld;
  if (published.length > 0) {
    const ids = published.map((e) => e.id);
    statements.push(tx.update(outbox).set({ publishedAt: now }).where(idIn(outbox.id, ids)).getSQL());
    if (release) statements.push(releaseSuccessorsStatement(published));
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
}
