import type { SQLWrapper } from 'drizzle-orm';
import { drizzle, type MySql2Database } from 'drizzle-orm/mysql2';
import type { Pool, PoolConnection, ResultSetHeader } from 'mysql2/promise';
import { traceTransaction } from '../telemetry/database.js';
import type { Database } from './client.js';
import { sessionFor } from './dialect.js';
import { BoundStatement, constantStatement, dialect } from './prepared.js';

/**
 * The Drizzle calls a statement needs (no nested transactions, no relational queries): what the
 * database itself and a Transaction both offer.
 */
export type Executor = Pick<MySql2Database, 'select' | 'insert' | 'update' | 'delete' | 'execute'>;

/** Thrown by a Transaction used after its COMMIT or ROLLBACK. */
export class TransactionEndedError extends Error {
  override readonly name = 'TransactionEndedError';
  constructor() {
    super(
      'this transaction has ended: a statement sent now would run outside it, on a connection ' +
        'another transaction may be using (await everything the transaction runs before it returns)',
    );
  }
}

/** Errors of round trips that carried deferred writes (see failedInDeferredWrite). */
const deferredWriteFailures = new WeakSet<object>();

/**
 * One transaction, and everything that is only true while it runs: its connection, the writes
 * deferred to its COMMIT, whether it has ended. Handlers and stores get this object and use it
 * as a Drizzle database; once the transaction has ended it refuses every call (and a statement
 * built before the end and sent after it), with TransactionEndedError, so a `tx` kept past its
 * transaction can never send a statement into another one on the same pooled connection.
 *
 * The methods below the Drizzle ones are the engine's (db/, outbox/, history/, worker/): a
 * write sent with the COMMIT (writeAtCommit, commitWith), statements in one round trip (runAll),
 * rows as the driver gives them (readRows). On a transaction of Drizzle's own (a database not
 * made by connectDatabase) nothing is deferred and statements go through Drizzle one by one.
 */
export class Transaction implements Executor {
  private readonly orm: Executor;
  private readonly deferred: Array<{ statement: SQLWrapper; settle: (result: ResultSetHeader) => void }> = [];
  private ended = false;
  /** Deferred writes failed when sent early: the transaction must not commit without them. */
  private failed: unknown;

  /**
   * `connection`: one of the transaction pool's (autocommit off), to which statements go as text
   * and values; `endStatement` goes with the COMMIT or ROLLBACK. Without it, `drizzleTx`.
   */
  constructor(
    private readonly connection: PoolConnection | undefined,
    readonly endStatement?: string,
    drizzleTx?: Executor,
  ) {
    const guarded = connection && this.guardedClient(connection);
    this.orm = drizzleTx ?? (drizzle(guarded as never, { mode: 'default' }) as Executor);
  }

  get select(): Executor['select'] {
    this.assertOpen();
    return this.orm.select.bind(this.orm) as Executor['select'];
  }
  get insert(): Executor['insert'] {
    this.assertOpen();
    return this.orm.insert.bind(this.orm);
  }
  get update(): Executor['update'] {
    this.assertOpen();
    return this.orm.update.bind(this.orm);
  }
  get delete(): Executor['delete'] {
    this.assertOpen();
    return this.orm.delete.bind(this.orm);
  }
  get execute(): Executor['execute'] {
    this.assertOpen();
    return this.orm.execute.bind(this.orm);
  }

  /** Whether writeAtCommit defers writes here (a transaction of the transaction pool). */
  get defersWrites(): boolean {
    return this.connection !== undefined;
  }

  get hasEnded(): boolean {
    return this.ended;
  }

  /** Marks the end (transaction() does, as it sends COMMIT or ROLLBACK): nothing more is sent. */
  end(): void {
    this.ended = true;
  }

