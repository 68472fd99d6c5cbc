/**
 * The relay's settlement of what it published: marks, failures with back-off, leases handed
 * back, and the release of each aggregate's held next event. Every statement touches only rows
 * whose lease token is the caller's (fencing) or that the caller's claim holds locked.
 */
import { and, eq, isNull, type SQL, type SQLWrapper, sql } from 'drizzle-orm';
import { commitWith, type Database, type Executor, transaction } from '../db/client.js';
import { drizzleDialect, fromNow, idIn, jitteredBackoffUs, literal, now } from '../db/dialect.js';
import { constantStatement, textStatement } from '../db/prepared.js';
import { outbox } from '../db/schema.js';
import { noLease, type Publishable, type RetryPolicy } from './rows.js';

/**
 * The relay's own transactions: READ COMMITTED (no gap locks where writers insert) and a short
 * lock wait, so that a writer queued behind one of these statements, while it waits for a row
 * another relay's frozen claim holds, waits about a second and not until the server ends that
 * claim. A statement that gives up is retried by the relay, or its rows go to another relay.
 */
export const RELAY_TRANSACTION = { isolationLevel: 'read committed', lockWaitSeconds: 1 } as const;

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
 * One transaction (RELAY_TRANSACTION), its statements sent as one round trip (commitWith): the
 * mark, the release, the COMMIT. The order matters: the mark waits for
 * a writer that holds the predecessor's row (predecessorUnpublished) and so commits before
 * it; the release, a locking read, then sees the writer's held row.
 */
export async function markPublished(
  db: Database,
  events: readonly Publishable[],
  leaseToken: string,
): Promise<MarkResult> {
  if (events.length === 0) return { marked: 0, released: 0 };
  return transaction(
    db,
    async (tx) => {
      const mark = markStatement(
        events.map((e) => e.id),
        leaseToken,
      );
      const [marked, released] = await commitWith(tx, [mark, releaseSuccessorsStatement(events)]);
      return { marked: marked?.affectedRows ?? 0, released: released?.affectedRows ?? 0 };
    },
    RELAY_TRANSACTION,
  );
}

/** Marks the text of which is rendered once, from the schema, around the id list and the token. */
const IDS = '\u0000ids\u0000';
const markParts = (() => {
  // Only published_at changes: the lease columns stay as a record of which relay published the
  // row, and an update that keeps the row's size is measurably cheaper for InnoDB.
  const { sql: text } = drizzleDialect.sqlToQuery(
    sql`update ${outbox} set ${sql.identifier(outbox.publishedAt.name)} = ${now} where (${outbox.id} IN (${sql.raw(IDS)}) and ${outbox.leaseToken} = ${sql.placeholder('token')} and ${outbox.publishedAt} is null)`,
  );
  const [head = '', rest = ''] = text.split(IDS);
  const [middle = '', tail = ''] = rest.split('?');
  return { head, middle, tail };
})();

/** The mark of `ids` fenced by `leaseToken`: the ids inlined (as idIn), the token bound. */
function markStatement(ids: readonly number[], leaseToken: string) {
  for (const id of ids) {
    if (!Number.isSafeInteger(id)) throw new TypeError(`not an id: ${String(id)}`);
  }
  const { head, middle, tail } = markParts;
  return textStatement([`${head}${ids.join(',')}${middle}`, tail], [leaseToken]);
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
    .where(and(idIn(outbox.id, ids), eq(outbox.held, true)));
  return result.affectedRows;
}

/**
 * Whether any row waits for its predecessor: one entry of outbox_held_idx read at most. A
 * statement rendered once, so that a claim can send it in its own round trip (readAll); its
 * rows are empty when none is held.
 */
export const anyHeldStatement = constantStatement(
  drizzleDialect.sqlToQuery(sql`select 1 from ${outbox} where ${outbox.held} = true limit 1`).sql,
);

/**
 * Makes the held successor (sequence + 1) of each event due now. Runs on outbox_held_idx, whose
 * first column is `held`: with no held row at all, the usual case, it reads nothing.
 */
export async function releaseSuccessors(tx: Executor, events: readonly Publishable[]): Promise<number> {
  if (events.length === 0) return 0;
  const [result] = await tx.execute(releaseSuccessorsStatement(events));
  return (result as unknown as { affectedRows: number }).affectedRows;
}

export function releaseSuccessorsStatement(events: readonly Publishable[]): SQLWrapper {
  // The conditions as literals, escaped by mysql2 as its own client-side formatting does: as
  // bound parameters, the three values of each of hundreds of events would cost Drizzle an
  // object and type checks apiece, on every batch the relay settles.
  const successors = events
    .map(({ envelope: e }) => {
      if (!Number.isSafeInteger(e.sequence)) throw new TypeError(`not a sequence: ${String(e.sequence)}`);
      return `(aggregate_type = ${literal(e.aggregateType)} AND aggregate_id = ${literal(e.aggregateId)} AND sequence = ${e.sequence + 1})`;
    })
    .join(' OR ');
  return textStatement([`${releaseHead}(${successors})`], []);
}

/** releaseSuccessorsStatement's text before its conditions, rendered once from the schema. */
const releaseHead = drizzleDialect.sqlToQuery(
  sql`update ${outbox} set ${sql.identifier(outbox.held.name)} = false, ${sql.identifier(outbox.nextAttemptAt.name)} = ${now} where ${outbox.held} = true and `,
).sql;

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
      const fenced = and(idIn(outbox.id, ids), eq(outbox.leaseToken, leaseToken), isNull(outbox.publishedAt));
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
    RELAY_TRANSACTION,
  );
}

/**
 * The statements that record a failed attempt of locked rows whose attempt counts are known:
 * the ones at the limit go dead with the error kept, the others get a retry time with
 * exponential back-off and jitter (capped); all count the attempt and lose any lease.
 */
export function failureStatements(
  tx: Executor,
  rows: readonly { readonly id: number; readonly attempts: number }[],
  error: string,
  policy: RetryPolicy,
): { statements: SQL[]; dying: number[] } {
  const released = { ...noLease, lastError: error.slice(0, 1000) };
  // Computed per row in SQL because every row has its own attempt count.
  const delayUs = jitteredBackoffUs(policy.backoffBaseMs, policy.backoffMaxMs, outbox.attempts);
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
        .where(idIn(outbox.id, dying))
        .getSQL(),
    );
  }
  if (retrying.length > 0) {
    statements.push(
      tx
        .update(outbox)
        .set({ ...released, nextAttemptAt: fromNow(delayUs) })
        .where(idIn(outbox.id, retrying))
        .getSQL(),
    );
  }
  if (rows.length > 0) {
    statements.push(
      tx
        .update(outbox)
        .set({ attempts: sql`${outbox.attempts} + 1` })
        .where(
          idIn(
            outbox.id,
            rows.map((r) => r.id),
          ),
        )
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
  db: Database,
  ids: readonly number[],
  leaseToken: string,
): Promise<number> {
  if (ids.length === 0) return 0;
  return transaction(
    db,
    async (tx) => {
      const [result] = await tx
        .update(outbox)
        .set({ ...noLease, nextAttemptAt: now })
        .where(and(idIn(outbox.id, ids), eq(outbox.leaseToken, leaseToken), isNull(outbox.publishedAt)));
      return result.affectedRows;
    },
    RELAY_TRANSACTION,
  );
}

/** Dead events revived per transaction by reviveDead. */
