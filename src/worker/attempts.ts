/**
 * The worker's own count of failed attempts per event (worker_attempts): what the retry policy
 * counts by, so no header a publisher sets can spend or reset an event's attempts.
 */
import { sql } from 'drizzle-orm';
import { type Executor, execute } from '../db/client.js';
import { asInsertId, deleteOldest, insertOrUpdate, now } from '../db/dialect.js';
import { workerAttempts } from '../db/schema.js';

/**
 * Records one more failed attempt at `messageId` and returns how many there have been, in one
 * statement: the new count is made the statement's insert id (asInsertId).
 */
export async function countFailedAttempt(db: Executor, consumer: string, messageId: string): Promise<number> {
  const result = await execute(
    db,
    insertOrUpdate(
      workerAttempts,
      sql`${consumer}, ${messageId}, ${asInsertId(1)}, ${now}`,
      sql`${sql.identifier(workerAttempts.attempts.name)} = ${asInsertId(sql`${workerAttempts.attempts} + 1`)},
        ${sql.identifier(workerAttempts.failedAt.name)} = ${now}`,
    ),
  );
  return Number(result.insertId);
}

/** Forgets an event's failed attempts (it was parked: an operator's requeue starts afresh). */
export async function forgetAttempts(db: Executor, consumer: string, messageId: string): Promise<void> {
  await execute(
    db,
    sql`DELETE FROM ${workerAttempts} WHERE ${workerAttempts.consumer} = ${consumer} AND ${workerAttempts.messageId} = ${messageId}`,
  );
}

/** Deletes up to `limit` counts of attempts older than `olderThanMs`, oldest first. */
export async function pruneAttempts(db: Executor, olderThanMs: number, limit: number): Promise<number> {
  return (await execute(db, deleteOldest(workerAttempts, workerAttempts.failedAt, olderThanMs, limit)))
    .affectedRows;
}