  /**
   * A write whose result the transaction does not need before it commits (an outbox row, say),
   * sent with the COMMIT in the same round trip instead of on its own. Returns a function that
   * gives the statement's result once the transaction has committed. If the write fails, the
   * COMMIT does not run and the transaction fails with its error. Deferred writes are invisible
   * to the transaction's own reads until they are sent (flushDeferredWrites).
   */
  async writeAtCommit(statement: SQLWrapper): Promise<() => ResultSetHeader> {
    this.assertOpen();
    let result: ResultSetHeader | undefined;
    const settle = (r: ResultSetHeader) => {
      result = r;
    };
    if (this.defersWrites) this.deferred.push({ statement, settle });
    else settle(await this.run(statement));
    return () => {
      if (!result) throw new Error('the result of a write deferred to the commit, read before the commit');
      return result;
    };
  }

  /** Sends the writes deferred so far (one round trip), so the transaction's next reads see them. */
  async flushDeferredWrites(): Promise<void> {
    const writes = this.deferred.splice(0);
    if (writes.length === 0) return;
    const results = (await this.sendDeferred(
      writes.map((w) => w.statement),
      writes.length,
    )) as ResultSetHeader[];
    for (const [i, w] of writes.entries()) w.settle(results[i] as ResultSetHeader);
  }

  /** Runs one write and returns its result (not for reads: see readRows). */
  async run(statement: SQLWrapper): Promise<ResultSetHeader> {
    if (this.connection) return (await this.send([statement]))[0] as ResultSetHeader;
    return (await this.execute(statement))[0] as unknown as ResultSetHeader;
  }

  /**
   * Runs statements in one round trip (a multi-statement query) and returns each one's result.
   * If one fails, the ones after it do not run, and the error does not say which failed.
   */
  async runAll(statements: readonly SQLWrapper[]): Promise<ResultSetHeader[]> {
    if (this.connection) return (await this.send(statements)) as ResultSetHeader[];
    const results: ResultSetHeader[] = [];
    for (const statement of statements) results.push(await this.run(statement));
    return results;
  }

  /** One read's rows as the driver gives them (see readRows in client.ts). */
  async readRows<Row>(statement: SQLWrapper): Promise<Row[]> {
    if (this.connection) return (await this.send([statement]))[0] as Row[];
    return (await this.execute(statement))[0] as unknown as Row[];
  }

  /** Several reads in one round trip: each one's rows as the driver gives them, in order. */
  async readAll(statements: readonly SQLWrapper[]): Promise<unknown[][]> {
    if (this.connection) return (await this.send(statements)) as unknown[][];
    const results: unknown[][] = [];
    for (const statement of statements)
      results.push((await this.execute(statement))[0] as unknown as unknown[]);
    return results;
  }

  /**
   * Runs the transaction's last statements and its COMMIT in one round trip, with the deferred
   * writes before them, and returns each statement's result; the transaction has ended then. If
   * a statement fails, the ones after it and the COMMIT do not run, and transaction() rolls back.
   * On Drizzle's own transaction, runs them one by one and leaves the COMMIT to it.
   */
  async commitWith(
    statements: readonly SQLWrapper[],
    options?: { readonly isolationLevel: 'read committed' },
  ): Promise<ResultSetHeader[]> {
    if (!this.connection) return this.runAll(statements);
    if (this.failed !== undefined) throw this.failed;
    const head = options ? [READ_COMMITTED] : [];
    const writes = this.deferred.splice(0);
    const tail = this.endStatement ? [constantStatement(this.endStatement), COMMIT] : [COMMIT];
    const all = [...head, ...writes.map((w) => w.statement), ...statements, ...tail];
    const results = ((await this.sendDeferred(all, writes.length)) as ResultSetHeader[]).slice(head.length);
    this.end();
    for (const [i, w] of writes.entries()) w.settle(results[i] as ResultSetHeader);
    return results.slice(writes.length, writes.length + statements.length);
  }

  private assertOpen(): void {
    if (this.ended) throw new TransactionEndedError();
  }

