import type { SQLWrapper } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/mysql2';
import mysql, { type ResultSetHeader } from 'mysql2/promise';
import { sleep } from '../support/sleep.js';
import { StartupError } from '../support/startup-error.js';
import { bindPool, type DatabaseBounds, DEFAULT_BOUNDS, poolOptions } from './bounds.js';
import { LOGIN_REFUSED } from './dialect.js';
import { type Database, registerPools } from './run-transaction.js';
import * as schema from './schema.js';
import { type Executor, Transaction } from './transaction.js';

export { withDeadline } from './deadline.js';
export type { Database } from './run-transaction.js';
export { rollbackFailureOf, type TransactionConfig, transaction } from './run-transaction.js';
export { type Executor, failedInDeferredWrite, Transaction, TransactionEndedError } from './transaction.js';

/**
 * The parts of a process that use the database. Each has pools of its own, so one that is
 * stuck (its statements blocked, its connections in a dead link until their bounds end them)
 * can use up only its own connections: the relay's lanes, the worker, the live feed, retention
 * and HTTP requests (/metrics among them) never wait in one another's queue.
 */
export type Component = 'requests' | 'relay' | 'worker' | 'feed' | 'retention';

/** Per component, its most connections for transactions (single statements: half as many, 2 at least). */
export type PoolSizes = Readonly<Record<Component, number>>;

/** One component's view of the database: its own pools behind it. */
export interface ComponentDatabase {
  readonly db: Database;
  /** Its pool for single statements (a named lock held on one connection, say). */
  readonly pool: mysql.Pool;
}

