import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createLogger } from '../src/log.js';
import { type RunningService, startService } from '../src/service.js';
import { createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { countRows, INTERNALS } from './support/rows.js';
import { stopAndClean, testConfig, uniqueSuffix } from './support/service.js';
import { connectWs, ON_CUSTOMER_EVENT, subscribe, type WsClient, wsUrlOf } from './support/subscriptions.js';
import { waitFor } from './support/wait.js';

/**
 * Hostile and careless input over HTTP and WebSocket, one table row per case: what is sent,
 * and the HTTP status and `extensions.code` expected back. After every case nothing has been
 * written (customers, outbox), /healthz answers 200 and an ordinary query still works; after
 * the whole table, the service logged no error and no personal data.
 *
 * The service runs with the defaults that matter here (depth 8, cost 5,000, one mutation per
 * request, 100 subscriptions per connection, no ADMIN_TOKEN) plus small connection and
 * slow-client limits, so that those can be reached quickly.
 */

const MAX_WS_CONNECTIONS = 10;
const CORS_ORIGIN = 'https://studio.apollographql.com';
const EVIL_ORIGIN = 'https://evil.example';
/** Every e-mail and name the cases send: none of them may appear in the log. */
const SECRET = `hostile${uniqueSuffix()}`;
const email = (label: string) => `${SECRET}.${label}@example.com`;

let db: TestDatabase;
let service: RunningService;
let url: string;
let origin: string;
const logLines: string[] = [];
const openClients: WsClient[] = [];

/** What came back: the HTTP status (101 for a WebSocket that upgraded) and the first error code. */
interface Outcome {
  readonly status: number;
  readonly code?: string | undefined;
  readonly message?: string | undefined;
  readonly body?: unknown;
  readonly headers?: Headers;
}

interface Case {
  readonly name: string;
  /** What is sent, for the reader. */
  readonly input: string;
  readonly send: () => Promise<Outcome>;
  readonly status: number;
  /** The expected `extensions.code`; undefined means the operation succeeded without errors. */
  readonly code: string | undefined;
  readonly message?: RegExp;
  /** More to check on the outcome. */
  readonly check?: (outcome: Outcome) => void | Promise<void>;
}

// ── HTTP ─────────────────────────────────────────────────────────────────────────────────

async function http(init: RequestInit & { path?: string }): Promise<Outcome> {
  const response = await fetch(new URL(init.path ?? '/graphql', origin), init);
  const text = await response.text();
  for (const pattern of INTERNALS) expect(text).not.toMatch(pattern);
  let body: { errors?: Array<{ message?: string; extensions?: { code?: string } }> } | undefined;
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    body = undefined;
  }
  const error = body?.errors?.[0];
  return {
    status: response.status,
    code: error?.extensions?.code,
    message: error?.message ?? (body ? undefined : text),
    body,
    headers: response.headers,
  };
}

const post = (payload: unknown, headers: Record<string, string> = {}) =>
  http({
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof payload === 'string' ? payload : JSON.stringify(payload),
  });

const get = (params: Record<string, string>, headers: Record<string, string> = {}) =>
  http({
    method: 'GET',
    path: `/graphql?${new URLSearchParams(params)}`,
    headers: { 'apollo-require-preflight': 'true', ...headers },
  });

const CREATE = 'mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId } }';
const create = (input: Record<string, unknown>) => post({ query: CREATE, variables: { input } });

/** A client that sends part of its headers and then nothing: what does the server do? */
function slowHeaders(): Promise<Outcome> {
  const { port, hostname } = new URL(origin);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
    });
    socket.on('error', reject);
    socket.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? 0);
      resolve({ status, message: received.split('\r\n')[0] });
    });
    socket.write('POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n');
  });
}

// ── WebSocket ────────────────────────────────────────────────────────────────────────────

