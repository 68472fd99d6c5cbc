/** MySQL/MariaDB error numbers we act on. Classified by number, never by message text. */
export const MysqlErrno = {
  DUPLICATE_KEY: 1062,
  LOCK_WAIT_TIMEOUT: 1205,
  DEADLOCK: 1213,
} as const;

/** Finds the driver's error number anywhere in a cause chain (Drizzle wraps driver errors). */
export function mysqlErrno(error: unknown): number | undefined {
  for (let e: unknown = error, depth = 0; e !== null && typeof e === 'object' && depth < 8; depth++) {
    const errno = (e as { errno?: unknown }).errno;
    if (typeof errno === 'number') return errno;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

export const isDuplicateKey = (error: unknown): boolean => mysqlErrno(error) === MysqlErrno.DUPLICATE_KEY;

/** Errors after which running the same transaction again is the documented remedy. */
export const isRetryableTransactionError = (error: unknown): boolean => {
  const errno = mysqlErrno(error);
  return errno === MysqlErrno.DEADLOCK || errno === MysqlErrno.LOCK_WAIT_TIMEOUT;
};
