import { readFileSync } from 'node:fs';
import { buildSchema, getIntrospectionQuery, isObjectType, parse, specifiedRules, validate } from 'graphql';
import { describe, expect, it } from 'vitest';
import { invalidStringPath } from '../src/app/input.js';
import { costError, FIELD_COSTS, INTROSPECTION_DEPTH, limitRules } from '../src/app/limits.js';
import { SCHEMA_PATH } from '../src/app/schema.js';

// The SDL alone: limits need types, not resolvers.
const schema = buildSchema(readFileSync(SCHEMA_PATH, 'utf8'));
const rules = [...specifiedRules, ...limitRules({ maxDepth: 4, maxMutations: 1 })];
const errorsOf = (query: string) => validate(schema, parse(query), rules).map((e) => e.message);
const cost = (query: string, variables: Record<string, unknown> = {}) =>
  costError(schema, parse(query), variables, undefined, 0)?.message.match(/cost (\d+)/)?.[1];
const aliases = (n: number, field: string) =>
  Array.from({ length: n }, (_, i) => `a${i}: ${field}`).join(' ');

describe('depth is counted on fields, not fragments', () => {
  it('passes three nested named fragments of real depth 4, as Apollo Client and Relay send them', () => {
    const query = `
      query { customers { ...Page } }
      fragment Page on CustomerConnection { edges { ...Edge } }
      fragment Edge on CustomerEdge { node { ...Item } }
      fragment Item on Customer { id email }`;
    expect(errorsOf(query)).toEqual([]);
  });

  it('refuses depth 5 whether written out or hidden in fragments, with a plain validation message', () => {
    const inline = '{ customer(id: "1") { events { edges { node { eventId } } } } }';
    const fragments = `
      { customer(id: "1") { ...A } }
      fragment A on Customer { events { ...B } }
      fragment B on CustomerEventConnection { edges { ...C } }
      fragment C on CustomerEventEdge { node { eventId } }`;
    for (const query of [inline, fragments]) {
      const messages = errorsOf(query);
      expect(messages).toEqual(['Query depth limit of 4 exceeded: the operation nests fields 5 deep']);
      expect(messages[0]).not.toMatch(/syntax/i);
    }
  });

  it('measures a fragment spread a thousand times once, and survives a fragment cycle', () => {
    const many = `{ customers { edges { ${aliases(1000, 'node { ...F }')} } } } fragment F on Customer { id }`;
    expect(errorsOf(many)).toEqual([]);
    const cycle =
      '{ customers { ...A } } fragment A on CustomerConnection { ...B } fragment B on CustomerConnection { ...A }';
    expect(errorsOf(cycle).some((m) => /cannot spread fragment/i.test(m))).toBe(true);
  });

  it("accepts graphql-js's own introspection query and refuses introspection deeper than it", () => {
    expect(INTROSPECTION_DEPTH).toBeGreaterThan(4);
    expect(errorsOf(getIntrospectionQuery())).toEqual([]);
    const bomb = `{ __schema { types { ${'fields { type { '.repeat(10)}name${' } }'.repeat(10)} } } }`;
    // graphql-js's own MaxIntrospectionDepthRule refuses it too; ours names the limit.
    expect(errorsOf(bomb)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^Introspection depth limit of \d+ exceeded/)]),
    );
  });
});

describe('at most GRAPHQL_MAX_MUTATIONS mutation fields per request', () => {
  it('counts aliases and fields inside fragments', () => {
    expect(errorsOf('mutation { a: reviveDeadEvents { eventIds } }')).toEqual([]);
    const aliased = 'mutation { a: reviveDeadEvents { eventIds } b: reviveDeadEvents { eventIds } }';
    expect(errorsOf(aliased)).toEqual([
      expect.stringMatching(/^At most 1 mutation field per request, this one has 2/),
    ]);
    const hidden =
      'mutation { a: reviveDeadEvents { eventIds } ...M } fragment M on Mutation { b: reviveDeadEvents { eventIds } }';
    expect(errorsOf(hidden)).toHaveLength(1);
  });

  it('counts one field selected twice under one key once (it runs once), and ignores __typename', () => {
    expect(
      errorsOf('mutation { reviveDeadEvents { eventIds } reviveDeadEvents { eventIds } __typename }'),
    ).toEqual([]);
  });
});

