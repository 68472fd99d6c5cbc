/**
 * Operators' handling of dead events (the GraphQL dead-event operations): list them, revive
 * them, or skip them on purpose.
 */
import { and, asc, eq, gt, inArray, isNotNull, isNull, lte, or, sql } from 'drizzle-orm';
import { type Database, type Executor, transaction } from '../db/client.js';
import { idIn, now } from '../db/dialect.js';
import { outbox } from '../db/schema.js';
import { releaseSuccessors } from './settle.js';

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

/** Dead events revived per transaction by reviveDead. */
const REVIVE_CHUNK = 1_000;

/**
 * Brings dead events back to life: attempts reset, due now. All dead events, or only those
 * with the given event ids. Returns the ids of the events revived.
 *
 * In transactions of at most `chunk` rows, walking outbox_dead_idx (dead_at, then id) from
 * where the last one stopped: one statement over every dead row would be one transaction over
 * possibly many thousands, whose rows the relays' claims must step over until it commits,
 * taking lock memory from the buffer pool (docs/operations.md). Only events dead when the
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
  const [[{ at: started }]] = (await db.execute(sql`SELECT ${now} AS at`)) as unknown as [[{ at: unknown }]];
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
        .where(
          idIn(
            outbox.id,
            rows.map((r) => r.id),
          ),
        );
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
      .where(
        idIn(
          outbox.id,
          rows.map((r) => r.id),
        ),
      );
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