/** Opens a raw WebSocket: 101 once upgraded, else the status of the refusal. */
function upgrade(path: string, headers: Record<string, string> = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${wsUrlOf(origin)}${path}`, 'graphql-transport-ws', { headers });
    socket.on('open', () => {
      socket.close();
      resolve({ status: 101 });
    });
    socket.on('unexpected-response', (_request, response) => {
      let text = '';
      response.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
      });
      response.on('end', () => {
        const body = JSON.parse(text) as { errors: Array<{ extensions: { code: string } }> };
        resolve({ status: response.statusCode ?? 0, code: body.errors[0]?.extensions.code });
      });
    });
    socket.on('error', (error) => {
      if (!/Unexpected server response/.test(String(error))) reject(error);
    });
  });
}

function wsClient(): WsClient {
  const client = connectWs(url);
  openClients.push(client);
  return client;
}

// ── The table ────────────────────────────────────────────────────────────────────────────

const cases: Case[] = [
  // The request itself
  {
    name: 'malformed JSON',
    input: '{"query": "{ __typename }",',
    send: () => post('{"query": "{ __typename }",'),
    status: 400,
    code: 'BAD_REQUEST',
  },
  {
    name: 'a JSON string instead of an object',
    input: '"{ __typename }"',
    send: () => post('"{ __typename }"'),
    status: 400,
    code: 'BAD_REQUEST',
  },
  {
    name: 'an empty body',
    input: 'POST, content-type application/json, no body',
    send: () => post(''),
    status: 400,
    code: 'BAD_REQUEST',
  },
  {
    name: 'no query',
    input: '{"variables": {}}',
    send: () => post({ variables: {} }),
    status: 400,
    code: 'BAD_REQUEST',
  },
  {
    name: 'a query that is a number',
    input: '{"query": 42}',
    send: () => post({ query: 42 }),
    status: 400,
    code: 'BAD_REQUEST',
  },
  {
    name: 'variables as a JSON-encoded string',
    input: '{"query": …, "variables": "{\\"input\\": …}"}',
    send: () =>
      post({ query: CREATE, variables: JSON.stringify({ input: { email: email('str'), name: 'S' } }) }),
    status: 400,
    code: 'BAD_REQUEST',
  },
  {
    name: 'a wrong content type',
    input: 'POST, content-type application/xml',
    send: () => post('<query/>', { 'content-type': 'application/xml' }),
    status: 400,
    code: 'BAD_REQUEST',
  },
  {
    name: 'a huge body',
    input: '200 KB of variables (MAX_BODY_BYTES 100 KB)',
    send: () => create({ email: email('huge'), name: 'x'.repeat(200_000) }),
    status: 413,
    code: 'PAYLOAD_TOO_LARGE',
  },
  {
    name: 'a huge body sent chunked, with no Content-Length to refuse it by',
    input: '200 KB of variables in 1 KB chunks, Transfer-Encoding: chunked',
    send: () => {
      const text = JSON.stringify({
        query: CREATE,
        variables: { input: { email: email('chunked'), name: 'x'.repeat(200_000) } },
      });
      const bytes = new TextEncoder().encode(text);
      let offset = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (offset >= bytes.length) return controller.close();
          controller.enqueue(bytes.subarray(offset, offset + 1024));
          offset += 1024;
        },
      });
      return http({
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        duplex: 'half',
      } as RequestInit);
    },
    status: 413,
    code: 'PAYLOAD_TOO_LARGE',
  },
  {
    name: 'a JSON body that is a string, not an object',
    input: '"{ __typename }"',
    send: () => post('"{ __typename }"'),
    status: 400,
    code: 'BAD_REQUEST',
  },
  {
    name: 'a JSON body starting with a UTF-8 byte-order mark (served, as body-parser does)',
    input: '\\uFEFF{"query": "{ __typename }"}',
    send: () => post(`\uFEFF${JSON.stringify({ query: '{ __typename }' })}`),
    status: 200,
    code: undefined,
    check: ({ body }) => expect(body).toEqual({ data: { __typename: 'Query' } }),
  },
  {
    name: 'a JSON body in a charset other than UTF-8',
    input: 'content-type application/json; charset=latin1',
    send: () => post({ query: '{ __typename }' }, { 'content-type': 'application/json; charset=latin1' }),
    status: 415,
    code: 'BAD_REQUEST',
  },
  {
    name: 'a gzip-compressed JSON body (served, through Express)',
    input: 'Content-Encoding: gzip, { __typename }',
    send: () =>
      http({
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body: gzipSync(JSON.stringify({ query: '{ __typename }' })),
      }),
    status: 200,
    code: undefined,
    check: ({ body }) => expect(body).toEqual({ data: { __typename: 'Query' } }),
  },
  {
    name: 'a batch array',
    input: '[{query}, {query}]',
    send: () => post([{ query: '{ __typename }' }, { query: '{ __typename }' }]),
    status: 400,
    code: 'BAD_REQUEST',
  },
  {
    name: 'a mutation over GET',
    input: 'GET ?query=mutation{createCustomer(…)}',
    send: () =>
      get({
        query: `mutation { createCustomer(input: { email: "${email('get')}", name: "Get" }) { eventId } }`,
      }),
    status: 405,
    code: 'BAD_REQUEST',
  },
  {
    name: 'CSRF: a simple POST without content type',
    input: 'POST text/plain body with a mutation, no apollo-require-preflight',
    send: () =>
      http({
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: JSON.stringify({
          query: CREATE,
          variables: { input: { email: email('csrf'), name: 'Forged' } },
        }),
      }),
    status: 400,
    code: 'BAD_REQUEST',
    message: /CSRF|Cross-Site Request Forgery/i,
  },
  {
    name: 'CSRF: a GET without a preflight-forcing header',
    input: 'GET ?query={__typename}, no apollo-require-preflight',
    send: () => http({ method: 'GET', path: '/graphql?query=%7B__typename%7D' }),
    status: 400,
    code: 'BAD_REQUEST',
  },
  {
    name: 'a slow client that never finishes its headers',
    input: 'half a request line and headers, then silence (HTTP_HEADERS_TIMEOUT_MS 1000)',
    send: slowHeaders,
    status: 408,
    code: undefined,
  },

  // The document, budgets, variables: test/hostile-operations.test.ts, on every transport.

  // Arguments and variables, where the HTTP body itself is the point
  {
    name: 'an unknown input field (__proto__)',
    input: '{"input": {"email": …, "name": …, "__proto__": {"admin": true}}}',
    send: () =>
      post(
        `{"query": ${JSON.stringify(CREATE)}, "variables": {"input": {"email": "${email('proto')}", "name": "P", "__proto__": {"admin": true}}}}`,
      ),
    status: 400,
    code: 'BAD_USER_INPUT',
  },
  {
    name: 'a lone surrogate in the name variable',
    input: '{"input": {"name": "a\\ud800b", …}}',
    send: () => create({ email: email('surrogate-name'), name: 'a\ud800b' }),
    status: 400,
    code: 'BAD_USER_INPUT',
    check: ({ body }) =>
      expect(body).toMatchObject({
        errors: [{ extensions: { code: 'BAD_USER_INPUT', field: 'input.name' } }],
      }),
  },
  {
    name: 'a lone surrogate in the email variable',
    input: '{"input": {"email": "a\\udc00@example.com", …}}',
    send: () => create({ email: `${SECRET}\udc00@example.com`, name: 'Surrogate' }),
    status: 400,
    code: 'BAD_USER_INPUT',
    check: ({ body }) => expect(body).toMatchObject({ errors: [{ extensions: { field: 'input.email' } }] }),
  },
  {
    name: 'a lone surrogate in a literal argument (the parser refuses it)',
    input: 'createCustomer(input: { name: "a\\ud800b", … })',
    send: () =>
      post({
        query: `mutation { createCustomer(input: { email: "${email('literal')}", name: "a\\ud800b" }) { eventId } }`,
      }),
    status: 400,
    code: 'GRAPHQL_PARSE_FAILED',
  },
  {
    name: 'a persisted query whose hash does not match its text',
    input: '{ __typename } with extensions.persistedQuery.sha256Hash of zeros',
    send: () =>
      post({
        query: '{ __typename }',
        extensions: { persistedQuery: { version: 1, sha256Hash: '0'.repeat(64) } },
      }),
    status: 400,
    code: 'BAD_REQUEST',
  },

  // Operator operations
  {
    name: 'deadEvents without ADMIN_TOKEN configured',
    input: '{ deadEvents { eventId } }, no token configured, none sent',
    send: () => post({ query: '{ deadEvents { eventId } }' }),
    status: 200,
    code: 'FORBIDDEN',
    message: /ADMIN_TOKEN.*Authorization: Bearer/,
  },
  {
    name: 'reviveDeadEvents with a made-up token, none configured',
    input: 'mutation { reviveDeadEvents { eventIds } }, Authorization: Bearer guess-guess-guess',
    send: () =>
      post(
        { query: 'mutation { reviveDeadEvents { eventIds } }' },
        { authorization: 'Bearer guess-guess-guess' },
      ),
    status: 200,
    code: 'FORBIDDEN',
  },

  // CORS
  {
    name: 'a CORS preflight from an origin in CORS_ORIGINS',
    input: `OPTIONS, Origin: ${CORS_ORIGIN}`,
    send: () =>
      http({
        method: 'OPTIONS',
        headers: {
          origin: CORS_ORIGIN,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'content-type,authorization',
        },
      }),
    status: 204,
    code: undefined,
    check: ({ headers }) => {
      expect(headers?.get('access-control-allow-origin')).toBe(CORS_ORIGIN);
      expect(headers?.get('access-control-allow-headers')).toBe('content-type,authorization');
      expect(headers?.get('access-control-allow-credentials')).toBeNull();
    },
  },
  {
    name: 'a cross-origin POST from an origin not in CORS_ORIGINS',
    input: `POST { __typename }, Origin: ${EVIL_ORIGIN}`,
    send: () => post({ query: '{ __typename }' }, { origin: EVIL_ORIGIN }),
    // Served (a server cannot stop a non-browser client), but the browser gets no CORS grant.
    status: 200,
    code: undefined,
    check: ({ headers }) => expect(headers?.get('access-control-allow-origin')).toBeNull(),
  },

  {
    name: 'a cross-origin POST from an origin in CORS_ORIGINS',
    input: `POST { __typename }, Origin: ${CORS_ORIGIN}`,
    send: () => post({ query: '{ __typename }' }, { origin: CORS_ORIGIN }),
    status: 200,
    code: undefined,
    check: ({ headers }) => {
      expect(headers?.get('access-control-allow-origin')).toBe(CORS_ORIGIN);
      expect(headers?.get('vary')).toMatch(/\bOrigin\b/);
    },
  },

  // WebSocket
  {
    name: 'a WebSocket from a foreign Origin',
    input: `upgrade /graphql, Origin: ${EVIL_ORIGIN}`,
    send: () => upgrade('/graphql', { origin: EVIL_ORIGIN }),
    status: 403,
    code: 'FORBIDDEN',
  },
  {
    name: 'a WebSocket from Origin: null (a sandboxed frame or a file: page)',
    input: 'upgrade /graphql, Origin: null',
    send: () => upgrade('/graphql', { origin: 'null' }),
    status: 403,
    code: 'FORBIDDEN',
  },
  {
    name: 'a WebSocket from the service’s own origin (the playground)',
    input: 'upgrade /graphql, Origin = the Host header',
    send: () => upgrade('/graphql', { origin }),
    status: 101,
    code: undefined,
  },
  {
    name: 'a WebSocket from an origin in CORS_ORIGINS',
    input: `upgrade /graphql, Origin: ${CORS_ORIGIN}`,
    send: () => upgrade('/graphql', { origin: CORS_ORIGIN }),
    status: 101,
    code: undefined,
  },
  {
    name: 'a WebSocket on another path',
    input: 'upgrade /admin',
    send: () => upgrade('/admin'),
    status: 404,
    code: 'NOT_FOUND',
  },
  {
    name: 'one WebSocket more than WS_MAX_CONNECTIONS',
    input: `${MAX_WS_CONNECTIONS} connections open, then one more`,
    send: async () => {
      const held = Array.from({ length: MAX_WS_CONNECTIONS }, () => wsClient());
      await waitFor('the connections to be acknowledged', () => held.every((c) => c.connected()));
      const outcome = await upgrade('/graphql');
      await Promise.all(held.map((c) => c.dispose()));
      return outcome;
    },
    status: 503,
    code: 'SERVICE_UNAVAILABLE',
  },
  {
    name: '500 subscriptions on one WebSocket',
    input: '500 × subscribe onCustomerEvent on one connection (WS_MAX_SUBSCRIPTIONS 100)',
    send: async () => {
      const client = wsClient();
      const subscriptions = Array.from({ length: 500 }, () => subscribe(client, ON_CUSTOMER_EVENT));
      await waitFor('400 refusals', () => subscriptions.filter((s) => s.errors.length > 0).length === 400);
      const refused = subscriptions.flatMap((s) => s.errors).flatMap((e) => (Array.isArray(e) ? e : []));
      const codes = new Set(refused.map((e) => (e as { extensions?: { code?: string } }).extensions?.code));
      // The first 100 are live: a control subscription after them is refused, not the others.
      expect(subscriptions.slice(0, 100).every((s) => s.errors.length === 0)).toBe(true);
      await client.dispose();
      return { status: 101, code: [...codes].join(',') };
    },
    status: 101,
    code: 'TOO_MANY_SUBSCRIPTIONS',
  },
];

// ── Running it ───────────────────────────────────────────────────────────────────────────

beforeAll(async () => {
  db = await createTestDatabase('hostile_input');
  const log = createLogger('info', {}, { write: (line: string) => logLines.push(line) });
  service = await startService(
    testConfig(db.url, {
      ROLES: 'app',
      WS_MAX_CONNECTIONS: String(MAX_WS_CONNECTIONS),
      HTTP_HEADERS_TIMEOUT_MS: '1000',
      HTTP_REQUEST_TIMEOUT_MS: '5000',
      CORS_ORIGINS: CORS_ORIGIN,
    }),
    log,
  );
  if (!service.app) throw new Error('the app role did not start');
  url = service.app.url;
  origin = new URL(url).origin;
  await createCustomer(url, SECRET);
});

afterAll(async () => {
  await Promise.all(openClients.map((c) => c.dispose()));
  await stopAndClean(service);
  await db?.drop();
});

describe('hostile input over HTTP and WebSocket', () => {
  // The operations themselves (documents, budgets, variables) are hostile-operations.test.ts's,
  // sent on every transport; these are the requests and connections around them.
  it('has at least 30 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
  });

  it.each(cases)('$name → $status $code', async (testCase) => {
    const customers = await countRows(db, 'customers');
    const outbox = await countRows(db, 'outbox');

    const outcome = await testCase.send();

    expect({ status: outcome.status, code: outcome.code }, `${testCase.input}: ${outcome.message}`).toEqual({
      status: testCase.status,
      code: testCase.code,
    });
    if (testCase.message) expect(outcome.message).toMatch(testCase.message);
    await testCase.check?.(outcome);

    // Nothing written…
    expect(await countRows(db, 'customers')).toBe(customers);
    expect(await countRows(db, 'outbox')).toBe(outbox);
    // …and the service is healthy: alive, and an ordinary query reaches the database.
    const health = await fetch(new URL('/healthz', origin));
    expect(health.status).toBe(200);
    const normal = await post({
      query: '{ customers(first: 1) { edges { node { id } } } outboxStats { pending } }',
    });
    expect(normal).toMatchObject({ status: 200, code: undefined });
  });

  it('logged no error and no personal data while refusing all of it', () => {
    const text = logLines.join('');
    expect(logLines.length).toBeGreaterThan(0);
    expect(text).not.toContain(SECRET);
    const errors = logLines
      .map((line) => JSON.parse(line) as { level: number; msg: string })
      .filter((l) => l.level >= 50);
    expect(errors).toEqual([]);
    // The broker connection batches its writes (broker/connection.ts): it found amqplib's socket.
    expect(text).toContain('broker connected');
    expect(text).not.toContain('AMQP socket not found');
  });
});
