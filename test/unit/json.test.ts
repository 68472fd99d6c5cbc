import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/support/json.js';

describe('canonicalJson', () => {
  it('gives the same text whatever order the keys were written in, at every depth', () => {
    const a = { b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } };
    const b = { a: { c: null, d: [1, { x: 1, y: 2 }] }, b: 1 };
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(canonicalJson(a)).toBe('{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}');
  });

  it('keeps arrays in their order: order in an array is data', () => {
    expect(canonicalJson([3, 1, 2])).toBe('[3,1,2]');
    expect(canonicalJson({ list: ['b', 'a'] })).not.toBe(canonicalJson({ list: ['a', 'b'] }));
  });

  it('orders keys the same on every machine: by code unit, no locale (integer-like keys first, as JS objects keep them)', () => {
    expect(canonicalJson({ b: 1, B: 2, a: 3, é: 4, '10': 5, '9': 6 })).toBe(
      '{"9":6,"10":5,"B":2,"a":3,"b":1,"é":4}',
    );
  });

  it('tells different values apart', () => {
    expect(canonicalJson({ a: 1 })).not.toBe(canonicalJson({ a: '1' }));
    expect(canonicalJson({ a: null })).not.toBe(canonicalJson({}));
  });

  it('writes scalars as JSON.stringify does, and drops undefined like JSON', () => {
    for (const value of [null, 0, -1.5, 'text', true])
      expect(canonicalJson(value)).toBe(JSON.stringify(value));
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
  });

  it('round-trips through JSON.parse to an equal value', () => {
    const value = { z: [{ b: 2, a: 1 }], y: { x: 'é', w: [null, true] } };
    expect(JSON.parse(canonicalJson(value))).toEqual(value);
  });
});
