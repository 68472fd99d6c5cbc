import type { SQLWrapper } from 'drizzle-orm';
import { drizzle, type MySql2Database } from 'drizzle-orm/mysql2';
import mysql, { type PoolConnection, type ResultSetHeader } from 'mysql2/promise';
import { sleep } from '../support/sleep.js';
import { StartupError } from '../support/startup-error.js';
import { traceTransaction } from '../telemetry/database.js';
import { bindPool, type DatabaseBounds, DEFAULT_BOUNDS, poolOptions } from './bounds.js';
import { sessionFor } from './dialect.js';
import { BoundStatement, constantStatement, dialect } from './prepared.js';
import * as schema from './schema.js';

export type Database = MySql2Database<typeof schema>;
/** What an outbox statement runs in: the database itself, or a transaction of it. */
export type Executor = Pick<Database, 'select' | 'insert' | 'update' | 'delete' | 'execute'>;
/**
 * What a transaction's statements run on: only what a statement needs (no nested transactions,
 * no relational queries), so that a body runs the same on Drizzle's transaction object and on
 * the connection transaction() gives it.
 */
export type Transaction = Executor;

export interface DatabaseHandle {
  readonly db: Database;
  readonly pool: mysql.Pool;
  /** Round trip to the server; rejects when it does not answer. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** `mysql://user:pass@host:port/name` → the database name, checked to be a plain identifier. */
export function databaseName(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  if (!/^[A-Za-z0-9_$]{1,64}$/.test(name)) {
    throw new Error(`DATABASE_URL must name a database of letters, digits, _ or $ (got "${name}")`);
  }
  return name;
}

/**
 * Creates the database named in the URL when it does not exist, so `npm start` works on a fresh
 * server. Runs on a single connection to the server without a default database.
 */
export async function ensureDatabase(url: string): Promise<void> {
  const name = databaseName(url);
  const serverUrl = new URL(url);
  serverUrl.pathname = '/';
  const connection = await mysql
    .createConnection({ uri: serverUrl.toString() })
    .catch((error: unknown) => Promise.reject(connectionFailure(url, error)));
  try {
    await connection.query(`CREATE DATABASE IF NOT EXISTS \`${name}\` CHARACTER SET utf8mb4`);
  } finally {
    await connection.end();
  }
}

/** Driver codes of a server that is not there (not running, wrong host or port, firewalled). */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);
/**
 * Server error numbers of a login it refused: ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR and
 * MariaDB's ER_ACCESS_DENIED_NO_PASSWORD_ERROR (a user that may only log in through the socket).
 */
const LOGIN_REFUSED = new Set([1044, 1045, 1698]);

/**
 * The first connection of a start is where a newcomer meets a server that is not running or a
 * wrong DATABASE_URL: say which server, and how to start one, instead of a driver stack trace.
 */
function connectionFailure(url: string, error: unknown): unknown {
  const { code, errno } = (error ?? {}) as { code?: unknown; errno?: unknown };
  const { hostname, port, username } = new URL(url);
  const server = `${hostname}:${port || 3306}`;
  if (typeof code === 'string' && UNREACHABLE.has(code)) {
    return new StartupError(
      `MySQL/MariaDB is not reachable at ${server} (DATABASE_URL; ${code}). Start it, e.g. ` +
        '`start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`, or ' +
        '`docker compose up -d mysql` and DATABASE_URL=mysql://root:outbox@127.0.0.1:3306/outbox',
      { cause: error },
    );
  }
  if (typeof errno === 'number' && LOGIN_REFUSED.has(errno)) {
    return new StartupError(
      `MySQL/MariaDB at ${server} refused user "${decodeURIComponent(username) || '(none)'}" ` +
        `(DATABASE_URL; ${String(code)}): check the user and password in DATABASE_URL`,
      { cause: error },
    );
  }
  return error;
}

