import { describe, expect, it } from 'vitest';
import {
  normalizeEmail,
  parseCreateCustomerInput,
  parseUpdateCustomerInput,
  type UpdateCustomerInput,
} from '../../src/customers/validation.js';
import { InvalidInputError } from '../../src/errors.js';

function refusal(parse: () => unknown): InvalidInputError {
  try {
    parse();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    return error as InvalidInputError;
  }
  throw new Error('the input was accepted');
}

describe('parseCreateCustomerInput', () => {
  it('trims both fields and keeps the e-mail as written', () => {
    expect(parseCreateCustomerInput({ email: '  Ada@Example.com ', name: '\tAda Lovelace  ' })).toEqual({
      email: 'Ada@Example.com',
      name: 'Ada Lovelace',
    });
  });

  it('takes names in any script, up to 100 characters', () => {
    expect(parseCreateCustomerInput({ email: 'z@example.com', name: 'Zoë Ōtsuka 李' }).name).toBe(
      'Zoë Ōtsuka 李',
    );
    expect(parseCreateCustomerInput({ email: 'z@example.com', name: 'n'.repeat(100) }).name).toHaveLength(
      100,
    );
  });

  it.each([
    ['empty', '', 'E-mail is required'],
    ['blank', '   ', 'E-mail is required'],
    ['without @', 'ada.example.com', 'E-mail is not a valid address'],
    ['without a domain', 'ada@', 'E-mail is not a valid address'],
    ['with a space inside', 'ada lovelace@example.com', 'E-mail is not a valid address'],
    [
      'over 254 characters',
      `${'a'.repeat(64)}@${'b'.repeat(186)}.com`,
      'E-mail must be at most 254 characters',
    ],
  ])('refuses an e-mail that is %s, on input.email', (_what, email, message) => {
    const error = refusal(() => parseCreateCustomerInput({ email, name: 'Ada' }));
    expect(error.field).toBe('input.email');
    expect(error.message).toBe(message);
    expect(error.code).toBe('BAD_USER_INPUT');
  });

  it.each([
    ['empty', '', 'Name is required'],
    ['blank', ' \t ', 'Name is required'],
    ['over 100 characters', 'n'.repeat(101), 'Name must be at most 100 characters'],
    ['with a newline inside', 'Ada\nBcc: all@example.com', /^Name must not contain U\+000A /],
    ['with a NUL', 'Ada\u0000', /^Name must not contain U\+0000 /],
    ['with a DEL', 'Ada\u007f', /^Name must not contain U\+007F /],
    ['with a right-to-left override', 'Eve\u202Egnp.exe', /^Name must not contain U\+202E /],
    ['with a line separator', 'Eve\u2028Bcc: x@evil.example', /^Name must not contain U\+2028 /],
    ['only zero-width spaces', '\u200B\u200B\u200B', /^Name must not contain U\+200B /],
    ['only a Hangul filler', '\u3164', 'Name must contain a visible character'],
  ])('refuses a name that is %s, on input.name', (_what, name, message) => {
    const error = refusal(() => parseCreateCustomerInput({ email: 'ada@example.com', name }));
    expect(error.field).toBe('input.name');
    if (typeof message === 'string') expect(error.message).toBe(message);
    else expect(error.message).toMatch(message);
  });

  it('reports one problem when there are several', () => {
    const error = refusal(() => parseCreateCustomerInput({ email: '', name: '' }));
    expect(error.field).toBe('input.email');
  });
});

describe('parseUpdateCustomerInput', () => {
  it('takes a new e-mail, a new name or both, trimmed, and passes the id through', () => {
    expect(parseUpdateCustomerInput({ id: '7', email: ' new@example.com ' })).toEqual({
      id: '7',
      email: 'new@example.com',
    });
    expect(parseUpdateCustomerInput({ id: '7', name: ' Ada ' })).toEqual({ id: '7', name: 'Ada' });
    expect(
      parseUpdateCustomerInput({ id: '7', email: 'a@example.com', name: 'A', expectedSequence: 3 }),
    ).toEqual({
      id: '7',
      email: 'a@example.com',
      name: 'A',
      expectedSequence: 3,
    });
  });

  it('treats null as "not given" (GraphQL sends null for an omitted nullable field)', () => {
    const parsed = parseUpdateCustomerInput({ id: '7', email: null, name: 'Ada', expectedSequence: null });
    expect(parsed).toEqual({ id: '7', name: 'Ada' });
    expect(parsed.email).toBeUndefined();
    expect(parsed.expectedSequence).toBeUndefined();
  });

  it.each<[string, UpdateCustomerInput]>([
    ['neither', { id: '7' }],
    ['both null', { id: '7', email: null, name: null }],
    ['only an expectedSequence', { id: '7', expectedSequence: 2 }],
  ])('refuses an update with %s of e-mail and name, on input.email', (_what, input) => {
    const error = refusal(() => parseUpdateCustomerInput(input));
    expect(error.field).toBe('input.email');
    expect(error.message).toBe('Give a new email, a new name, or both');
  });

  it('checks a given e-mail and name as create does', () => {
    expect(refusal(() => parseUpdateCustomerInput({ id: '7', email: 'nope' })).field).toBe('input.email');
    expect(refusal(() => parseUpdateCustomerInput({ id: '7', name: '' })).message).toBe('Name is required');
    expect(refusal(() => parseUpdateCustomerInput({ id: '7', name: 'A\u0007' })).field).toBe('input.name');
    expect(refusal(() => parseUpdateCustomerInput({ id: '7', name: 'Eve\u202E' })).field).toBe('input.name');
  });

  it.each([
    [0, 'expectedSequence must be at least 1'],
    [-3, 'expectedSequence must be at least 1'],
    [1.5, 'expectedSequence must be a whole number'],
  ])('refuses expectedSequence %d, on input.expectedSequence', (expectedSequence, message) => {
    const error = refusal(() => parseUpdateCustomerInput({ id: '7', name: 'Ada', expectedSequence }));
    expect(error.field).toBe('input.expectedSequence');
    expect(error.message).toBe(message);
  });
});

describe('normalizeEmail', () => {
  it('compares addresses trimmed and lower-cased', () => {
    expect(normalizeEmail('  Ada@Example.COM ')).toBe('ada@example.com');
  });
});
