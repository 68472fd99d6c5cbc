import { makeExecutableSchema } from '@graphql-tools/schema';
import { GraphQLError, parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import type { AppContext } from '../../src/app/context.js';
import { DocumentCache } from '../../src/app/documents.js';
import { OperationFailure, OperationPipeline, type TransportRules } from '../../src/app/pipeline.js';
import { createLogger } from '../../src/log.js';

/**
 * The operation pipeline on a schema of its own: the order of its stages, the errors it turns
 * into refusals, and its streams, with no server.
 */

const lines: string[] = [];
const log = createLogger('debug', {}, { write: (line: string) => lines.push(line) });
const errorLines = () => lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50);

/** A database connection lost: what mysql2 reports when the server goes away. */
const outage = () =>
  Object.assign(new Error('Connection lost: The server closed the connection.'), {
    code: 'PROTOCOL_CONNECTION_LOST',
  });

let source: () => AsyncIterableIterator<unknown> = () => never();

const schema = makeExecutableSchema({
  typeDefs: /* GraphQL */ `
    type Item { n: Int! }
    type Query { page(first: Int = 5): [Item!]! }
    type Subscription { ticks: Int! }
  `,
  resolvers: {
    Query: {
      page: (_: unknown, { first }: { first: number }) => Array.from({ length: first }, (_, n) => ({ n })),
    },
    Subscription: { ticks: { subscribe: () => source(), resolve: (tick: number) => tick } },
  },
});

const pipeline = new OperationPipeline({
  schema,
  log,
  limits: { maxDepth: 8, maxCost: 100, maxMutations: 1 },
  introspection: false,
  exposeInternals: false,
});
const ANY: TransportRules = { serves: ['query', 'mutation', 'subscription'], elsewhere: 'nowhere' };
const context = () => ({}) as AppContext;

