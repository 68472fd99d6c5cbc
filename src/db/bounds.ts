import type { Socket } from 'node:net';
import type mysql from 'mysql2/promise';
import type { Config } from '../config/index.js';
import { boundedBy, type Deadline } from '../support/deadline.js';
import { ErrorNumber, idleTransactionTimeout } from './dialect.js';

/**
 * Bounds on every wait for the database. A link that silently drops packets (a NAT or load
 * balancer that forgot the flow, a failover that moved an address) leaves the socket
 * "established" with nothing coming back, and only TCP's retransmission back-off, minutes
 * long, would end the wait. So:
 * - a statement that has not completed in `queryTimeoutMs` destroys its connection: the
 *   statement fails, a transaction on it ends (the server rolls it back), and the pool opens
 *   a fresh connection for the next caller instead of queueing behind a dead one;
 * - taking a connection from the pool waits at most `acquireTimeoutMs`;
 * - both are also bounded by the deadline of the request they run for (handed over with
 *   `checkout` or `handingOver`, db/deadline.ts), and nothing starts for a request whose
 *   deadline passed or whose client went away.
 * `queryTimeoutMs: 0` leaves statements unbounded (migrations: DDL and their lock wait).
 */
export interface DatabaseBounds {
  readonly queryTimeoutMs: number;
  readonly acquireTimeoutMs: number;
  readonly connectTimeoutMs: number;
  /** Idle before the first keep-alive probe: ends a connection idle in a dead link. */
  readonly keepAliveMs: number;
  /**
   * The server ends a transaction left idle this long (MariaDB's idle_transaction_timeout),
   * so a client cut off while holding row locks holds them no longer than that.
   */
  readonly idleTransactionTimeoutMs: number;
}

export const DEFAULT_BOUNDS: DatabaseBounds = {
  queryTimeoutMs: 5_000,
  acquireTimeoutMs: 3_000,
  connectTimeoutMs: 3_000,
  keepAliveMs: 5_000,
  idleTransactionTimeoutMs: 30_000,
};

/** Codes of the bounds' errors; db/errors.ts counts them as the database being away. */
export const QUERY_TIMEOUT = 'PROTOCOL_SEQUENCE_TIMEOUT';
export const ACQUIRE_TIMEOUT = 'POOL_ACQUIRE_TIMEOUT';

const LEASE = Symbol('lease deadline');

/** What bounds.ts uses of mysql2's callback connection (not in its types). */
interface CoreConnection {
  addCommand(command: CoreCommand): CoreCommand;
  /** The deadline of the work the connection is checked out for, set at each checkout. */
  [LEASE]?: Deadline | undefined;
  query(sql: string, callback: (error: { errno?: number } | null) => void): unknown;
  readonly stream: Socket;
}
interface CoreCommand {
  once(event: 'end', listener: () => void): unknown;
}
type Checkout = (
  callback: (error: Error | null, connection?: CoreConnection & { release(): void }) => void,
) => void;

/**
 * The deadline of the next checkout. mysql2's promise pool calls its core pool's getConnection
 * synchronously (for getConnection, query and execute alike), so the deadline is set here
 * around that call and taken by the checkout at once: no async context is needed to find it.
 */
let handedOver: Deadline | undefined;

/** Runs `checkoutNow` (a call on a pool of bindPool's) with its checkout bounded by `deadline`. */
export function handingOver<T>(deadline: Deadline | undefined, checkoutNow: () => T): T {
  handedOver = deadline;
  try {
    return checkoutNow();
  } finally {
    handedOver = undefined;
  }
}

/** A connection of `pool` for work bounded by `deadline`: its checkout and its statements. */
export function checkout(pool: mysql.Pool, deadline: Deadline | undefined): Promise<mysql.PoolConnection> {
  return handingOver(deadline, () => pool.getConnection());
}

/** Settings for mysql2's createPool that come from the bounds. */
export function poolOptions(bounds: DatabaseBounds): mysql.PoolOptions {
  return {
    connectTimeout: bounds.connectTimeoutMs,
    enableKeepAlive: true,
    keepAliveInitialDelay: bounds.keepAliveMs,
  };
}

function timeoutError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code, fatal: code === QUERY_TIMEOUT });
}

/** Applies the checkout deadline to `pool`, and the statement bound to each new connection. */
export function bindPool(pool: mysql.Pool, bounds: DatabaseBounds, transactions: boolean): void {
  const core = pool.pool as unknown as { getConnection: Checkout };
  const checkout = core.getConnection.bind(core);
  core.getConnection = (callback) => {
    const deadline = handedOver;
    handedOver = undefined;
    const ms = boundedBy(bounds.acquireTimeoutMs, deadline);
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      callback(timeoutError(ACQUIRE_TIMEOUT, `no database connection free within ${Math.round(ms)} ms`));
    }, ms);
    checkout((error, connection) => {
      // Late: the caller has gone; the connection goes back unused.
      if (settled) return connection?.release();
      settled = true;
      clearTimeout(timer);
      if (connection) connection[LEASE] = deadline;
      callback(error, connection);
    });
  };
  pool.pool.on('connection', (connection) => {
    const core = connection as unknown as CoreConnection;
    if (bounds.queryTimeoutMs > 0) boundStatements(core, bounds.queryTimeoutMs);
    if (transactions) {
      const seconds = Math.ceil(bounds.idleTransactionTimeoutMs / 1000);
      core.query(idleTransactionTimeout(seconds), (error) => {
        // MySQL 8 has no such variable (README: its replacement is wait_timeout per session).
        if (error && error.errno !== ErrorNumber.UNKNOWN_SYSTEM_VARIABLE) core.stream.destroy(error as Error);
      });
    }
  });
}

/**
 * Every command sent on `connection` gets a timer from the moment it is queued: if it has not
 * ended when the timer fires, the socket is destroyed with a fatal error, which fails that
 * command and every one queued behind it and takes the connection out of its pool.
 */
function boundStatements(connection: CoreConnection, timeoutMs: number): void {
  const add = connection.addCommand.bind(connection);
  connection.addCommand = (command) => {
    const deadline = connection[LEASE];
    if (deadline?.isAborted) {
      // The request this is for has been answered already: do not start its work now.
      connection.stream.destroy(
        timeoutError(QUERY_TIMEOUT, 'the request was abandoned before its statement'),
      );
      return add(command);
    }
    const ms = boundedBy(timeoutMs, deadline);
    const timer = setTimeout(() => {
      if (!connection.stream.destroyed) {
        connection.stream.destroy(
          timeoutError(
            QUERY_TIMEOUT,
            `statement not completed within ${Math.round(ms)} ms; connection closed`,
          ),
        );
      }
    }, ms);
    // A connection that dies ends no command: the timer must not keep the process alive.
    timer.unref();
    command.once('end', () => clearTimeout(timer));
    return add(command);
  };
}

/** The bounds a process's configuration asks for. */
export function boundsOf(config: Pick<Config, 'db' | 'tcpKeepAliveMs'>): DatabaseBounds {
  return { ...config.db, keepAliveMs: config.tcpKeepAliveMs };
}
