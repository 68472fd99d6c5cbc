import { isRowId } from '../db/ids.js';
import { InvalidInputError } from '../errors.js';

// Opaque to clients by contract: the encoding may change without notice.
const PREFIX = 'customer:';

/** The cursor after the customer with this id (decimal, exact: db/ids.ts). */
export const encodeCursor = (id: string): string => Buffer.from(`${PREFIX}${id}`).toString('base64url');

/**
 * Only a cursor this service handed out is accepted, as for history cursors: base64url decoding
 * is lenient (it skips foreign characters and ignores unused bits), so the text must encode back
 * to exactly the cursor; and the id must be one the column holds (1 … 2^64 − 1), kept as text so
 * that an id beyond 2^53 is never rounded to another.
 */
export function decodeCursor(cursor: string, field: string): string {
  if (cursor.length > 64 || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw new InvalidInputError(field, 'Not a valid cursor');
  }
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const id = text.startsWith(PREFIX) ? text.slice(PREFIX.length) : '';
  if (!isRowId(id) || encodeCursor(id) !== cursor) {
    throw new InvalidInputError(field, 'Not a valid cursor');
  }
  return id;
}