  /** send(), remembering a failure of a round trip that carried `deferredCount` deferred writes. */
  private async sendDeferred(statements: readonly SQLWrapper[], deferredCount: number): Promise<unknown[]> {
    try {
      return await this.send(statements);
    } catch (error) {
      if (deferredCount > 0) {
        this.failed ??= error;
        if (error !== null && typeof error === 'object') deferredWriteFailures.add(error);
      }
      throw error;
    }
  }

  /**
   * Sends statements as one query (a multi-statement one if more than one) on the connection,
   * and returns each one's result. A BoundStatement goes as it is; anything else is rendered by
   * Drizzle first; the driver puts the values in. Drizzle's execute without a query object per call.
   */
  private async send(statements: readonly SQLWrapper[]): Promise<unknown[]> {
    this.assertOpen();
    const texts: string[] = [];
    const values: unknown[] = [];
    for (const statement of statements) {
      if (statement instanceof BoundStatement) {
        texts.push(statement.text);
        values.push(...statement.values);
      } else {
        const query = dialect.sqlToQuery(statement.getSQL());
        texts.push(query.sql);
        values.push(...query.params);
      }
    }
    const [results] = await (this.connection as PoolConnection).query(texts.join('; '), values);
    // One statement answers with its result, several with a list of them.
    return statements.length === 1 ? [results] : (results as unknown[]);
  }

  /** The connection as Drizzle's client, refusing a statement once the transaction has ended. */
  private guardedClient(connection: PoolConnection): Pick<PoolConnection, 'query' | 'execute'> {
    return {
      query: ((...args: Parameters<PoolConnection['query']>) => {
        this.assertOpen();
        return connection.query(...args);
      }) as PoolConnection['query'],
      execute: ((...args: Parameters<PoolConnection['execute']>) => {
        this.assertOpen();
        return connection.execute(...args);
      }) as PoolConnection['execute'],
    };
  }
}

const COMMIT = constantStatement('COMMIT');
const READ_COMMITTED = constantStatement('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');

/**
 * Whether `error` (or one of its causes) failed a round trip that carried writes deferred with
 * writeAtCommit: whoever deferred them may then do the transaction again without deferring, to
 * learn which write failed and why.
 */
