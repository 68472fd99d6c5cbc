/** Retention of the outbox: published rows are deleted once nobody needs them (retention/pruner.ts). */
import { and, asc, isNotNull, lt } from 'drizzle-orm';
import { type Database, readRows, transaction } from '../db/client.js';
import { beforeNow, idIn } from '../db/dialect.js';
import { outbox } from '../db/schema.js';

/**
 * Retention's transactions. READ COMMITTED: under REPEATABLE READ a DELETE by age takes next-key
 * locks, and the gap before the oldest published row is where new rows are inserted when
 * nothing else is pending; queued behind any lock, it stalled every create. A short lock wait:
 * retention is never in a hurry, and a batch that gives up is taken again on the next run.
 */
export const RETENTION_TRANSACTION = { isolationLevel: 'read committed', lockWaitSeconds: 1 } as const;

/**
 * Deletes up to `limit` events published more than `olderThanMs` ago, oldest first; returns how
 * many. Reads the range published_at < cutoff on outbox_claim_idx (published_at leads it), so it
 * never reads a pending, leased or dead row. The rows are locked with SKIP LOCKED first and then
 * deleted by id, so retention never waits for a row someone else holds (a relay's claim, whose
 * scan may have locked the oldest published row, or a writer reading its predecessor).
 */
export async function prunePublished(db: Database, olderThanMs: number, limit: number): Promise<number> {
  return transaction(
    db,
    async (tx) => {
      const rows = await readRows<{ id: number | string }>(
        tx,
        tx
          .select({ id: outbox.id })
          .from(outbox)
          .where(and(isNotNull(outbox.publishedAt), lt(outbox.publishedAt, beforeNow(olderThanMs))))
          .orderBy(asc(outbox.publishedAt))
          .limit(limit)
          .for('update', { skipLocked: true })
          .getSQL(),
      );
      if (rows.length === 0) return 0;
      const [result] = await tx.delete(outbox).where(
        idIn(
          outbox.id,
          rows.map((r) => Number(r.id)),
        ),
      );
      return result.affectedRows;
    },
    RETENTION_TRANSACTION,
  );
}
