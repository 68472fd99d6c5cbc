import { getIntrospectionQuery } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { type RunningService, startService } from '../src/service.js';
import { createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { countRows } from './support/rows.js';
import { stopAndClean, testConfig, uniqueSuffix } from './support/service.js';
import {
  type Operation,
  type OperationKind,
  POST,
  TRANSPORTS,
  type Transport,
  transportsFor,
} from './support/transports.js';

/**
 * Hostile and careless operations, each sent on every transport that serves its kind (and, for
 * a document refused by parsing or validation, on every transport that parses it first):
 * HTTP POST, HTTP GET, WebSocket (test/support/transports.ts; a new transport added there runs
 * them all). Every client mistake is a 4xx with a code, the same code everywhere; nothing is
 * written; the service stays healthy; and the log holds no error and no personal data.
 */

const SECRET = `hostileop${uniqueSuffix()}`;
const email = (label: string) => `${SECRET}.${label}@example.com`;

interface Case {
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
};
const ON_EVENT = 'subscription($id: ID) { onCustomerEvent(customerId: $id) { eventId } }';
const CREATE = 'mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId } }';

const document = (name: string, query: string, code: string, message?: RegExp): Case => ({
  name,
  kind: 'query',
  operation: { query },
  status: 400,
  code,
  message,
  refusedByValidation: true,
});

const cases: Case[] = [
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
  },

  // Budgets: priced once the variables are known.
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
];

/** Each case on each transport it runs on, as one row. */
const rows = cases.flatMap((c) =>
  transportsFor(c.kind, c.refusedByValidation ?? false)
    .filter((t) => !c.skip?.[t.name])
    .map((transport) => ({ ...c, transport, label: `${c.name} [${transport.name}]` })),
);

/** Per transport, one operation of each kind it does not serve (but parses) is BAD_REQUEST. */
const misplaced: Array<{ transport: Transport; kind: OperationKind; operation: Operation }> =
  TRANSPORTS.flatMap((transport) =>
    (['query', 'mutation', 'subscription'] as const)
      .filter((kind) => !transport.serves.includes(kind) && transport.reachesValidation(kind))
      .map((kind) => ({
        transport,
        kind,
        operation:
          kind === 'query'
            ? { query: '{ __typename }' }
            : kind === 'mutation'
              ? { query: CREATE, variables: { input: { email: email('misplaced'), name: 'Misplaced' } } }
              : { query: ON_EVENT },
      })),
  );

let db: TestDatabase;
let service: RunningService;
let url: string;
const logLines: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase('hostile_operations');
  const log = createLogger('info', {}, { write: (line: string) => logLines.push(line) });
  service = await startService(testConfig(db.url, { ROLES: 'app' }), log);
  if (!service.app) throw new Error('the app role did not start');
  url = service.app.url;
  await createCustomer(url, SECRET);
});

afterAll(async () => {
  await stopAndClean(service);
  await db?.drop();
});

describe('hostile operations on every transport', () => {
  it('runs every case on at least one transport, and most on several', () => {
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
    for (const c of cases)
      expect(
        rows.some((r) => r.name === c.name),
        c.name,
      ).toBe(true);
    expect(new Set(rows.map((r) => r.transport.name))).toEqual(new Set(TRANSPORTS.map((t) => t.name)));
  });

  it.each(rows)('$label → $code', async (row) => {
    const customers = await countRows(db, 'customers');
    const outbox = await countRows(db, 'outbox');

    const answer = await row.transport.send(url, row.operation);

    const status = answer.status === undefined ? undefined : row.status;
    expect({ status: answer.status, code: answer.code }, JSON.stringify(answer.errors[0])).toEqual({
      status,
      code: row.code,
    });
    if (row.message) expect(answer.errors[0]?.message).toMatch(row.message);
    expect(await countRows(db, 'customers')).toBe(customers);
    expect(await countRows(db, 'outbox')).toBe(outbox);
    const control = await POST.send(url, { query: '{ customers(first: 1) { edges { node { id } } } }' });
    expect(control).toMatchObject({ status: 200, code: undefined });
  });

  it.each(misplaced)('a $kind over $transport.name is BAD_REQUEST, naming where it goes', async (row) => {
    const answer = await row.transport.send(url, row.operation);
    expect({ status: answer.status, code: answer.code }).toEqual({
      status: answer.status === undefined ? undefined : 400,
      code: 'BAD_REQUEST',
    });
  });

  it('logged no error and no personal data', () => {
    const text = logLines.join('');
    expect(text).not.toContain(SECRET);
    const errors = logLines
      .map((line) => JSON.parse(line) as { level: number; msg: string })
      .filter((l) => l.level >= 50);
    expect(errors).toEqual([]);
  });
});
