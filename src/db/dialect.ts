/**
 * The MySQL/MariaDB dialect: every piece of SQL text and every error number that is particular
 * to this server family, so that the outbox's, the worker's and retention's statements name
 * none of it. Another database would be another file with these exports (and its own schema in
 * Drizzle's core for it).
 *
 * Time is always the database's: leases and back-off compare against `now`, so processes on
 * machines with skewed clocks still agree on when a lease has expired.
 */
import { type Column, type Placeholder, type SQL, sql } from 'drizzle-orm';
import { MySqlDialect } from 'drizzle-orm/mysql-core';
import { escape as escapeLiteral } from 'mysql2';

/** Server error numbers we act on. Classified by number, never by message text. */
export const ErrorNumber = {
  TOO_MANY_CONNECTIONS: 1040,
  /** NULL into a NOT NULL column. */
  BAD_NULL: 1048,
  SERVER_SHUTDOWN: 1053,
  DUPLICATE_KEY: 1062,
  LOCK_WAIT_TIMEOUT: 1205,
  DEADLOCK: 1213,
  READ_ONLY: 1290,
  CANNOT_CONNECT: 2002,
  CANNOT_CONNECT_TCP: 2003,
  SERVER_GONE: 2006,
  LOST_CONNECTION: 2013,
  /** A session variable this server does not have (MySQL 8: idle_transaction_timeout). */
  UNKNOWN_SYSTEM_VARIABLE: 1193,
} as const;

/** Server error numbers of a refused login: the user, its password or its host. */
export const LOGIN_REFUSED: ReadonlySet<number> = new Set([1044, 1045, 1698]);

/** Drizzle's renderer of this dialect, for statements sent as text (db/prepared.ts). */
export const drizzleDialect = new MySqlDialect();

/** The database's clock, to the millisecond. */
export const now = sql`NOW(3)`;

/** The database's clock plus `microseconds` (a number, or an expression of the row). */
export function fromNow(microseconds: number | SQL | Placeholder): SQL {
  return sql`NOW(3) + INTERVAL ${microseconds} MICROSECOND`;
}

/** The database's clock minus `milliseconds`. */
export function beforeNow(milliseconds: number): SQL {
  return sql`NOW(3) - INTERVAL ${milliseconds * 1000} MICROSECOND`;
}

/** The AUTO_INCREMENT id of the row this connection inserted last, or the value asInsertId gave it. */
export const lastInsertId = sql`LAST_INSERT_ID()`;

/**
 * `value`, made the statement's insert id as well: how an upsert of a counter returns its new
 * value in the same statement (the result's insertId, or lastInsertId in the next one).
 */
export function asInsertId(value: SQL | Placeholder | number): SQL {
  return sql`LAST_INSERT_ID(${value})`;
}

/** INSERT of `values` into `table` (every column in order, or the columns it lists), or `set` on the row whose key it repeats. */
export function insertOrUpdate(table: SQL | object, values: SQL, set: SQL): SQL {
  return sql`INSERT INTO ${table} VALUES (${values}) ON DUPLICATE KEY UPDATE ${set}`;
}

/** INSERT of `values` (every column, in order) into `table`, nothing if a row has its key. */
export function insertIfAbsent(table: SQL | object, values: SQL): SQL {
  return sql`INSERT IGNORE INTO ${table} VALUES (${values})`;
}

/**
 * A retry's delay in microseconds, per row: random(0.5 … 1) × min(max, base × 2^attempts).
 * Half-jitter keeps a floor so retries never bunch at 0.
 */
export function jitteredBackoffUs(baseMs: number, maxMs: number, attempts: Column): SQL {
  return sql`FLOOR(LEAST(${maxMs}, ${baseMs} * POW(2, ${attempts})) * (0.5 + RAND() / 2) * 1000)`;
}

/**
 * A lock by name, held by the session that takes it until it releases it or its connection
 * closes: `take` (name, seconds to wait) answers `got` = 1 when it was taken.
 */
export const namedLock = {
  take: 'SELECT GET_LOCK(?, ?) AS got',
  release: 'SELECT RELEASE_LOCK(?)',
} as const;

/** Bounds how long the server keeps a transaction that sits idle (MariaDB; see UNKNOWN_SYSTEM_VARIABLE). */
export const idleTransactionTimeout = (seconds: number): string =>
  `SET SESSION idle_transaction_timeout = ${seconds}`;

/** Text as a quoted SQL literal, escaped as the driver's own client-side formatting does. */
export const literal = (value: string): string => escapeLiteral(value);

/**
 * `column IN (1,2,3)` with the ids inlined. The relay's statements carry hundreds of ids; as
 * bound parameters each one would cost Drizzle an object and a type check. Inlining is safe
 * only because every id is checked to be an integer.
 */
export function idIn(column: Column, ids: readonly number[]): SQL {
  for (const id of ids) {
    if (!Number.isSafeInteger(id)) throw new TypeError(`not an id: ${String(id)}`);
  }
  return sql`${column} IN (${sql.raw(ids.join(','))})`;
}

/** MariaDB returns JSON columns as text; MySQL returns them parsed. */
export function parseJson(value: unknown): unknown {
  return typeof value === 'string' ? JSON.parse(value) : value;
}

/** A JSON column read as the text the database holds (not parsed by the driver). */
export function jsonText(column: Column): SQL<string> {
  return sql<string>`CAST(${column} AS CHAR)`;
}

/**
 * Deletes up to `limit` rows whose `age` column is older than `olderThanMs`, oldest first, by
 * an index on `age`: one batch of retention.
 */
export function deleteOldest(table: SQL | object, age: Column, olderThanMs: number, limit: number): SQL {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new TypeError(`limit: ${limit}`);
  return sql`DELETE FROM ${table} WHERE ${age} < ${beforeNow(olderThanMs)} ORDER BY ${age} LIMIT ${limit}`;
}

/**
 * The session statements that give one transaction the settings it asks for (`setup`, sent
 * before it), and those that put the pooled session back to the server's defaults (`reset`,
 * sent with its COMMIT or ROLLBACK), so the next user of the connection finds no trace of them.
 */
export function sessionFor(settings: {
  readonly readCommitted: boolean;
  readonly idleTimeoutSeconds: number | undefined;
  readonly lockWaitSeconds: number | undefined;
}): { setup: string[]; reset: string | undefined } {
  const setup: string[] = [];
  const reset: string[] = [];
  if (settings.readCommitted) setup.push('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
  if (settings.idleTimeoutSeconds !== undefined) {
    setup.push(`SET SESSION wait_timeout = ${settings.idleTimeoutSeconds}`);
    reset.push('wait_timeout = DEFAULT');
  }
  if (settings.lockWaitSeconds !== undefined) {
    setup.push(`SET SESSION innodb_lock_wait_timeout = ${settings.lockWaitSeconds}`);
    reset.push('innodb_lock_wait_timeout = DEFAULT');
  }
  return { setup, reset: reset.length > 0 ? `SET SESSION ${reset.join(', ')}` : undefined };
}

/** A DATETIME column as the server's own text of it, to be sent back as an exact key. */
export function asText(column: Column): SQL<string> {
  return sql<string>`CAST(${column} AS CHAR)`;
}
