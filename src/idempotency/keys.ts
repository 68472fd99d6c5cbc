import { createHash } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import { type Database, type Executor, type Transaction, transaction, writeAtCommit } from '../db/client.js';
import { deleteOldest } from '../db/dialect.js';
import { isDuplicateKey } from '../db/errors.js';
import { retryingDeadlocks } from '../db/retry.js';
import { idempotencyKeys } from '../db/schema.js';
import { ConflictError } from '../errors.js';
import { canonicalJson } from '../support/json.js';

/** How an operation's result is stored with its key and given back on a retry. */
export interface Replay<T> {
  /** Names the operation: a key is bound to one. */
  readonly operation: string;
  readonly encode: (result: T) => unknown;
  readonly decode: (stored: unknown) => T;
}

/**
 * Runs a mutation's transaction at most once per idempotency key.
 *
 * The key row is inserted first, in the mutation's own transaction, and the result is stored
 * in it before the commit: the key exists if and only if the mutation's effects do. A retry
 * with the same key finds the row (waiting on its lock if the first request is still running)
 * and gets the stored result back, writing nothing; the same key with another operation or
 * input is refused with CONFLICT. A mutation that failed left no key, so its retry runs afresh.
 */
export async function runOnce<T>(
  db: Database,
  key: string | undefined,
  input: unknown,
  replay: Replay<T>,
  body: (tx: Transaction) => Promise<T>,
): Promise<T> {
  // Only a request with a key is compared with an earlier one.
  const requestHash =
    key === undefined
      ? ''
      : createHash('sha256')
          .update(`${replay.operation}\n${canonicalJson(input)}`)
          .digest('hex');
  return retryingDeadlocks(() =>
    transaction(db, async (tx) => {
      if (key !== undefined) {
        const stored = await claimKey(tx, key, replay.operation, requestHash);
        if (stored !== undefined) return replay.decode(stored.response);
      }
      const result = await body(tx);
      if (key !== undefined) {
        // With the COMMIT, in the same round trip: nothing reads it before.
        await writeAtCommit(
          tx,
          tx
            .update(idempotencyKeys)
            .set({ response: sql`${JSON.stringify(replay.encode(result))}` })
            .where(eq(idempotencyKeys.key, key))
            .getSQL(),
        );
      }
      return result;
    }),
  );
}

/**
 * Inserts the key, or returns what an earlier request stored under it. A duplicate insert waits
 * for the earlier transaction's lock, so a concurrent retry sees its committed result.
 */
async function claimKey(
  tx: Executor,
  key: string,
  operation: string,
  requestHash: string,
): Promise<{ response: unknown } | undefined> {
  try {
    await tx.insert(idempotencyKeys).values({
      key,
      operation,
      requestHash,
      response: sql`'null'`,
      createdAt: new Date(),
    });
    return undefined;
  } catch (error) {
    if (!isDuplicateKey(error)) throw error;
  }
  const [row] = await tx.select().from(idempotencyKeys).where(eq(idempotencyKeys.key, key)).limit(1);
  if (!row) throw new ConflictError('The idempotency key is being used by another request; retry');
  if (row.operation !== operation || row.requestHash !== requestHash) {
    throw new ConflictError('This Idempotency-Key was used with a different operation or input', {
      reason: 'IDEMPOTENCY_KEY_REUSED',
    });
  }
  return { response: typeof row.response === 'string' ? JSON.parse(row.response) : row.response };
}

/** Deletes up to `limit` keys older than `olderThanMs`, oldest first. */
export async function pruneKeys(db: Executor, olderThanMs: number, limit: number): Promise<number> {
  const [result] = await db.execute(
    deleteOldest(idempotencyKeys, idempotencyKeys.createdAt, olderThanMs, limit),
  );
  return (result as unknown as { affectedRows: number }).affectedRows;
}