export function failedInDeferredWrite(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e !== null && typeof e === 'object' && depth < 8; depth++) {
    if (deferredWriteFailures.has(e)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** The pool of connections with autocommit off that transaction() runs on, by database. */
const transactionPools = new WeakMap<Database, Pool>();

/** connectDatabase's: transaction() on `db` takes its connections from `pool`. */
export function registerTransactionPool(db: Database, pool: Pool): void {
  transactionPools.set(db, pool);
}

export interface TransactionConfig {
  readonly isolationLevel?: 'read committed';
  /**
   * A bound on how long the server keeps the transaction if this process stops answering
   * (frozen, or cut off) while it holds it open: the session's wait_timeout, in seconds, for the
   * transaction's life; the server then closes the connection and rolls back. For a transaction
   * held open across a call to something else (the relay's claim, across the broker's confirms).
   */
  readonly idleTimeoutSeconds?: number;
  /**
   * How long one statement of the transaction waits for a row lock before it fails (the
   * session's innodb_lock_wait_timeout, in seconds, for the transaction's life). For the relay's
   * and retention's transactions: a writer that wants a row such a statement holds waits at most
   * this long behind it, however long the lock it waits for is held (a frozen relay's claim).
   */
  readonly lockWaitSeconds?: number;
}

/**
 * Runs `body` in one transaction and commits it, or rolls it back when `body` throws. The
 * Transaction `body` gets refuses to be used once this returns.
 *
 * Unlike Drizzle's db.transaction, no BEGIN: the connections come from a pool whose sessions
 * have autocommit off, so the first statement of `body` opens the transaction and COMMIT or
 * ROLLBACK ends it, one round trip fewer per transaction. Every use ends with COMMIT or
 * ROLLBACK; a connection on which that fails is destroyed, never given back holding a
 * transaction.
 *
 * A failure reports the error the body failed with. When the connection dies inside a
 * transaction, the ROLLBACK fails as well ("Can't add new command when connection is in closed
 * state"); that error is kept aside (rollbackFailureOf) rather than replacing the real one, an
 * ECONNRESET say, which is the one that tells an outage from a bug. A failed COMMIT has no body
 * error and is reported as it is.
 *
 * A database not made by connectDatabase (a test's own) falls back to Drizzle's transaction.
 */
export function transaction<T>(
  db: Database,
  body: (tx: Transaction) => Promise<T>,
  config?: TransactionConfig,
): Promise<T> {
  return traceTransaction(() => transactionNow(db, body, config));
}

async function transactionNow<T>(
  db: Database,
  body: (tx: Transaction) => Promise<T>,
  config?: TransactionConfig,
): Promise<T> {
  const timeout = config?.idleTimeoutSeconds;
  if (timeout !== undefined && (!Number.isSafeInteger(timeout) || timeout < 1)) {
    throw new TypeError(`idleTimeoutSeconds: ${timeout}`);
  }
  const lockWait = config?.lockWaitSeconds;
  if (lockWait !== undefined && (!Number.isSafeInteger(lockWait) || lockWait < 1)) {
    throw new TypeError(`lockWaitSeconds: ${lockWait}`);
  }
  const pool = transactionPools.get(db);
  if (!pool) return drizzleTransaction(db, body, config);
  const connection = await pool.getConnection();
  // The session settings the config asks for, in one round trip; a changed timeout goes back to
  // the server's default with the COMMIT or ROLLBACK, so the pooled session keeps no trace of it.
  const { setup, reset: end } = sessionFor({
    readCommitted: config?.isolationLevel === 'read committed',
    idleTimeoutSeconds: timeout,
    lockWaitSeconds: lockWait,
  });
  const tx = new Transaction(connection, end);
  let bodyError: { error: unknown } | undefined;
  try {
    if (setup.length > 0) await connection.query(setup.join('; '));
    let result: T;
    try {
      result = await body(tx);
    } catch (error) {
      bodyError = { error };
      throw error;
    }
    // Deferred writes and the session's end statements go with it.
    if (!tx.hasEnded) await tx.commitWith([]);
    connection.release();
    return result;
  } catch (error) {
    tx.end();
    try {
      await connection.query(end ? `ROLLBACK; ${end}` : 'ROLLBACK');
      connection.release();
    } catch (rollbackError) {
      connection.destroy();
      // Kept, because it is what shows the connection was dead, which a handler's own error
      // (thrown after a lost connection) does not.
      if (bodyError && bodyError.error !== null && typeof bodyError.error === 'object') {
        rollbackFailures.set(bodyError.error, rollbackError);
      }
    }
    throw bodyError ? bodyError.error : error;
  }
}

/** Drizzle's db.transaction, with the body's error kept over a failed ROLLBACK's. */
async function drizzleTransaction<T>(
  db: Database,
  body: (tx: Transaction) => Promise<T>,
  config?: TransactionConfig,
): Promise<T> {
  let bodyError: { error: unknown } | undefined;
  try {
    return await db.transaction(
      async (drizzleTx) => {
        const tx = new Transaction(undefined, undefined, drizzleTx);
        try {
          return await body(tx);
        } catch (error) {
          bodyError = { error };
          throw error;
        } finally {
          tx.end();
        }
      },
      config?.isolationLevel ? { isolationLevel: config.isolationLevel } : undefined,
    );
  } catch (error) {
    if (!bodyError) throw error;
    if (error !== bodyError.error && bodyError.error !== null && typeof bodyError.error === 'object') {
      rollbackFailures.set(bodyError.error, error);
    }
    throw bodyError.error;
  }
}

const rollbackFailures = new WeakMap<object, unknown>();

/** The error the ROLLBACK after `error` failed with, if it did (see transaction()). */
export function rollbackFailureOf(error: unknown): unknown {
  return error !== null && typeof error === 'object' ? rollbackFailures.get(error) : undefined;
}
