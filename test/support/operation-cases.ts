import { getIntrospectionQuery } from 'graphql';
import type { Operation, OperationKind } from './transports.js';

/**
 * The hostile operations of test/hostile-operations.test.ts: each names its kind, and the
 * status and code every transport that runs it must answer.
 */
export interface Case {
  readonly name: string;
  readonly kind: OperationKind;
  readonly operation: Operation;
  /** The HTTP status (where the transport has one) and the code; code undefined: no error. */
  readonly status: number;
  readonly code: string | undefined;
  readonly message?: RegExp;
  /** Refused by parsing or validation, before the operation's kind matters. */
  readonly refusedByValidation?: boolean;
  /** Transports the case cannot be sent on, with why. */
  readonly skip?: Readonly<Record<string, string>>;
}

const aliases = (n: number, field: string) =>
  Array.from({ length: n }, (_, i) => `a${i}: ${field}`).join(' ');
/** JSON text of `{ name: [[[…1…]]] }`: too deep for JSON.stringify in this process. */
const deepArray = (name: string, depth: number) => ({
  json: `{${JSON.stringify(name)}:${'['.repeat(depth)}1${']'.repeat(depth)}}`,
});
const TOO_LONG_FOR_A_URL = {
  'HTTP GET': 'the URL would pass 16 KB, refused by Node with 431 before GraphQL',
  'SSE GET': 'the URL would pass 16 KB, refused by Node with 431 before GraphQL',
};
export const ON_EVENT = 'subscription($id: ID) { onCustomerEvent(customerId: $id) { eventId } }';
export const CREATE = 'mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId } }';

const document = (name: string, query: string, code: string, message?: RegExp): Case => ({
  name,
  kind: 'query',
  operation: { query },
  status: 400,
  code,
  message,
  refusedByValidation: true,
});