/** A source that never yields, and ends as soon as it is asked to. */
function never(): AsyncIterableIterator<unknown> {
  let release: (() => void) | undefined;
  const iterator: AsyncIterableIterator<unknown> = {
    next: () => new Promise((resolve) => (release = () => resolve({ done: true, value: undefined }))),
    return: async () => {
      release?.();
      return { done: true, value: undefined };
    },
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}

function deepArray(depth: number): unknown {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = [value];
  return value;
}

describe('the operation pipeline', () => {
  it('checks variables against their types before pricing: a 5,000-deep array for an Int is BAD_USER_INPUT', async () => {
    const outcome = await pipeline.run(
      { query: 'query($n: Int) { page(first: $n) { n } }', variables: { n: deepArray(5000) } },
      ANY,
      context,
    );
    expect(outcome).toMatchObject({
      kind: 'refused',
      status: 400,
      result: { errors: [{ extensions: { code: 'BAD_USER_INPUT' } }] },
    });
  });

  it('prices with the variables: a page of 1,000 is over a cost limit of 100, a page of 5 is not', async () => {
    const refused = await pipeline.run(
      { query: 'query($n: Int) { page(first: $n) { n } }', variables: { n: 1000 } },
      ANY,
      context,
    );
    expect(refused).toMatchObject({
      kind: 'refused',
      result: { errors: [{ extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } }] },
    });
    const served = await pipeline.run({ query: '{ page { n } }' }, ANY, context);
    expect(served).toEqual({
      kind: 'result',
      status: 200,
      headers: {},
      result: { data: { page: [0, 1, 2, 3, 4].map((n) => ({ n })) } },
    });
  });

  it("turns a validation rule that throws (graphql-js's single-field subscription rule) into GRAPHQL_VALIDATION_FAILED", () => {
    const errors = pipeline.prepare(
      { query: 'subscription($b: Boolean!) { ticks @include(if: $b) }', variables: { b: true } },
      ANY,
    );
    expect(Array.isArray(errors) && errors.map((e) => e.extensions.code)).toEqual([
      'GRAPHQL_VALIDATION_FAILED',
    ]);
  });

  it('parses a text once for every request that sends it, and still refuses each request by its own variables', () => {
    const query = 'query($n: Int) { page(first: $n) { n } }';
    const first = pipeline.prepare({ query, variables: { n: 2 } }, ANY);
    const again = pipeline.prepare({ query, variables: { n: 3 } }, ANY);
    expect('kind' in first && 'kind' in again && first.document === again.document).toBe(true);
    const tooMany = pipeline.prepare({ query, variables: { n: 1000 } }, ANY);
    expect(!('kind' in tooMany) && tooMany[0]?.message).toMatch(/cost/i);
    const notAnInt = pipeline.prepare({ query, variables: { n: 'x' } }, ANY);
    expect(!('kind' in notAnInt) && notAnInt[0]?.extensions.code).toBe('BAD_USER_INPUT');
  });

  it('keeps parsed documents up to a total text length, dropping the least recently used first', () => {
    const cache = new DocumentCache(30);
    const doc = (text: string) => parse(text);
    cache.set('{ a }', doc('{ a }'));
    cache.set('{ b }', doc('{ b }'));
    expect(cache.get('{ a }')).toBeDefined();
    // 10 + 25 characters > 30: the least recently used ({ b }) goes.
    cache.set(`{ ${'c'.repeat(21)} }`, doc(`{ ${'c'.repeat(21)} }`));
    expect([cache.get('{ a }') !== undefined, cache.get('{ b }') !== undefined, cache.size]).toEqual([
      true,
      false,
      2,
    ]);
    // A text longer than the whole bound is not kept at all.
    cache.set(`{ ${'d'.repeat(40)} }`, doc(`{ ${'d'.repeat(40)} }`));
    expect(cache.size).toBe(2);
  });

  it('refuses a malformed request with BAD_REQUEST and an operation of a kind the transport does not serve with its message', () => {
    const codes = (request: Parameters<OperationPipeline['prepare']>[0], rules = ANY): unknown[][] => {
      const prepared = pipeline.prepare(request, rules);
      return 'kind' in prepared ? [] : prepared.map((e) => [e.extensions.code, e.message]);
    };
    expect(codes({ query: 42 })[0]?.[0]).toBe('BAD_REQUEST');
    expect(codes({ query: '{ page { n } }', variables: [1] })[0]?.[0]).toBe('BAD_REQUEST');
    expect(codes({ query: '{ page { n } }', operationName: 7 })[0]?.[0]).toBe('BAD_REQUEST');
    expect(
      codes({ query: '{ page { n } }' }, { serves: ['subscription'], elsewhere: 'Send it elsewhere' }),
    ).toEqual([['BAD_REQUEST', 'Send it elsewhere']]);
    expect(codes({ query: '{ __schema { queryType { name } } }' })[0]?.[0]).toBe('GRAPHQL_VALIDATION_FAILED');
  });

  it("ends a stream at once when it is returned while a read waits, and ends the source's subscription", async () => {
    let ended = false;
    source = () => {
      const inner = never();
      const iterator: AsyncIterableIterator<unknown> = {
        next: () => inner.next(),
        return: async () => {
          ended = true;
          return (await inner.return?.()) ?? { done: true, value: undefined };
        },
        [Symbol.asyncIterator]: () => iterator,
      };
      return iterator;
    };
    const outcome = await pipeline.run({ query: 'subscription { ticks }' }, ANY, context);
    if (outcome.kind !== 'stream') throw new Error(`not a stream: ${JSON.stringify(outcome)}`);
    const waiting = outcome.results.next();
    await outcome.results.return?.();
    expect(ended).toBe(true);
    await expect(waiting).resolves.toMatchObject({ done: true });
  });

  it('ends a stream whose source loses the database with OperationFailure SERVICE_UNAVAILABLE, logged without an error line', async () => {
    source = () => {
      const iterator: AsyncIterableIterator<unknown> = {
        next: async () => {
          throw outage();
        },
        [Symbol.asyncIterator]: () => iterator,
      };
      return iterator;
    };
    const outcome = await pipeline.run({ query: 'subscription { ticks }' }, ANY, context);
    if (outcome.kind !== 'stream') throw new Error('not a stream');
    const failure = await outcome.results.next().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(OperationFailure);
    expect((failure as OperationFailure).errors.map((e) => e.extensions?.code)).toEqual([
      'SERVICE_UNAVAILABLE',
    ]);
    expect(errorLines()).toEqual([]);
  });

  it("follows graphql-ws's wrapper of a stream's error to its cause, and takes a write to a destroyed stream for a client gone", () => {
    const wrapped = new GraphQLError('Connection lost', { originalError: outage() });
    expect(pipeline.formatErrors([wrapped]).map((e) => e.extensions?.code)).toEqual(['SERVICE_UNAVAILABLE']);
    const gone = Object.assign(new Error('Cannot call write after a stream was destroyed'), {
      code: 'ERR_STREAM_DESTROYED',
    });
    const formatted = pipeline.formatErrors([new GraphQLError(gone.message, { originalError: gone })]);
    expect(formatted.map((e) => e.extensions?.code)).toEqual(['CLIENT_CLOSED_REQUEST']);
    expect(errorLines()).toEqual([]);
  });
});
