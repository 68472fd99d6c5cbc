/** Retention of the outbox: published rows are deleted once nobody needs them (retention/pruner.ts). */
import type { Executor } from '../db/client.js';
import { deleteOldest } from '../db/dialect.js';
import { outbox } from '../db/schema.js';

/**
 * Deletes up to `limit` events published more than `olderThanMs` ago, oldest first; returns how
 * many. Reads the range published_at < cutoff on outbox_claim_idx (published_at leads it), so it
 * never reads, let alone locks, a pending, leased or dead row, and a small limit keeps each
 * statement's locks short enough not to delay claims.
 */
export async function prunePublished(db: Executor, olderThanMs: number, limit: number): Promise<number> {
  const [result] = await db.execute(deleteOldest(outbox, outbox.publishedAt, olderThanMs, limit));
  return (result as unknown as { affectedRows: number }).affectedRows;
}
