import { ErrorNumber } from './dialect.js';

/** The server's error numbers we act on (db/dialect.ts). Classified by number, never by message text. */
export { ErrorNumber } from './dialect.js';

interface DriverError {
  readonly code?: unknown;
  readonly errno?: unknown;
  readonly cause?: unknown;
  /** mysql2 sets it on errors that end the connection, also on "Can't add new command when
   * connection is in closed state", which has no code and is what a ROLLBACK on a dead
   * connection throws in place of the original ECONNRESET. */
  readonly fatal?: unknown;
}

/** An error and its causes, outermost first: Drizzle wraps the driver's error in its own. */
function* causes(error: unknown): Generator<DriverError> {
  for (let e: unknown = error, depth = 0; e !== null && typeof e === 'object' && depth < 8; depth++) {
    yield e as DriverError;
    e = (e as DriverError).cause;
  }
}

/** Finds the driver's error number anywhere in a cause chain. */
export function errorNumber(error: unknown): number | undefined {
  for (const e of causes(error)) if (typeof e.errno === 'number') return e.errno;
  return undefined;
}

export const isDuplicateKey = (error: unknown): boolean => errorNumber(error) === ErrorNumber.DUPLICATE_KEY;

/** A deadlock or a lock wait timeout: the server rolled the transaction back, and running it again is safe. */
export function isLockConflict(error: unknown): boolean {
  const errno = errorNumber(error);
  return errno === ErrorNumber.DEADLOCK || errno === ErrorNumber.LOCK_WAIT_TIMEOUT;
}

/** Driver codes of a connection that failed or was lost: the server is away, not the query wrong. */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  // No pooled connection free in time (db/bounds.ts): every one is busy or stuck in a dead link.
  'POOL_ACQUIRE_TIMEOUT',
  // Name resolution and routes fail the same way while a container or network is coming up.
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);
/** Server errors that mean "try again later": shutting down, too many connections, read-only. */
const TRANSIENT_ERRNOS = new Set<number>([
  ErrorNumber.TOO_MANY_CONNECTIONS,
  ErrorNumber.SERVER_SHUTDOWN,
  ErrorNumber.LOCK_WAIT_TIMEOUT,
  ErrorNumber.DEADLOCK,
  ErrorNumber.READ_ONLY,
  ErrorNumber.CANNOT_CONNECT,
  ErrorNumber.CANNOT_CONNECT_TCP,
  ErrorNumber.SERVER_GONE,
  ErrorNumber.LOST_CONNECTION,
]);

/**
 * The database is unreachable or asked us to retry; says nothing about the data. Decided by the
 * whole cause chain (Drizzle wraps the driver's error) and by the connection state the driver
 * reports (`fatal`), never by message text. Pass every error seen in one attempt (the one a
 * transaction threw and the one its body failed with): a failed ROLLBACK replaces the real cause.
 */
export function isTransientDatabaseError(...errors: unknown[]): boolean {
  for (const error of errors) {
    for (const { code, errno, fatal } of causes(error)) {
      if (fatal === true) return true;
      if (typeof code === 'string' && CONNECTION_CODES.has(code)) return true;
      if (typeof errno === 'number' && TRANSIENT_ERRNOS.has(errno)) return true;
    }
  }
  return false;
}