/** The cases; every e-mail in them holds `secret`, which must never reach the log. */
export function operationCases(secret: string): Case[] {
  const email = (label: string) => `${secret}.${label}@example.com`;
  return [
    // The document: refused the same on every transport that parses it.
    document('a syntax error', '{ customers { ', 'GRAPHQL_PARSE_FAILED'),
    document('a NUL byte in the document', '{ __typename \u0000 }', 'GRAPHQL_PARSE_FAILED'),
    {
      // `[]` is two tokens in two bytes: 50,001 tokens fit the 100 KB body limit.
      ...document('more than 50,000 tokens', `{ a(b: [${'[]'.repeat(25_001)}]) }`, 'GRAPHQL_PARSE_FAILED'),
      message: /50000 tokens/,
      skip: TOO_LONG_FOR_A_URL,
    },
    document('an unknown field', '{ customerz { id } }', 'GRAPHQL_VALIDATION_FAILED'),
    document(
      'a deep query (21 levels of introspection)',
      `{ __schema { types { ${'fields { type { '.repeat(9)}name${' } }'.repeat(9)} } } }`,
      'GRAPHQL_VALIDATION_FAILED',
      /^(?!Syntax Error).*depth/i,
    ),
    document(
      'a fragment cycle',
      '{ ...A } fragment A on Query { ...B } fragment B on Query { ...A __typename }',
      'GRAPHQL_VALIDATION_FAILED',
    ),
    {
      // Valid, and refused by its price: too large to price, after the operation's kind.
      ...document(
        'a fragment bomb (2^14 expansions)',
        `{ ...F0 } ${Array.from({ length: 14 }, (_, i) => `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`).join(' ')} fragment F14 on Query { __typename }`,
        'GRAPHQL_VALIDATION_FAILED',
      ),
      refusedByValidation: false,
    },
    document(
      'duplicate operation names',
      'query A { __typename } query A { __typename }',
      'GRAPHQL_VALIDATION_FAILED',
    ),
    document(
      'several operations and no operationName',
      'query A { __typename } query B { __typename }',
      'OPERATION_RESOLUTION_FAILURE',
    ),
    {
      ...document('an operationName that is not in the document', 'query A { __typename }', ''),
      operation: { query: 'query A { __typename }', operationName: 'Nope' },
      code: 'OPERATION_RESOLUTION_FAILURE',
    },
    document(
      'one directive repeated on a field',
      `{ __typename ${'@include(if: true) '.repeat(50)}}`,
      'GRAPHQL_VALIDATION_FAILED',
    ),
    document('an unknown directive', '{ __typename @sleep(ms: 100000) }', 'GRAPHQL_VALIDATION_FAILED'),
    document(
      'a first above 32 bits',
      '{ customers(first: 4294967296) { pageInfo { hasNextPage } } }',
      'GRAPHQL_VALIDATION_FAILED',
    ),
    {
      // graphql-js's single-field rule throws here instead of reporting (it evaluates @include
      // without the variables): once a 500, and over WebSocket a 4500 close of every subscription.
      name: 'a validation rule that throws: @include(if: $b) on a subscription root',
      kind: 'subscription',
      operation: {
        query: `subscription($b: Boolean!) { onCustomerEvent(after: "${email('source')}") @include(if: $b) { eventId } }`,
        variables: { b: true },
      },
      status: 400,
      code: 'GRAPHQL_VALIDATION_FAILED',
      refusedByValidation: true,
    },
    {
      name: '1,000 aliased createCustomer',
      kind: 'mutation',
      operation: {
        query: `mutation($input: CreateCustomerInput!) { ${aliases(1000, 'createCustomer(input: $input) { eventId }')} }`,
        variables: { input: { email: email('alias'), name: 'Alias' } },
      },
      status: 400,
      code: 'GRAPHQL_VALIDATION_FAILED',
      message: /At most 1 mutation field per request, this one has 1000/,
      refusedByValidation: true,
      skip: TOO_LONG_FOR_A_URL,
    },

    // Budgets: priced once the variables are known.
    {
      name: '@include on 1,000 database fields',
      kind: 'query',
      operation: { query: `{ ${aliases(1000, 'outboxStats @include(if: true) { pending }')} }` },
      status: 400,
      code: 'GRAPHQL_VALIDATION_FAILED',
      message: /cost/,
      skip: TOO_LONG_FOR_A_URL,
    },
    {
      name: 'an introspection bomb: 1,000 aliases of __schema',
      kind: 'query',
      operation: { query: `{ ${aliases(1000, '__schema { types { name } }')} }` },
      status: 400,
      code: 'GRAPHQL_VALIDATION_FAILED',
      skip: TOO_LONG_FOR_A_URL,
    },
    {
      name: '1,000 aliases of customer { events }',
      kind: 'query',
      operation: {
        query: `{ ${aliases(1000, 'customer(id: "1") { events { edges { node { eventId } } } }')} }`,
      },
      status: 400,
      code: 'GRAPHQL_VALIDATION_FAILED',
      skip: TOO_LONG_FOR_A_URL,
    },
    {
      name: '1,000 aliases of outboxStats { workerDeadLetters }',
      kind: 'query',
      operation: { query: `{ ${aliases(1000, 'outboxStats { workerDeadLetters }')} }` },
      status: 400,
      code: 'GRAPHQL_VALIDATION_FAILED',
      skip: TOO_LONG_FOR_A_URL,
    },
    {
      name: 'a huge first',
      kind: 'query',
      operation: {
        query: '{ customers(first: 1000000) { edges { node { events { edges { node { eventId } } } } } } }',
      },
      status: 400,
      code: 'GRAPHQL_VALIDATION_FAILED',
    },
    {
      name: '1,000 aliases of customers',
      kind: 'query',
      operation: { query: `{ ${aliases(1000, 'customers(first: 1) { pageInfo { hasNextPage } }')} }` },
      status: 400,
      code: 'GRAPHQL_VALIDATION_FAILED',
      message: /cost \d+ exceeds the limit of 5000/,
      skip: TOO_LONG_FOR_A_URL,
    },
    {
      name: 'a page of 1,000,000 from a variable',
      kind: 'query',
      operation: {
        query:
          'query($n: Int) { customers(first: $n) { edges { node { events { edges { node { eventId } } } } } } }',
        variables: { n: 1_000_000 },
      },
      status: 400,
      code: 'GRAPHQL_VALIDATION_FAILED',
      message: /cost/,
    },
    {
      name: 'a negative first',
      kind: 'query',
      operation: { query: '{ customers(first: -1) { pageInfo { hasNextPage } } }' },
      status: 200,
      code: 'BAD_USER_INPUT',
    },

    {
      name: 'two mutation fields, one hidden in a fragment',
      kind: 'mutation',
      operation: {
        query:
          'mutation($i: CreateCustomerInput!) { a: createCustomer(input: $i) { eventId } ...M } fragment M on Mutation { b: createCustomer(input: $i) { eventId } }',
        variables: { i: { email: email('frag'), name: 'Frag' } },
      },
      status: 400,
      code: 'GRAPHQL_VALIDATION_FAILED',
      refusedByValidation: true,
    },

    // Arguments: the resolvers' own checks.
    {
      name: 'a cursor that is not one',
      kind: 'query',
      operation: { query: '{ customers(after: "not-a-cursor") { pageInfo { hasNextPage } } }' },
      status: 200,
      code: 'BAD_USER_INPUT',
    },
    {
      name: 'a customer id that is not a number',
      kind: 'query',
      operation: { query: '{ customer(id: "1 OR 1=1") { id } }' },
      status: 200,
      code: 'BAD_USER_INPUT',
    },
    ...(
      [
        ['control characters in the name', { email: email('control'), name: 'Ada\u0000\u001b[31m' }],
        ['an overlong name', { email: email('long'), name: 'x'.repeat(10_000) }],
        ['an overlong e-mail', { email: `${'x'.repeat(300)}@example.com`, name: 'Long' }],
      ] as const
    ).map(
      ([name, input]): Case => ({
        name,
        kind: 'mutation',
        operation: { query: CREATE, variables: { input } },
        status: 200,
        code: 'BAD_USER_INPUT',
      }),
    ),

    // Variables: checked against their types before any other use.
    {
      name: 'a 5,000-deep JSON array as an Int variable (the cost key once stringified it: 500)',
      kind: 'query',
      operation: {
        query: 'query($n: Int) { customers(first: $n) { pageInfo { hasNextPage } } }',
        variables: deepArray('n', 5000),
      },
      status: 400,
      code: 'BAD_USER_INPUT',
      skip: TOO_LONG_FOR_A_URL,
    },
    {
      name: 'a 5,000-deep JSON array as the Boolean of @include',
      kind: 'query',
      operation: {
        query:
          'query($b: Boolean!) { customers { pageInfo { hasNextPage } } outboxStats @include(if: $b) { pending } }',
        variables: deepArray('b', 5000),
      },
      status: 400,
      code: 'BAD_USER_INPUT',
      skip: TOO_LONG_FOR_A_URL,
    },
    {
      name: 'a 5,000-deep JSON array as a subscription ID variable',
      kind: 'subscription',
      operation: { query: ON_EVENT, variables: deepArray('id', 5000) },
      status: 400,
      code: 'BAD_USER_INPUT',
      skip: TOO_LONG_FOR_A_URL,
    },
    {
      name: 'an object as an ID variable',
      kind: 'query',
      operation: { query: 'query($id: ID!) { customer(id: $id) { id } }', variables: { id: { $gt: '' } } },
      status: 400,
      code: 'BAD_USER_INPUT',
    },
    {
      name: 'an object as a subscription ID variable',
      kind: 'subscription',
      operation: { query: ON_EVENT, variables: { id: { a: 1 } } },
      status: 400,
      code: 'BAD_USER_INPUT',
    },
    {
      name: 'a missing required variable',
      kind: 'mutation',
      operation: { query: CREATE },
      status: 400,
      code: 'BAD_USER_INPUT',
    },
    {
      name: 'a lone surrogate in an ID variable',
      kind: 'query',
      operation: {
        query: 'query($id: ID!) { customerEvents(customerId: $id) { edges { cursor } } }',
        variables: { id: '1\ud800' },
      },
      status: 400,
      code: 'BAD_USER_INPUT',
    },
    {
      name: 'a lone surrogate in a subscription variable',
      kind: 'subscription',
      operation: { query: ON_EVENT, variables: { id: '1\ud800' } },
      status: 400,
      code: 'BAD_USER_INPUT',
    },
    {
      name: 'a lone surrogate in the name variable',
      kind: 'mutation',
      operation: { query: CREATE, variables: { input: { email: email('surrogate'), name: 'a\ud800b' } } },
      status: 400,
      code: 'BAD_USER_INPUT',
    },
    {
      name: 'a customer id that is not a number, in a subscription',
      kind: 'subscription',
      operation: { query: ON_EVENT, variables: { id: 'abc' } },
      status: 200,
      code: 'BAD_USER_INPUT',
    },
    {
      name: "graphql-js's full introspection query (what GraphiQL sends)",
      kind: 'query',
      operation: { query: getIntrospectionQuery() },
      status: 200,
      code: undefined,
      skip: TOO_LONG_FOR_A_URL,
    },
    {
      name: 'fields 5 deep wrapped in 20 inline fragments',
      kind: 'query',
      operation: {
        query: `{ customers { ${'... on CustomerConnection { '.repeat(20)}edges { node { events { pageInfo { hasNextPage } } } }${' }'.repeat(20)} } }`,
      },
      status: 200,
      code: undefined,
    },
    {
      name: 'nested named fragments of real depth 4 (what Apollo Client and Relay send)',
      kind: 'query',
      operation: {
        query: `query Page { customers(first: 2) { ...Page } }
        fragment Page on CustomerConnection { edges { ...Edge } pageInfo { hasNextPage } }
        fragment Edge on CustomerEdge { cursor node { ...Item } }
        fragment Item on Customer { id email name }`,
      },
      status: 200,
      code: undefined,
    },
  ];
}