function createPool(
  url: string,
  poolSize: number,
  inTransaction: boolean,
  bounds: DatabaseBounds,
): mysql.Pool {
  const pool = mysql.createPool({
    ...poolOptions(bounds),
    uri: url,
    connectionLimit: poolSize,
    // Only for commitWith() (one round trip for a transaction's last statements and its COMMIT),
    // and only on the transaction pool. Every statement is built by Drizzle with bound values.
    multipleStatements: inTransaction,
    // Dates travel as UTC both ways; the session time zone below makes NOW(3) UTC as well.
    timezone: 'Z',
    supportBigNumbers: true,
    // mysql2's promise API captures a stack trace per query (for errors that point at the
    // caller), which showed up as ~5 % of the busy time in CPU profiles. Errors still carry the
    // driver's stack and Drizzle's query, which is what the logs need.
    trace: false,
  });
  pool.on('connection', (connection) => {
    // Every lease and back-off compares against the database clock (NOW(3)), so all processes
    // agree on time whatever their own clocks say. That only holds if the sessions agree on UTC.
    connection.query("SET time_zone = '+00:00'");
    // See transaction(): with autocommit off, the first statement opens the transaction.
    if (inTransaction) connection.query('SET autocommit = 0');
  });
  bindPool(pool, bounds, inTransaction);
  return pool;
}

/** The longest a ping (/readyz) waits for MySQL, whatever the bounds of the other pools. */
const PING_TIMEOUT_MS = 1_500;

/** The pool of connections with autocommit off that transaction() runs on, by database. */
const transactionPools = new WeakMap<Database, mysql.Pool>();

/**
 * `poolSize` connections for transactions, where nearly all of the service's database work
 * runs, and half as many for single statements (reads, health checks, the pruner): at most
 * 1.5 × `poolSize` connections per process, opened as they are needed.
 */
export function connectDatabase(
  url: string,
  poolSize: number,
  bounds: DatabaseBounds = DEFAULT_BOUNDS,
): DatabaseHandle {
  const pool = createPool(url, Math.max(2, Math.ceil(poolSize / 2)), false, bounds);
  const transactionPool = createPool(url, poolSize, true, bounds);
  // A connection of its own for ping (/readyz): a probe that hangs in a dead link never takes
  // one that requests need, and a probe that finds the pool busy cannot say "down" wrongly.
  let pingPool: mysql.Pool | undefined;
  const db = drizzle(pool, { schema, mode: 'default' });
  transactionPools.set(db, transactionPool);
  return {
    db,
    pool,
    async ping() {
      // Bounded by the readiness deadline: a probe stuck in a dead link is dropped before the
      // next one, which then finds a fresh connection as soon as the link works again.
      pingPool ??= createPool(url, 1, false, {
        ...bounds,
        queryTimeoutMs: Math.min(bounds.queryTimeoutMs, PING_TIMEOUT_MS),
        acquireTimeoutMs: Math.min(bounds.acquireTimeoutMs, PING_TIMEOUT_MS),
        connectTimeoutMs: Math.min(bounds.connectTimeoutMs, PING_TIMEOUT_MS),
      });
      await pingPool.query('SELECT 1');
    },
    async close() {
      // A server behind a dead link never answers the goodbye: do not wait for it.
      const pools = [pool, transactionPool, pingPool].filter((p) => p !== undefined);
      await Promise.race([Promise.all(pools.map((p) => p.end())), sleep(CLOSE_WAIT_MS)]);
      for (const p of pools) destroyConnections(p);
    },
  };
}

/** How long close() waits for the server to see the connections off. */
const CLOSE_WAIT_MS = 1_000;

/** Destroys whatever connections a pool still has (their sockets, at once). */
function destroyConnections(pool: mysql.Pool): void {
  const core = pool.pool as unknown as { _allConnections?: { toArray?: () => unknown[] } };
  for (const connection of core._allConnections?.toArray?.() ?? []) {
    (connection as { stream?: { destroy(): void } }).stream?.destroy();
  }
}

/** A Drizzle database over one pooled connection, made once per connection. */
const overConnection = new WeakMap<object, Transaction>();

/** What transaction() keeps of the transaction running on one of its connections. */
interface TransactionState {
  /** The connection, to which its statements go as text and values (send). */
  readonly connection: PoolConnection;
  /** Writes deferred to the COMMIT (writeAtCommit), in order, with where their results go. */
  readonly deferred: Array<{ statement: SQLWrapper; settle: (result: ResultSetHeader) => void }>;
  /** A statement to send with the end (COMMIT or ROLLBACK), in the same round trip. */
  readonly end: string | undefined;
  /** The body has committed it with commitWith. */
  committed: boolean;
  /**
   * Deferred writes failed when sent early (flushDeferredWrites): the transaction must not
   * commit without them, even if the body caught the error and went on.
   */
  failed?: unknown;
}

/**
 * By connection, the state of its current transaction: only connections of the transaction pool
 * have one, and only there may commitWith end a transaction or writeAtCommit defer a write.
 */