describe('per-field cost', () => {
  it('names only fields that exist in the schema', () => {
    for (const key of Object.keys(FIELD_COSTS)) {
      const [typeName = '', fieldName = ''] = key.split('.');
      const type = schema.getType(typeName);
      expect(isObjectType(type) && type.getFields()[fieldName], key).toBeTruthy();
    }
  });

  it('prices database and broker fields at 10 or more, pages by first', () => {
    expect(cost('{ outboxStats { workerDeadLetters } }')).toBe('20');
    expect(cost('{ customers(first: 1) { pageInfo { hasNextPage } } }')).toBe('12');
    expect(
      cost(
        'query($n: Int) { customers(first: $n) { edges { node { events(first: 2) { edges { node { eventId } } } } } } }',
        {
          n: 5,
        },
      ),
    ).toBe(String(10 + 5 * (1 + 1 + 10 + 2 * (1 + 1 + 1))));
  });

  it('makes 1,000 aliases of a database field cost far more than the default limit of 5,000', () => {
    for (const field of [
      'customers(first: 1) { pageInfo { hasNextPage } }',
      'customer(id: "1") { events { eventId } }',
      'outboxStats { workerDeadLetters }',
      '__schema { queryType { name } }',
    ]) {
      expect(Number(cost(`{ ${aliases(1000, field)} }`))).toBeGreaterThan(10_000);
    }
  });

  it('prices one parsed document again whenever a variable its price depends on changes', () => {
    // One DocumentNode for every request, as Apollo's document store hands it out.
    const document = parse(`query($n: Int = 50, $deep: Boolean!, $id: ID!) {
      customers(first: $n) { edges { node { id events(first: 3) @include(if: $deep) { edges { node { eventId } } } } } }
      customer(id: $id) { id }
    }`);
    const limit = 100;
    const verdict = (variables: Record<string, unknown>) =>
      costError(schema, document, variables, undefined, limit)?.message;
    expect(verdict({ n: 10, deep: false, id: '1' })).toBeUndefined();
    // The same page size for another customer: the id plays no part in the price.
    expect(verdict({ n: 10, deep: false, id: '2' })).toBeUndefined();
    // A larger page, a directive switched on, the default taken, an explicit null: each priced anew.
    expect(verdict({ n: 100, deep: false, id: '1' })).toMatch(/exceeds the limit of 100/);
    expect(verdict({ n: 10, deep: true, id: '1' })).toMatch(/exceeds the limit of 100/);
    expect(verdict({ deep: false, id: '1' })).toMatch(/exceeds the limit of 100/);
    expect(verdict({ n: null, deep: false, id: '1' })).toBeUndefined();
    // A variable that does not coerce is left to execution, before and after a cached price.
    expect(verdict({ n: 'ten', deep: false, id: '1' })).toBeUndefined();
    expect(verdict({ n: 10, deep: false, id: '1' })).toBeUndefined();
  });

  it('keys a price by own variables only: `$constructor` absent is not `$constructor: null`', () => {
    const document = parse(`query($constructor: Int = 100) {
      customers(first: $constructor) { edges { node { id events(first: 100) { edges { node { eventId } } } } } }
    }`);
    const verdict = (variables: Record<string, unknown>) =>
      costError(schema, document, variables, undefined, 5_000)?.message;
    expect(verdict({})).toMatch(/exceeds the limit of 5000/);
    expect(verdict({ constructor: null })).toBeUndefined();
    // The default applies again, and so does the refusal.
    expect(verdict({})).toMatch(/exceeds the limit of 5000/);
  });

  it('refuses what it cannot price instead of waving it through', () => {
    // 2^14 expansions of one fragment: above graphql-query-complexity's node budget.
    const doubling = Array.from(
      { length: 14 },
      (_, i) => `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`,
    );
    const query = `{ ...F0 } ${doubling.join(' ')} fragment F14 on Query { __typename }`;
    expect(costError(schema, parse(query), {}, undefined, 1_000_000)?.message).toBe(
      'Query is too large to price',
    );
  });
});

describe('lone surrogates in variables', () => {
  it('finds them at any depth and names the path', () => {
    expect(invalidStringPath({ input: { email: 'a@b.c', name: 'a\ud800b' } })).toBe('input.name');
    expect(invalidStringPath({ ids: ['1', '\udc00'] })).toBe('ids.1');
    expect(invalidStringPath({ input: { name: 'emoji 😀 is fine' } })).toBeUndefined();
  });
});
