import { describe, expect, it } from 'vitest';
import { ErrorNumber, errorNumber, isDuplicateKey, isTransientDatabaseError } from '../../src/db/errors.js';

/** An error shaped like mysql2's: errno, code, sqlState, fatal. */
function driverError(
  fields: { errno?: number; code?: string; fatal?: boolean },
  message = 'driver error',
): Error {
  return Object.assign(new Error(message), fields);
}

/** Wrapped the way Drizzle wraps a driver error: its own error, the driver's as `cause`. */
const wrapped = (cause: unknown, levels = 1): Error => {
  let error = cause;
  for (let i = 0; i < levels; i++) error = new Error(`Failed query (level ${i})`, { cause: error });
  return error as Error;
};

describe('isDuplicateKey', () => {
  const duplicate = driverError({ errno: ErrorNumber.DUPLICATE_KEY, code: 'ER_DUP_ENTRY' });

  it('recognizes error 1062, also wrapped by the ORM', () => {
    expect(isDuplicateKey(duplicate)).toBe(true);
    expect(isDuplicateKey(wrapped(duplicate, 2))).toBe(true);
    expect(errorNumber(wrapped(duplicate))).toBe(1062);
  });

  it('goes by number, not by message text', () => {
    expect(isDuplicateKey(new Error("Duplicate entry 'a@b.c' for key 'customers_email'"))).toBe(false);
    expect(isDuplicateKey(driverError({ errno: 1064, code: 'ER_PARSE_ERROR' }, 'Duplicate entry'))).toBe(
      false,
    );
  });

  it('is not a transient error: retrying the same insert fails the same way', () => {
    expect(isTransientDatabaseError(duplicate)).toBe(false);
  });
});

describe('isTransientDatabaseError', () => {
  it.each([
    ['too many connections', ErrorNumber.TOO_MANY_CONNECTIONS],
    ['server shutdown', ErrorNumber.SERVER_SHUTDOWN],
    ['lock wait timeout', ErrorNumber.LOCK_WAIT_TIMEOUT],
    ['deadlock', ErrorNumber.DEADLOCK],
    ['read-only server', ErrorNumber.READ_ONLY],
    ['cannot connect (socket)', ErrorNumber.CANNOT_CONNECT],
    ['cannot connect (TCP)', ErrorNumber.CANNOT_CONNECT_TCP],
    ['server gone away', ErrorNumber.SERVER_GONE],
    ['lost connection', ErrorNumber.LOST_CONNECTION],
  ])('holds for %s (%i), bare and wrapped', (_what, errno) => {
    expect(isTransientDatabaseError(driverError({ errno }))).toBe(true);
    expect(isTransientDatabaseError(wrapped(driverError({ errno }), 3))).toBe(true);
  });

  it.each([
    'ECONNREFUSED',
    'ECONNRESET',
    'ETIMEDOUT',
    'EPIPE',
    'PROTOCOL_CONNECTION_LOST',
    'PROTOCOL_SEQUENCE_TIMEOUT',
  ])('holds for the connection code %s, bare and wrapped', (code) => {
    expect(isTransientDatabaseError(driverError({ code }))).toBe(true);
    expect(isTransientDatabaseError(wrapped(driverError({ code })))).toBe(true);
  });

  it('holds for an error mysql2 marks fatal even without a code ("Can\'t add new command when connection is in closed state")', () => {
    expect(isTransientDatabaseError(driverError({ fatal: true }))).toBe(true);
    expect(isTransientDatabaseError(wrapped(driverError({ fatal: true })))).toBe(true);
  });

  it.each([
    ['a syntax error', driverError({ errno: 1064, code: 'ER_PARSE_ERROR', fatal: false })],
    ['a duplicate key', driverError({ errno: 1062, code: 'ER_DUP_ENTRY' })],
    ['a data error', driverError({ errno: 1406, code: 'ER_DATA_TOO_LONG' })],
    ['a plain Error that mentions a deadlock', new Error('Deadlock found when trying to get lock')],
    ['an error with a numeric-looking string errno', Object.assign(new Error('x'), { errno: '1213' })],
    ['a fatal flag that is not true', Object.assign(new Error('x'), { fatal: 'yes' })],
    ['a string', 'ECONNRESET'],
    ['null', null],
    ['undefined', undefined],
  ])('does not hold for %s', (_what, error) => {
    expect(isTransientDatabaseError(error)).toBe(false);
  });

  it('looks at every error given: a ROLLBACK that failed on a dead connection hides the real cause', () => {
    const bodyError = wrapped(driverError({ code: 'ECONNRESET' }));
    const rollbackError = new Error('rollback failed');
    expect(isTransientDatabaseError(rollbackError, bodyError)).toBe(true);
    expect(isTransientDatabaseError(rollbackError, new Error('constraint'))).toBe(false);
    expect(isTransientDatabaseError()).toBe(false);
  });

  it('finds a transient error anywhere in the first eight links of a cause chain', () => {
    expect(isTransientDatabaseError(wrapped(driverError({ errno: ErrorNumber.DEADLOCK }), 7))).toBe(true);
  });

  it('ends on a cause chain that loops back on itself', () => {
    const a = new Error('a') as Error & { cause?: unknown };
    const b = new Error('b', { cause: a });
    a.cause = b;
    expect(isTransientDatabaseError(a)).toBe(false);
    expect(errorNumber(a)).toBeUndefined();
  });
});
