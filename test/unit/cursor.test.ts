import { describe, expect, it } from 'vitest';
import {
  decodeCustomerCursor,
  decodeHistoryCursor,
  encodeCustomerCursor,
  encodeHistoryCursor,
} from '../../src/customers/cursor.js';
import { InvalidInputError } from '../../src/errors.js';

const b64 = (text: string) => Buffer.from(text).toString('base64url');

type Decode = (cursor: string, field: string) => unknown;

function refusal(decode: Decode, cursor: string, field = 'after'): InvalidInputError {
  try {
    decode(cursor, field);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    return error as InvalidInputError;
  }
  throw new Error(`${decode.name} accepted ${JSON.stringify(cursor)}`);
}

describe('history cursors', () => {
  it.each([0, 1, 42, 1_000_000, Number.MAX_SAFE_INTEGER])('round-trips position %i', (position) => {
    const cursor = encodeHistoryCursor(position);
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeHistoryCursor(cursor, 'after')).toBe(position);
  });

  it('is opaque: the position is not readable in the cursor', () => {
    expect(encodeHistoryCursor(12345)).not.toContain('12345');
  });

  it('refuses with BAD_USER_INPUT naming the field it was given', () => {
    const error = refusal(decodeHistoryCursor, 'garbage!', 'input.after');
    expect(error.code).toBe('BAD_USER_INPUT');
    expect(error.field).toBe('input.after');
    expect(error.details).toEqual({ field: 'input.after' });
  });

  it.each([
    ['empty', ''],
    ['characters outside base64url', 'aDE6MQ=='],
    ['standard base64 characters', 'aD+/MQ'],
    ['random text', 'not-a-cursor'],
    ['no prefix', b64('42')],
    ['another prefix', b64('customer:42')],
    ['a customer cursor from the customers connection', b64('customer:1')],
    ['a negative position', b64('h1:-1')],
    ['a fraction', b64('h1:1.5')],
    ['an exponent', b64('h1:1e3')],
    ['hex', b64('h1:0x10')],
    ['a leading zero', b64('h1:01')],
    ['whitespace', b64('h1: 1')],
    ['a trailing newline', b64('h1:1\n')],
    ['nothing after the prefix', b64('h1:')],
    ['17 digits', b64('h1:12345678901234567')],
    ['a position that is not a safe integer (2^53 + 1)', b64('h1:9007199254740993')],
    ['too long', 'A'.repeat(65)],
  ])('refuses %s', (_what, cursor) => {
    expect(refusal(decodeHistoryCursor, cursor).field).toBe('after');
  });

  it('refuses non-canonical encodings of a valid position', () => {
    const canonical = encodeHistoryCursor(1);
    // Base64url decoders ignore the unused low bits of the last character: 'aDE6MQ' and
    // 'aDE6MR' decode alike. Only the form this service hands out is accepted.
    const last = canonical.at(-1) ?? '';
    const sibling = canonical.slice(0, -1) + (last === 'Q' ? 'R' : 'Q');
    expect(Buffer.from(sibling, 'base64url').toString()).toBe('h1:1');
    refusal(decodeHistoryCursor, sibling);
    // Base64url with the padding spelled out.
    refusal(decodeHistoryCursor, `${canonical}==`);
  });
});

describe('customer list cursors', () => {
  it.each([
    '1',
    '7',
    '123456',
    '9007199254740993', // 2^53 + 1: a number would round it to 2^53, another customer
    '18446744073709551615', // 2^64 − 1, the largest id BIGINT UNSIGNED holds
  ])('round-trip id %s exactly', (id) => {
    expect(decodeCustomerCursor(encodeCustomerCursor(id), 'after')).toBe(id);
  });

  it('refuses with BAD_USER_INPUT naming the field it was given', () => {
    const error = refusal(decodeCustomerCursor, 'not a cursor', 'customers.after');
    expect(error.code).toBe('BAD_USER_INPUT');
    expect(error.details).toEqual({ field: 'customers.after' });
  });

  it.each([
    ['empty', ''],
    ['random text', 'not-a-cursor'],
    ['another prefix', b64('order:12')],
    ['a history cursor', encodeHistoryCursor(12)],
    ['SQL after the id', b64('customer:12; DROP TABLE customers')],
    ['a negative id', b64('customer:-1')],
    ['an id the column cannot hold (2^64)', b64('customer:18446744073709551616')],
    ['21 digits', b64('customer:100000000000000000000')],
    ['zero', b64('customer:0')],
    ['a leading zero', b64('customer:012')],
    ['foreign characters the decoder would skip', `${encodeCustomerCursor('12')}!!`],
    ['padding', `${b64('customer:1')}==`],
    ['too long', 'A'.repeat(65)],
  ])('refuses %s', (_what, cursor) => {
    expect(refusal(decodeCustomerCursor, cursor).field).toBe('after');
  });

  it('refuses a non-canonical encoding of a valid id', () => {
    const canonical = encodeCustomerCursor('1');
    const last = canonical.at(-1) ?? '';
    const sibling = canonical.slice(0, -1) + String.fromCharCode(last.charCodeAt(0) + 1);
    expect(Buffer.from(sibling, 'base64url').toString()).toBe('customer:1');
    refusal(decodeCustomerCursor, sibling);
  });
});
