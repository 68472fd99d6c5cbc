import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor } from '../../src/app/cursor.js';
import { InvalidInputError } from '../../src/errors.js';
import { encodeHistoryCursor } from '../../src/history/cursor.js';

const b64 = (text: string) => Buffer.from(text).toString('base64url');

function refusal(cursor: string, field = 'after'): InvalidInputError {
  try {
    decodeCursor(cursor, field);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    return error as InvalidInputError;
  }
  throw new Error(`decodeCursor accepted ${JSON.stringify(cursor)}`);
}

describe('customer list cursors', () => {
  it.each([
    '1',
    '7',
    '123456',
    '9007199254740993', // 2^53 + 1: a number would round it to 2^53, another customer
    '18446744073709551615', // 2^64 − 1, the largest id BIGINT UNSIGNED holds
  ])('round-trip id %s exactly', (id) => {
    expect(decodeCursor(encodeCursor(id), 'after')).toBe(id);
  });

  it('refuses with BAD_USER_INPUT naming the field it was given', () => {
    const error = refusal('not a cursor', 'customers.after');
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
    ['foreign characters the decoder would skip', `${encodeCursor('12')}!!`],
    ['padding', `${b64('customer:1')}==`],
    ['too long', 'A'.repeat(65)],
  ])('refuses %s', (_what, cursor) => {
    expect(refusal(cursor).field).toBe('after');
  });

  it('refuses a non-canonical encoding of a valid id', () => {
    const canonical = encodeCursor('1');
    const last = canonical.at(-1) ?? '';
    const sibling = canonical.slice(0, -1) + String.fromCharCode(last.charCodeAt(0) + 1);
    expect(Buffer.from(sibling, 'base64url').toString()).toBe('customer:1');
    refusal(sibling);
  });
});
