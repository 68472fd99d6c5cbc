import { InvalidInputError } from '../errors.js';

/**
 * A position in the history, as clients see it: opaque by contract (the encoding may change),
 * checked on the way in, so a cursor that was not made here is BAD_USER_INPUT rather than a
 * query for something odd.
 */
const PREFIX = 'h1:';

export const encodeHistoryCursor = (position: number): string =>
  Buffer.from(`${PREFIX}${position}`).toString('base64url');

export function decodeHistoryCursor(cursor: string, field: string): number {
  if (cursor.length > 64 || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw new InvalidInputError(field, 'Not a valid cursor');
  }
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const digits = text.startsWith(PREFIX) ? text.slice(PREFIX.length) : '';
  if (!/^(0|[1-9][0-9]{0,15})$/.test(digits) || encodeHistoryCursor(Number(digits)) !== cursor) {
    throw new InvalidInputError(field, 'Not a valid cursor');
  }
  return Number(digits);
}
