import { InvalidInputError } from '../errors.js';

// Opaque to clients by contract: the encoding may change without notice.
const PREFIX = 'customer:';

export const encodeCursor = (id: number): string => Buffer.from(`${PREFIX}${id}`).toString('base64url');

/**
 * Only a cursor this service handed out is accepted, as for history cursors: base64url decoding
 * is lenient (it skips foreign characters and ignores unused bits), and a 16-digit id beyond
 * 2^53 would silently round to another id, so the text must encode back to exactly the cursor.
 */
export function decodeCursor(cursor: string, field: string): number {
  if (cursor.length > 64 || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw new InvalidInputError(field, 'Not a valid cursor');
  }
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const id = text.startsWith(PREFIX) ? text.slice(PREFIX.length) : '';
  if (!/^[0-9]{1,16}$/.test(id) || encodeCursor(Number(id)) !== cursor) {
    throw new InvalidInputError(field, 'Not a valid cursor');
  }
  return Number(id);
}
