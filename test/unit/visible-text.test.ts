import { describe, expect, it } from 'vitest';
import { invisibleTextProblem } from '../../src/customers/visible-text.js';

describe('invisibleTextProblem', () => {
  it.each([
    ['Latin with accents', 'Zoë Ōtsuka'],
    ['CJK', '李小龍'],
    ['Arabic (right to left by itself, no control needed)', 'محمد'],
    ['Persian with a zero-width non-joiner between letters', 'می\u200Cخواهم'],
    ['Malayalam with a zero-width joiner after a virama', 'ന്\u200Dന'],
    ['an emoji ZWJ sequence', 'Ada 👩\u200D💻'],
    ['an emoji with a variation selector', 'Ada ❤\uFE0F'],
    ['a subdivision flag (tag characters)', 'Ada 🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}'],
    ['a letter with a combining accent', 'Zoe\u0308'],
    ['Hangul', '김민준'],
  ])('accepts %s', (_what, name) => {
    expect(invisibleTextProblem(name)).toBeUndefined();
  });

  it.each([
    ['a right-to-left override', 'Eve\u202Egnp.exe', 'U+202E'],
    ['a left-to-right isolate', 'Eve\u2066x', 'U+2066'],
    ['a right-to-left mark', 'Eve\u200F', 'U+200F'],
    ['the Arabic letter mark', 'Eve\u061C', 'U+061C'],
    ['a zero-width space', 'E\u200Bve', 'U+200B'],
    ['a word joiner', 'E\u2060ve', 'U+2060'],
    ['a byte order mark', '\uFEFFEve', 'U+FEFF'],
    ['a soft hyphen', 'E\u00ADve', 'U+00AD'],
    ['a line separator', 'Eve\u2028Bcc: x@evil.example', 'U+2028'],
    ['a paragraph separator', 'Eve\u2029', 'U+2029'],
    ['a newline', 'Eve\nBcc: x@evil.example', 'U+000A'],
    ['a carriage return', 'Eve\r', 'U+000D'],
    ['a C1 control (NEL)', 'Eve\u0085', 'U+0085'],
    ['a noncharacter', 'Eve\uFFFF', 'U+FFFF'],
    ['a lone surrogate', 'Eve\uD800', 'U+D800'],
    ['a tag character outside a flag', 'Eve\u{E0041}', 'U+E0041'],
    ['a joiner at the start', '\u200DEve', 'U+200D'],
    ['a joiner beside a space', 'Eve \u200C', 'U+200C'],
    ['two joiners in a row', 'E\u200D\u200Dve', 'U+200D'],
  ])('refuses %s, naming the code point', (_what, name, codePoint) => {
    expect(invisibleTextProblem(name)).toMatch(
      new RegExp(`^Name must not contain ${codePoint.replace('+', '\\+')} `),
    );
  });

  it.each([
    ['a Hangul filler', '\u3164'],
    ['Hangul fillers and half-width fillers', '\u115F\u1160\uFFA0'],
    ['the blank Braille pattern', '\u2800\u2800'],
    ['ideographic spaces', '\u3000\u3000'],
    ['combining marks with no base', '\u0301\u0308'],
    ['variation selectors', '\uFE0F\uFE0E'],
  ])('refuses a name of only %s', (_what, name) => {
    expect(invisibleTextProblem(name)).toBe('Name must contain a visible character');
  });

  it('names the field it is given', () => {
    expect(invisibleTextProblem('\u3164', 'The name')).toBe('The name must contain a visible character');
  });
});
