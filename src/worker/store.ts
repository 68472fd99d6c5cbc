/**
 * Every SQL statement on the worker's own tables: the inbox (message ids handled) and the
 * progress of each aggregate (the highest sequence handled). Each takes the transaction it
 * runs in.
 */
import { and, eq, sql } from 'drizzle-orm';
import { type Executor, execute, executeAll, type Transaction, writeAtCommit } from '../db/client.js';
import { deleteOldest, insertIfAbsent, insertOrUpdate } from '../db/dialect.js';
import { isDuplicateKey } from '../db/errors.js';
import { placeholderAt, prepared, preparedPerCount } from '../db/prepared.js';
import { inbox, workerProgress } from '../db/schema.js';

export interface AggregateKey {
  readonly consumer: string;
  readonly aggregateType: string;
  readonly aggregateId: string;
}

/** An aggregate's progress row, created saying its first event is handled. */
const insertFirstProgress = prepared<AggregateKey>((db) =>
  db.insert(workerProgress).values({
    consumer: sql.placeholder('consumer'),
    aggregateType: sql.placeholder('aggregateType'),
    aggregateId: sql.placeholder('aggregateId'),
    lastSequence: 1,
  }),
);
const insertInbox = prepared<{ consumer: string; messageId: string; handledAt: Date }>((db) =>
  db.insert(inbox).values({
    consumer: sql.placeholder('consumer'),
    messageId: sql.placeholder('messageId'),
    handledAt: sql.placeholder('handledAt'),
  }),
);

/** Records a message as handled; false when it already was (a redelivery). */
export async function recordInbox(
  tx: Executor,
  consumer: string,
  messageId: string,
  handledAt: Date,
): Promise<boolean> {
  return writtenUnlessDuplicate(execute(tx, insertInbox({ consumer, messageId, handledAt })));
}

/**
 * The usual first event of an aggregate, in one round trip: its progress row, created saying
 * `1`, and its inbox row. True when both were written: the caller then holds the progress row
 * (as takeProgress would have returned `{ last: 0, written: true }`) and has recorded the inbox.
 * False when either was already there (a waiting successor created the progress row, or this is
 * a redelivery): nothing is decided then, and the caller takes the usual path, takeProgress and
 * recordInbox, which sees whatever this wrote and answers as it would have.
 */
export async function recordFirstEvent(
  tx: Transaction,
  key: AggregateKey,
  messageId: string,
  handledAt: Date,
): Promise<boolean> {
  return writtenUnlessDuplicate(
    executeAll(tx, [insertFirstProgress(key), insertInbox({ consumer: key.consumer, messageId, handledAt })]),
  );
}

/** True once `write` succeeded; false when a row it inserts was already there (a duplicate key). */
async function writtenUnlessDuplicate(write: Promise<unknown>): Promise<boolean> {
  try {
    await write;
    return true;
  } catch (error) {
    if (isDuplicateKey(error)) return false;
    throw error;
  }
}

/** insertFirstProgress and insertInbox of n rows, bound from flat lists (3 values a row). */
const insertFirstProgressRows = preparedPerCount<readonly unknown[]>(
  (n) => (db) =>
    db.insert(workerProgress).values(
      Array.from({ length: n }, (_, i) => ({
        consumer: placeholderAt(3 * i),
        aggregateType: placeholderAt(3 * i + 1),
        aggregateId: placeholderAt(3 * i + 2),
        lastSequence: 1,
      })),
    ),
);
const insertInboxRows = preparedPerCount<readonly unknown[]>(
  (n) => (db) =>
    db.insert(inbox).values(
      Array.from({ length: n }, (_, i) => ({
        consumer: placeholderAt(3 * i),
        messageId: placeholderAt(3 * i + 1),
        handledAt: placeholderAt(3 * i + 2),
      })),
    ),
);

/**
 * recordFirstEvent without a round trip of its own, for the first events of a group: their
 * progress and inbox rows are gathered (add) and go to the server with the COMMIT
 * (writeAtCommit) as two statements of n rows, not two per event. Only for a transaction that
 * may fail at its commit and be done again the usual way: if any row is already there, the
 * COMMIT does not run and the transaction fails with a duplicate key, where recordFirstEvent
 * would have answered false. `queue` must run before anything reads progress rows (a later
 * event's turn) and before the COMMIT.
 */
export class FirstEventsAtCommit {
  private progress: unknown[] = [];
  private inbox: unknown[] = [];

  constructor(
    private readonly tx: Transaction,
    private readonly handledAt: Date,
  ) {}

  add(key: AggregateKey, messageId: string): void {
    this.progress.push(key.consumer, key.aggregateType, key.aggregateId);
    this.inbox.push(key.consumer, messageId, this.handledAt);
  }

