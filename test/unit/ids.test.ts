import { describe, expect, it } from 'vitest';
import { MAX_EVENT_IDS, parseEventIds } from '../../src/app/event-ids.js';
import { inexactNumberPath } from '../../src/app/input.js';
import { parseCustomerId } from '../../src/customers/service.js';
import { BIGINT_UNSIGNED_MAX, insertedRowId, isRowId } from '../../src/db/ids.js';
import { InvalidInputError } from '../../src/errors.js';

function refusal(parse: () => unknown): InvalidInputError {
  try {
    parse();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    return error as InvalidInputError;
  }
  throw new Error('accepted');
}

describe('row ids', () => {
  it.each([
    '1',
    '9007199254740992', // 2^53
    '9007199254740993', // 2^53 + 1: Number() makes it 2^53
    '9223372036854775808', // 2^63: mysql2 reports an insert id from here on as negative
    '18446744073709551615', // 2^64 − 1
  ])('takes %s, exactly', (id) => {
    expect(isRowId(id)).toBe(true);
    expect(parseCustomerId(id, 'id')).toBe(id);
  });

  it.each([
    ['zero', '0'],
    ['negative', '-1'],
    ['a leading zero', '01'],
    ['2^64, beyond the column', '18446744073709551616'],
    ['21 digits', '100000000000000000000'],
    ['an exponent', '1e3'],
    ['a fraction', '1.0'],
    ['hex', '0x10'],
    ['spaces', ' 1'],
    ['empty', ''],
  ])('refuses %s with BAD_USER_INPUT on the field', (_what, id) => {
    expect(isRowId(id)).toBe(false);
    const error = refusal(() => parseCustomerId(id, 'input.id'));
    expect(error.code).toBe('BAD_USER_INPUT');
    expect(error.field).toBe('input.id');
  });

  it('refuses a number where an id string is expected', () => {
    expect(refusal(() => parseCustomerId(7, 'id')).field).toBe('id');
  });

  it('reads insert ids as mysql2 reports them: a safe number, a decimal string, or negative past 2^63', () => {
    expect(insertedRowId(42)).toBe('42');
    expect(insertedRowId('9007199254740993')).toBe('9007199254740993');
    expect(insertedRowId('-9223372036854775808')).toBe('9223372036854775808');
    expect(insertedRowId('-1')).toBe(BIGINT_UNSIGNED_MAX.toString());
    expect(() => insertedRowId(0)).toThrow();
  });
});

describe('event ids of the dead-event operations', () => {
  const id = '75eab541-f64c-4953-8ab0-b9fed932813c';

  it('takes UUIDs, in any case', () => {
    expect(parseEventIds([id, id.toUpperCase()])).toEqual([id, id.toUpperCase()]);
  });

  it.each([
    ['a customer id', '12'],
    ['a UUID with a character more', `${id}0`],
    ['a UUID without dashes', id.replaceAll('-', '')],
    ['SQL', "' OR 1=1 --"],
  ])('refuses %s, naming its place in the list', (_what, bad) => {
    expect(refusal(() => parseEventIds([id, bad])).field).toBe('eventIds.1');
  });

  it(`refuses more than ${MAX_EVENT_IDS} ids`, () => {
    const error = refusal(() => parseEventIds(Array.from({ length: MAX_EVENT_IDS + 1 }, () => id)));
    expect(error.field).toBe('eventIds');
  });
});

describe('numbers JSON cannot carry exactly', () => {
  it('finds an integer beyond 2^53 anywhere in the variables, by its path', () => {
    expect(inexactNumberPath({ id: 2 ** 53 })).toBe('id');
    expect(inexactNumberPath({ input: { id: -(2 ** 60) } })).toBe('input.id');
    expect(inexactNumberPath({ ids: ['1', 1e20] })).toBe('ids.1');
  });

  it('leaves safe integers, fractions and strings alone', () => {
    expect(inexactNumberPath({ id: Number.MAX_SAFE_INTEGER, first: 20, f: 1.5, s: '9007199254740993' })).toBe(
      undefined,
    );
  });
});
