/** The outbox's counts for metrics (metrics/index.ts): pending, leased, held, dead, published. */
import { and, count, isNotNull, isNull, min, sql } from 'drizzle-orm';
import type { Executor } from '../db/client.js';
import { now } from '../db/dialect.js';
import { outbox } from '../db/schema.js';

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

export async function readStats(db: Executor): Promise<OutboxStats> {
  const pendingWhere = and(isNull(outbox.publishedAt), isNull(outbox.deadAt));
  const [row] = await db
    .select({
      pending: count(),
      leased: sql<string>`COALESCE(SUM(${outbox.leaseExpiresAt} > ${now}), 0)`,
      held: sql<string>`COALESCE(SUM(${outbox.held}), 0)`,
      oldest: min(outbox.occurredAt),
      dbNow: sql<Date>`${now}`.mapWith(outbox.occurredAt),
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
