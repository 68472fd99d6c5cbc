import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../src/errors.js';
import { decodeHistoryCursor, encodeHistoryCursor } from '../../src/history/cursor.js';

const b64 = (text: string) => Buffer.from(text).toString('base64url');

function refusal(cursor: string, field = 'after'): InvalidInputError {
  try {
    decodeHistoryCursor(cursor, field);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    return error as InvalidInputError;
  }
  throw new Error(`decodeHistoryCursor accepted ${JSON.stringify(cursor)}`);
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
    const error = refusal('garbage!', 'input.after');
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
    expect(refusal(cursor).field).toBe('after');
  });

  it('refuses non-canonical encodings of a valid position', () => {
    const canonical = encodeHistoryCursor(1);
    // Base64url decoders ignore the unused low bits of the last character: 'aDE6MQ' and
    // 'aDE6MR' decode alike. Only the form this service hands out is accepted.
    const last = canonical.at(-1) ?? '';
    const sibling = canonical.slice(0, -1) + (last === 'Q' ? 'R' : 'Q');
    expect(Buffer.from(sibling, 'base64url').toString()).toBe('h1:1');
    refusal(sibling);
    // Base64url with the padding spelled out.
    refusal(`${canonical}==`);
  });
});
