/**
 * The worker's own count of failed attempts per event (worker_attempts): what the retry policy
 * counts by, so no header a publisher sets can spend or reset an event's attempts.
 */
import { sql } from 'drizzle-orm';
import { type Executor, execute } from '../db/client.js';
import { workerAttempts } from '../db/schema.js';

/**
 * Records one more failed attempt at `messageId` and returns how many there have been, in one
 * statement: LAST_INSERT_ID(expr) makes the new count the statement's insert id.
 */
export async function countFailedAttempt(db: Executor, consumer: string, messageId: string): Promise<number> {
  const result = await execute(
    db,
    sql`INSERT INTO ${workerAttempts} VALUES (${consumer}, ${messageId}, LAST_INSERT_ID(1), NOW(3))
        ON DUPLICATE KEY UPDATE ${sql.identifier(workerAttempts.attempts.name)} = LAST_INSERT_ID(${workerAttempts.attempts} + 1),
          ${sql.identifier(workerAttempts.failedAt.name)} = NOW(3)`,
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
  const result = await execute(
    db,
    sql`DELETE FROM ${workerAttempts} WHERE ${workerAttempts.failedAt} < NOW(3) - INTERVAL ${olderThanMs * 1000} MICROSECOND ORDER BY ${workerAttempts.failedAt} LIMIT ${limit}`,
  );
  return result.affectedRows;
}