  /** Queues the rows added so far for the COMMIT, ahead of any write deferred after this. */
  async queue(): Promise<void> {
    const n = this.progress.length / 3;
    if (n === 0) return;
    const [progress, inboxRows] = [this.progress, this.inbox];
    this.progress = [];
    this.inbox = [];
    await writeAtCommit(this.tx, insertFirstProgressRows(n)(progress));
    await writeAtCommit(this.tx, insertInboxRows(n)(inboxRows));
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

/** The highest sequence of the aggregate handled (or passed), read without a lock; undefined if none. */
export async function lastHandled(db: Executor, key: AggregateKey): Promise<number | undefined> {
  const [row] = await db
    .select({ last: workerProgress.lastSequence })
    .from(workerProgress)
    .where(where(key))
    .limit(1);
  return row?.last;
}

/** An aggregate's progress as takeProgress found it. */
export interface Progress {
  /** The highest sequence handled before. */
  readonly last: number;
  /** The row already records the sequence being handled (a first event inserted it so). */
  readonly written: boolean;
}

/**
 * Takes the aggregate's progress for handling `sequence`, holding the progress row's lock until
 * the caller commits, so the next handler of the same aggregate, in any worker, waits for us and
 * then reads our update. Returns 'handled' when this sequence (or a later one) already was.
 *
 * The first event of an aggregate inserts the row already saying 1: one statement instead of an
 * insert, a read and an update. A duplicate key there does not mean "handled": a later event that
 * arrived first and is waiting may have created the row at 0; so it is read like any other.
 */
export async function takeProgress(
  tx: Executor,
  key: AggregateKey,
  sequence: number,
): Promise<Progress | 'handled'> {
  if (sequence === 1) {
    try {
      await tx.insert(workerProgress).values({ ...key, lastSequence: 1 });
      return { last: 0, written: true };
    } catch (error) {
      if (!isDuplicateKey(error)) throw error;
    }
    // The failed insert left a shared lock on the row. Read it under that same shared lock: a
    // copy of an event already handled (the usual duplicate) is answered without asking for an
    // exclusive lock, which concurrent copies would deadlock on by all upgrading at once.
    const [seen] = await tx.execute(
      sql`SELECT ${workerProgress.lastSequence} AS last FROM ${workerProgress} WHERE ${where(key)} LOCK IN SHARE MODE`,
    );
    const shared = (seen as unknown as Array<{ last: number }>)[0];
    if (shared !== undefined && shared.last >= sequence) return 'handled';
  }
  const [row] = await tx
    .select({ last: workerProgress.lastSequence })
    .from(workerProgress)
    .where(where(key))
    .for('update');
  if (row === undefined) {
    // Nothing of this aggregate handled yet (its earlier events are of types we do not handle,
    // or predate the progress table): the row appears now, at 0, locked.
    await tx.execute(
      insertIfAbsent(workerProgress, sql`${key.consumer}, ${key.aggregateType}, ${key.aggregateId}, 0`),
    );
    return { last: 0, written: false };
  }
  return row.last >= sequence ? 'handled' : { last: row.last, written: false };
}

/** Moves the progress to `sequence` (after takeProgress, in the same transaction). */
export async function setProgress(
  tx: Executor,
  key: AggregateKey,
  sequence: number,
  progress: Progress,
): Promise<void> {
  if (progress.written) return;
  await tx.update(workerProgress).set({ lastSequence: sequence }).where(where(key));
}

/**
 * A parked event counts as passed for ordering, so the aggregate's later events are not held
 * behind it forever (it is in the dead-letter queue for an operator). Only the next sequence
 * moves the mark, so a stale copy cannot jump it ahead.
 */
export async function passParked(tx: Executor, key: AggregateKey, sequence: number): Promise<void> {
  await tx.execute(
    insertOrUpdate(
      workerProgress,
      sql`${key.consumer}, ${key.aggregateType}, ${key.aggregateId}, ${sequence}`,
      sql`${sql.identifier(workerProgress.lastSequence.name)} =
        CASE WHEN ${workerProgress.lastSequence} = ${sequence - 1} THEN ${sequence} ELSE ${workerProgress.lastSequence} END`,
    ),
  );
}

/**
 * Deletes up to `limit` inbox rows older than `olderThanMs`, oldest first, on inbox_handled_at_idx.
 * Safe once no copy of the message can still arrive and be taken for new: see docs/design.md, Retention.
 */
export async function pruneInbox(db: Executor, olderThanMs: number, limit: number): Promise<number> {
  return (await execute(db, deleteOldest(inbox, inbox.handledAt, olderThanMs, limit))).affectedRows;
}

const where = (key: AggregateKey) =>
  and(
    eq(workerProgress.consumer, key.consumer),
    eq(workerProgress.aggregateType, key.aggregateType),
    eq(workerProgress.aggregateId, key.aggregateId),
  );