export interface DatabaseHandle {
  /** HTTP requests' database (the `requests` component). */
  readonly db: Database;
  readonly pool: mysql.Pool;
  /** A component's own database and pools, opened on first use. */
  component(name: Component): ComponentDatabase;
  /** Round trip to the server; rejects when it does not answer. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Pool sizes from the two settings: `DB_POOL_SIZE` for requests, `DB_COMPONENT_POOL_SIZE` for
 * the relay (plus one per lane: each lane holds a connection through its claim), the worker and
 * the live feed; retention needs two (its named lock and a prune).
 */
export function poolSizes(requests: number, component: number, relayLanes: number): PoolSizes {
  return {
    requests,
    relay: component + relayLanes,
    worker: component,
    feed: component,
    retention: 2,
  };
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
    // caller): work on every statement for a stack the logs do not need. Errors still carry the
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

/**
 * Per component (see Component), `sizes[component]` connections for transactions, where nearly
 * all of the service's database work runs, and half as many (2 at least) for single statements
 * (reads, health checks, the pruner's lock), opened as they are needed. A number gives requests
 * that many and every other component the defaults of poolSizes.
 */
export function connectDatabase(
  url: string,
  sizes: number | PoolSizes,
  bounds: DatabaseBounds = DEFAULT_BOUNDS,
): DatabaseHandle {
  const limits = typeof sizes === 'number' ? poolSizes(sizes, 4, 2) : sizes;
  const pools: mysql.Pool[] = [];
  const components = new Map<Component, ComponentDatabase>();
  const component = (name: Component): ComponentDatabase => {
    let found = components.get(name);
    if (!found) {
      const size = limits[name];
      const pool = createPool(url, Math.max(2, Math.ceil(size / 2)), false, bounds);
      const transactionPool = createPool(url, size, true, bounds);
      pools.push(pool, transactionPool);
      const db = drizzle(pool, { schema, mode: 'default' });
      registerPools(db, { statements: pool, transactions: transactionPool });
      found = { db, pool };
      components.set(name, found);
    }
    return found;
  };
  const requests = component('requests');
  // A connection of its own for ping (/readyz): a probe that hangs in a dead link never takes
  // one that requests need, and a probe that finds the pool busy cannot say "down" wrongly.
  let pingPool: mysql.Pool | undefined;
  return {
    db: requests.db,
    pool: requests.pool,
    component,
    async ping() {
      // Bounded by the readiness deadline: a probe stuck in a dead link is dropped before the
      // next one, which then finds a fresh connection as soon as the link works again.
      if (!pingPool) {
        pingPool = createPool(url, 1, false, {
          ...bounds,
          queryTimeoutMs: Math.min(bounds.queryTimeoutMs, PING_TIMEOUT_MS),
          acquireTimeoutMs: Math.min(bounds.acquireTimeoutMs, PING_TIMEOUT_MS),
          connectTimeoutMs: Math.min(bounds.connectTimeoutMs, PING_TIMEOUT_MS),
        });
        pools.push(pingPool);
      }
      await pingPool.query('SELECT 1');
    },
    async close() {
      // A server behind a dead link never answers the goodbye: do not wait for it.
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

/**
 * Runs one write and returns its result: on a Transaction through its own connection, elsewhere
 * through Drizzle. (Not for reads: in a transaction its rows would come as the driver types
 * them, not as Drizzle does.)
 */
export async function execute(tx: Executor, statement: SQLWrapper): Promise<ResultSetHeader> {
  if (tx instanceof Transaction) return tx.run(statement);
  return (await tx.execute(statement))[0] as unknown as ResultSetHeader;
}

/**
 * Runs one read and returns its rows as the driver gives them, keyed by column name or alias:
 * for a hot read that maps its own rows, since Drizzle builds a query object and maps every row
 * through its columns, per row of every claim and stored-event read. BIGINT comes as a number while it is a safe integer, JSON as text on MariaDB and
 * parsed on MySQL 8, DATETIME as a UTC Date, or as text when the connection was told to
 * (`dateStrings` in DATABASE_URL, or Drizzle's own transaction, which a database not made by
 * connectDatabase runs): read it with utcIso. Writes deferred to the COMMIT are not visible to
 * it (flushDeferredWrites first if that matters).
 */
export async function readRows<Row>(tx: Executor, statement: SQLWrapper): Promise<Row[]> {
  if (tx instanceof Transaction) return tx.readRows<Row>(statement);
  return (await tx.execute(statement))[0] as unknown as Row[];
}

/** Several reads in one round trip on a Transaction (one by one elsewhere): each one's rows, in order. */
export async function readAll(tx: Executor, statements: readonly SQLWrapper[]): Promise<unknown[][]> {
  if (tx instanceof Transaction) return tx.readAll(statements);
  const results: unknown[][] = [];
  for (const statement of statements) results.push((await tx.execute(statement))[0] as unknown as unknown[]);
  return results;
}

/** A DATETIME read by readRows, as ISO 8601 in UTC: a Date, or the server's text of a UTC time. */
export function utcIso(value: Date | string): string {
  return (typeof value === 'string' ? new Date(`${value.replace(' ', 'T')}Z`) : value).toISOString();
}

/** Whether writeAtCommit defers writes in `tx` (a Transaction of transaction()'s pool). */
export function defersWrites(tx: Executor): boolean {
  return tx instanceof Transaction && tx.defersWrites;
}

/**
 * The engine's calls for code that runs on a Transaction or on the database itself (an outbox
 * store, say): each is the Transaction's method, or its plain equivalent outside one.
 */
export async function writeAtCommit(tx: Executor, statement: SQLWrapper): Promise<() => ResultSetHeader> {
  if (tx instanceof Transaction) return tx.writeAtCommit(statement);
  const result = await execute(tx, statement);
  return () => result;
}

export async function flushDeferredWrites(tx: Executor): Promise<void> {
  if (tx instanceof Transaction) await tx.flushDeferredWrites();
}

export async function executeAll(
  tx: Executor,
  statements: readonly SQLWrapper[],
): Promise<ResultSetHeader[]> {
  if (tx instanceof Transaction) return tx.runAll(statements);
  const results: ResultSetHeader[] = [];
  for (const statement of statements) results.push(await execute(tx, statement));
  return results;
}

/** See Transaction.commitWith; outside one (Drizzle's own transaction), the statements one by one. */
export function commitWith(
  tx: Executor,
  statements: readonly SQLWrapper[],
  options?: { readonly isolationLevel: 'read committed' },
): Promise<ResultSetHeader[]> {
  if (tx instanceof Transaction) return tx.commitWith(statements, options);
  return executeAll(tx, statements);
}
