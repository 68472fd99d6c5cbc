import type { MySql2Database } from 'drizzle-orm/mysql2';
import type { Pool } from 'mysql2/promise';
import type { Deadline } from '../support/deadline.js';
import { traceTransaction } from '../telemetry/database.js';
import { checkout } from './bounds.js';
import { sessionFor } from './dialect.js';
import type * as schema from './schema.js';
import { Transaction } from './transaction.js';

/** The service's database: Drizzle over mysql2, with the schema. */
export type Database = MySql2Database<typeof schema>;

/** What a database of connectDatabase's runs on, and the deadline it is bounded by (db/deadline.ts). */
export interface DatabasePools {
  /** Single statements (Drizzle's). */
  readonly statements: Pool;
  /** Connections with autocommit off, that transaction() runs on. */
  readonly transactions: Pool;
  readonly deadline?: Deadline;
}

/** Where a database keeps what it runs on: a property of its own, found faster than in a WeakMap. */
const POOLS = Symbol('database pools');

/** connectDatabase's and withDeadline's: what `db` runs on. */
export function registerPools(db: Database, pools: DatabasePools): void {
  (db as { [POOLS]?: DatabasePools })[POOLS] = pools;
}

/** What `db` runs on; undefined for a database not made by connectDatabase (a test's own). */
export function poolsOf(db: Database): DatabasePools | undefined {
  return (db as { [POOLS]?: DatabasePools })[POOLS];
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
  const pools = poolsOf(db);
  if (!pools) return drizzleTransaction(db, body, config);
  const connection = await checkout(pools.transactions, pools.deadline);
  // The session settings the config asks for, sent in front of the transaction's first round trip
  // (Transaction.send); a changed timeout goes back to the server's default with the COMMIT or
  // ROLLBACK, so the pooled session keeps no trace of it.
  const { setup, reset: end } = sessionFor({
    readCommitted: config?.isolationLevel === 'read committed',
    idleTimeoutSeconds: timeout,
    lockWaitSeconds: lockWait,
  });
  const tx = new Transaction(connection, end, undefined, setup);
  let bodyError: { error: unknown } | undefined;
  try {
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
    tx.settleAfterCommit();
    return result;
  } catch (error) {
    tx.end();
    // Steps of a body that committed (commitWith) and failed after it still run; others are dropped.
    tx.settleAfterCommit();
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
  const made: { tx?: Transaction } = {};
  try {
    const result = await db.transaction(
      async (drizzleTx) => {
        const tx = new Transaction(undefined, undefined, drizzleTx);
        made.tx = tx;
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
    made.tx?.settleAfterCommit(true);
    return result;
  } catch (error) {
    made.tx?.settleAfterCommit(false);
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
