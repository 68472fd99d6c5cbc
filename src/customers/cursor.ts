import { isRowId } from '../db/ids.js';
import { InvalidInputError } from '../errors.js';

/**
 * The API's cursors, both opaque to clients by contract (the encoding may change without
 * notice): a customer list's, after a customer id, and the history's, after a position (the
 * history owns positions; clients only ever see them as cursors).
 *
 * Only a cursor this service handed out is accepted, so one that was not made here is
 * BAD_USER_INPUT on the field that gave it rather than a query for something odd. Base64url
 * decoding is lenient (it skips foreign characters and ignores unused bits), so the text must
 * encode back to exactly the cursor.
 */
function opaque(prefix: string, valid: (body: string) => boolean) {
  const encode = (body: string): string => Buffer.from(`${prefix}${body}`).toString('base64url');
  const decode = (cursor: string, field: string): string => {
    if (cursor.length > 64 || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
      throw new InvalidInputError(field, 'Not a valid cursor');
    }
    const text = Buffer.from(cursor, 'base64url').toString('utf8');
    const body = text.startsWith(prefix) ? text.slice(prefix.length) : '';
    if (!valid(body) || encode(body) !== cursor) throw new InvalidInputError(field, 'Not a valid cursor');
    return body;
  };
  return { encode, decode };
}

// Ids are kept as decimal text (db/ids.ts) so that one beyond 2^53 is never rounded to another.
const customer = opaque('customer:', isRowId);
// Positions are numbers: at most 16 digits, and only those JavaScript holds exactly.
const history = opaque(
  'h1:',
  (digits) => /^(0|[1-9][0-9]{0,15})$/.test(digits) && Number.isSafeInteger(Number(digits)),
);

/** The cursor after the customer with this id (decimal, exact: db/ids.ts). */
export const encodeCustomerCursor = (id: string): string => customer.encode(id);

/** The customer id a list cursor stands after; BAD_USER_INPUT on `field` if this service did not make it. */
export const decodeCustomerCursor = (cursor: string, field: string): string => customer.decode(cursor, field);

/** The cursor after this history position. */
export const encodeHistoryCursor = (position: number): string => history.encode(String(position));

/** The history position a cursor stands after; BAD_USER_INPUT on `field` if this service did not make it. */
export const decodeHistoryCursor = (cursor: string, field: string): number =>
  Number(history.decode(cursor, field));