const states = new WeakMap<Transaction, TransactionState>();

/**
 * A write whose result the transaction does not need before it commits (an outbox row, say),
 * sent with the COMMIT in the same round trip instead of on its own. Returns a function that
 * gives the statement's result once the transaction has committed. If the write fails, the
 * COMMIT does not run and the transaction fails with its error.
 *
 * Deferred writes are invisible to the transaction's own reads until they are sent: code that
 * may read such a row back calls flushDeferredWrites first. Outside transaction(), the write
 * runs at once.
 */
export async function writeAtCommit(tx: Transaction, statement: SQLWrapper): Promise<() => ResultSetHeader> {
  let result: ResultSetHeader | undefined;
  const settle = (r: ResultSetHeader) => {
    result = r;
  };
  const state = states.get(tx);
  if (state) state.deferred.push({ statement, settle });
  else settle(await execute(tx, statement));
  return () => {
    if (!result) throw new Error('the result of a write deferred to the commit, read before the commit');
    return result;
  };
}

/** Sends the writes deferred so far (one round trip), so the transaction's next reads see them. */
export async function flushDeferredWrites(tx: Transaction): Promise<void> {
  const state = states.get(tx);
  const writes = state?.deferred.splice(0) ?? [];
  if (!state || writes.length === 0) return;
  settleDeferredWrites(
    writes,
    (await sendDeferred(
      state,
      writes.map((w) => w.statement),
      writes.length,
    )) as ResultSetHeader[],
  );
}

/** Errors of round trips that carried deferred writes (see failedInDeferredWrite). */
const deferredWriteFailures = new WeakSet<object>();

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

/** Whether writeAtCommit defers writes in this transaction (one of transaction()'s own). */
export function defersWrites(tx: Executor): boolean {
  return states.has(tx as Transaction);
}

/** send(), remembering a failure of a round trip that carried `deferredCount` deferred writes. */
async function sendDeferred(
  state: TransactionState,
  statements: readonly SQLWrapper[],
  deferredCount: number,
): Promise<unknown[]> {
  try {
    return await send(state, statements);
  } catch (error) {
    if (deferredCount > 0) {
      state.failed ??= error;
      if (error !== null && typeof error === 'object') deferredWriteFailures.add(error);
    }
    throw error;
  }
}

/**
 * Sends statements of a transaction() as one query (a multi-statement one if more than one) on
 * its connection, and returns each one's result. A BoundStatement goes as it is; anything else is
 * rendered by Drizzle first. The driver puts the values in (the pool's own escaping), so this
 * is Drizzle's execute without building a query object per call, which showed in profiles.
 */
async function send(state: TransactionState, statements: readonly SQLWrapper[]): Promise<unknown[]> {
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
  const [results] = await state.connection.query(texts.join('; '), values);
  // One statement answers with its result, several with a list of them.
  return statements.length === 1 ? [results] : (results as unknown[]);
}

/**
 * Runs one write and returns its result. Outside transaction(), through Drizzle. (Not for reads:
 * in a transaction its rows would come as the driver types them, not as Drizzle does.)
 */
export async function execute(tx: Executor, statement: SQLWrapper): Promise<ResultSetHeader> {
  const state = states.get(tx as Transaction);
  if (state) return (await send(state, [statement]))[0] as ResultSetHeader;
  return (await tx.execute(statement))[0] as unknown as ResultSetHeader;
}

/**
 * Runs one read of a transaction and returns its rows as the driver gives them, keyed by column
 * name or alias: for a hot read that maps its own rows, since Drizzle builds a query object and
 * maps every row through its columns (the larger part of the relay's and the worker's Drizzle
 * time in profiles). BIGINT comes as a number while it is a safe integer, JSON as text on
 * MariaDB and parsed on MySQL 8, DATETIME as a UTC Date, or as text when the connection was
 * told to (`dateStrings` in DATABASE_URL, or Drizzle's own transaction, which a database not
 * made by connectDatabase runs): read it with utcIso. Writes deferred to the COMMIT are not
 * visible to it (flushDeferredWrites first if that matters).
 */
export async function readRows<Row>(tx: Executor, statement: SQLWrapper): Promise<Row[]> {
  const state = states.get(tx as Transaction);
  if (state) return (await send(state, [statement]))[0] as Row[];
  return (await tx.execute(statement))[0] as unknown as Row[];
}

