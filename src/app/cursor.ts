import { InvalidInputError } from '../errors.js';

// Opaque to clients by contract: the encoding may change without notice.
const PREFIX = 'customer:';

export const encodeCursor = (id: number): string => Buffer.from(`${PREFIX}${id}`).toString('base64url');

export function decodeCursor(cursor: string, field: string): number {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const id = text.startsWith(PREFIX) ? text.slice(PREFIX.length) : '';
  if (!/^[0-9]{1,16}$/.test(id)) throw new InvalidInputError(field, 'Not a valid cursor');
  return Number(id);
}
