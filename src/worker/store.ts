/**
 * Every SQL statement on the worker's own tables: the inbox (message ids handled) and the
 * progress of each aggregate (the highest sequence handled). Each takes the transaction it
 * runs in.
 */
import { and, eq, sql } from 'drizzle-orm';
import type { Executor } from '../db/client.js';
import { isDuplicateKey } from '../db/errors.js';
import { inbox, workerProgress } from '../db/schema.js';

export interface AggregateKey {
  readonly consumer: string;
  readonly aggregateType: string;
  readonly aggregateId: string;
}

/** Records a message as handled; false when it already was (a redelivery). */
export async function recordInbox(
  tx: Executor,
  consumer: string,
  messageId: string,
  handledAt: Date,
): Promise<boolean> {
  try {
    await tx.insert(inbox).values({ consumer, messageId, handledAt });
    return true;
  } catch (error) {
    if (isDuplicateKey(error)) return false;
    throw error;
  }
}

/** Whether the inbox holds this message id (it was handled and its row not yet pruned). */
export async function wasHandled(tx: Executor, consumer: string, messageId: string): Promise<boolean> {
  const [row] = await tx
    .select({ id: inbox.messageId })
    .from(inbox)
    .where(and(eq(inbox.consumer, consumer), eq(inbox.messageId, messageId)))
    .limit(1);
  return row !== undefined;
}

/**
 * Takes the aggregate's progress for handling `sequence`, holding the progress row's lock until
 * the caller commits, so the next handler of the same aggregate, in any worker, waits for us and
 * then reads our update. Returns the highest sequence handled before, or 'handled' when this
 * sequence (or a later one) already was.
 *
 * The first event of an aggregate inserts the row (a duplicate key means another delivery got
 * there first); later ones read it FOR UPDATE. One statement for the usual first event instead
 * of an insert, a read and an update.
 */
export async function takeProgress(
  tx: Executor,
  key: AggregateKey,
  sequence: number,
): Promise<number | 'handled'> {
  if (sequence === 1) {
    try {
      await tx.insert(workerProgress).values({ ...key, lastSequence: 1 });
      return 0;
    } catch (error) {
      if (isDuplicateKey(error)) return 'handled';
      throw error;
    }
  }
  const [row] = await tx
    .select({ last: workerProgress.lastSequence })
    .from(workerProgress)
    .where(where(key))
    .for('update');
  if (row === undefined) {
    // Nothing of this aggregate handled yet (its earlier events are of types we do not handle,
    // or predate the progress table): the row appears now, locked.
    await tx.execute(
      sql`INSERT IGNORE INTO ${workerProgress} VALUES (${key.consumer}, ${key.aggregateType}, ${key.aggregateId}, 0)`,
    );
    return takeProgress(tx, key, sequence);
  }
  return row.last >= sequence ? 'handled' : row.last;
}

/** Moves the progress to `sequence` (after takeProgress, in the same transaction). */
export async function setProgress(tx: Executor, key: AggregateKey, sequence: number): Promise<void> {
  if (sequence === 1) return; // written by takeProgress
  await tx.update(workerProgress).set({ lastSequence: sequence }).where(where(key));
}

/**
 * A parked event counts as passed for ordering, so the aggregate's later events are not held
 * behind it forever (it is in the dead-letter queue for an operator). Only the next sequence
 * moves the mark, so a stale copy cannot jump it ahead.
 */
export async function passParked(tx: Executor, key: AggregateKey, sequence: number): Promise<void> {
  await tx.execute(
    sql`INSERT INTO ${workerProgress} VALUES (${key.consumer}, ${key.aggregateType}, ${key.aggregateId}, ${sequence})
        ON DUPLICATE KEY UPDATE ${sql.identifier(workerProgress.lastSequence.name)} =
          IF(${workerProgress.lastSequence} = ${sequence - 1}, ${sequence}, ${workerProgress.lastSequence})`,
  );
}

/**
 * Deletes up to `limit` inbox rows older than `olderThanMs`, oldest first, on inbox_handled_at_idx.
 * Safe once no copy of the message can still arrive and be taken for new: see README, Retention.
 */
export async function pruneInbox(db: Executor, olderThanMs: number, limit: number): Promise<number> {
  const [result] = await db.execute(
    sql`DELETE FROM ${inbox} WHERE ${inbox.handledAt} < NOW(3) - INTERVAL ${olderThanMs * 1000} MICROSECOND ORDER BY ${inbox.handledAt} LIMIT ${limit}`,
  );
  return (result as unknown as { affectedRows: number }).affectedRows;
}

const where = (key: AggregateKey) =>
  and(
    eq(workerProgress.consumer, key.consumer),
    eq(workerProgress.aggregateType, key.aggregateType),
    eq(workerProgress.aggregateId, key.aggregateId),
  );