/** A DATETIME read by readRows, as ISO 8601 in UTC: a Date, or the server's text of a UTC time. */
export function utcIso(value: Date | string): string {
  return (typeof value === 'string' ? new Date(`${value.replace(' ', 'T')}Z`) : value).toISOString();
}

/** Hands each deferred write its result, from a query that began with them. */
function settleDeferredWrites(
  writes: ReadonlyArray<{ settle: (result: ResultSetHeader) => void }>,
  results: readonly ResultSetHeader[],
): void {
  writes.forEach((w, i) => {
    w.settle(results[i] as ResultSetHeader);
  });
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
 * Runs statements of a transaction in one round trip (a multi-statement query) and returns each
 * one's result. If one fails, the ones after it do not run, and the error does not say which
 * failed: callers use it where any failure sends them down the slow path (one statement at a
 * time) or fails the transaction. Outside transaction(), runs them one by one.
 */
export async function executeAll(
  tx: Transaction,
  statements: readonly SQLWrapper[],
): Promise<ResultSetHeader[]> {
  const state = states.get(tx);
  if (!state) return executeEach(tx, statements);
  return (await send(state, statements)) as ResultSetHeader[];
}

async function executeEach(tx: Transaction, statements: readonly SQLWrapper[]): Promise<ResultSetHeader[]> {
  const results: ResultSetHeader[] = [];
  for (const statement of statements) results.push(await execute(tx, statement));
  return results;
}

const COMMIT = constantStatement('COMMIT');
const READ_COMMITTED = constantStatement('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');

/**
 * Runs a transaction's last statements and its COMMIT in one round trip (a multi-statement
 * query), and returns each statement's result. The body must return right after: the
 * transaction is over. If a statement fails, the ones after it and the COMMIT do not run, and
 * transaction() rolls back as for any failure.
 *
 * Outside transaction() (Drizzle's own transaction object), it runs the statements one by one
 * and leaves the COMMIT to that transaction.
 */
export async function commitWith(
  tx: Transaction,
  statements: readonly SQLWrapper[],
  options?: {
    /** Set for this transaction in the same round trip: only when `statements` are all of it. */
    readonly isolationLevel: 'read committed';
  },
): Promise<ResultSetHeader[]> {
  const state = states.get(tx);
  if (!state) return executeEach(tx, statements);
  if (state.failed !== undefined) throw state.failed;
  const head = options ? [READ_COMMITTED] : [];
  const writes = state.deferred.splice(0);
  const tail = state.end ? [constantStatement(state.end), COMMIT] : [COMMIT];
  const all = [...head, ...writes.map((w) => w.statement), ...statements, ...tail];
  const results = ((await sendDeferred(state, all, writes.length)) as ResultSetHeader[]).slice(head.length);
  state.committed = true;
  settleDeferredWrites(writes, results);
  return results.slice(writes.length, writes.length + statements.length);
}

/**
 * Runs `body` in one transaction and commits it, or rolls it back when `body` throws.
 *
 * Unlike Drizzle's db.transaction, no BEGIN: the connections come from a pool whose sessions
 * have autocommit off, so the first statement of `body` opens the transaction and COMMIT or
 * ROLLBACK ends it. That is one round trip fewer per transaction, and a service transaction
 * is only three to eight statements long: the create path and the worker each save one of
 * their four and eight (the connection's socket write and wake-up were the largest cost in
 * CPU profiles). Every use ends with COMMIT or ROLLBACK; a connection on which that fails is
 * destroyed, never given back holding a transaction.
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
  let tx = overConnection.get(connection.connection);
  if (!tx) {
    tx = drizzle(connection, { schema, mode: 'default' });
    overConnection.set(connection.connection, tx);
  }
  // The session settings the config asks for, in one round trip; a changed timeout goes back to
  // the server's default with the COMMIT or ROLLBACK, so the pooled session keeps no trace of it.
  const { setup, reset: end } = sessionFor({
    readCommitted: config?.isolationLevel === 'read committed',
    idleTimeoutSeconds: timeout,
    lockWaitSeconds: lockWait,
  });
  const state: TransactionState = { connection, deferred: [], end, committed: false };
  states.set(tx, state);
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
    // Deferred writes and the session's end statements go with it (commitWith).
    if (!state.committed) await commitWith(tx, []);
    connection.release();
    return result;
  } catch (error) {
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
      async (tx) => {
        try {
          return await body(tx);
        } catch (error) {
          bodyError = { error };
          throw error;
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
