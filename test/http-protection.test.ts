import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../src/service.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { countRows, INTERNALS } from './support/rows.js';
import { graphql, stopAndClean, testConfig, testLogger, uniqueSuffix } from './support/service.js';
import { waitFor } from './support/wait.js';

const MAX_BODY_BYTES = 2048;
const MAX_DEPTH = 3;

/** Low enough that a page of 100 or five default pages are too costly, one page of 5 is not. */
const MAX_COST = 200;
const ADMIN_TOKEN = 'test-admin-token-0123456789';
let db: TestDatabase;
let service: RunningService;
let url: string;
let origin: string;

interface RawResponse {
  status: number;
  contentType: string;
  text: string;
  json:
    | { errors?: Array<{ message: string; extensions?: Record<string, unknown> }>; data?: unknown }
    | undefined;
}

async function send(path: string, init: RequestInit): Promise<RawResponse> {
  const response = await fetch(new URL(path, origin), init);
  const text = await response.text();
  let json: RawResponse['json'];
  try {
    json = JSON.parse(text) as RawResponse['json'];
  } catch {
    json = undefined;
  }
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', text, json };
}

const postJsonText = (body: string, headers: Record<string, string> = {}) =>
  send('/graphql', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

function expectNoInternals(text: string) {
  for (const pattern of INTERNALS) expect(text).not.toMatch(pattern);
  expect(text).not.toMatch(/<html|<pre>/i);
}

beforeAll(async () => {
  db = await createTestDatabase('http_protection');
  service = await startService(
    testConfig(db.url, {
      ROLES: 'app',
      MAX_BODY_BYTES: String(MAX_BODY_BYTES),
      GRAPHQL_MAX_DEPTH: String(MAX_DEPTH),
      GRAPHQL_MAX_COST: String(MAX_COST),
      ADMIN_TOKEN,
    }),
    testLogger(),
  );
  if (!service.app) throw new Error('the app role did not start');
  url = service.app.url;
  origin = new URL(url).origin;
});

afterAll(async () => {
  await stopAndClean(service);
  await db?.drop();
});

describe('request body limits', () => {
  it('accepts a body just under MAX_BODY_BYTES', async () => {
    const query = '{ __typename }';
    const padding = ' '.repeat(MAX_BODY_BYTES - JSON.stringify({ query }).length - 20);
    const body = JSON.stringify({ query: `${query}${padding}` });
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(MAX_BODY_BYTES);
    const response = await postJsonText(body);
    expect(response.status).toBe(200);
    expect(response.json?.data).toEqual({ __typename: 'Query' });
  });

  it('refuses a body above MAX_BODY_BYTES with 413, a JSON PAYLOAD_TOO_LARGE error and no stack', async () => {
    const customersBefore = await countRows(db, 'customers');
    const body = JSON.stringify({
      query: 'mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId } }',
      variables: { input: { email: `big.${uniqueSuffix()}@example.com`, name: 'x'.repeat(MAX_BODY_BYTES) } },
    });
    expect(Buffer.byteLength(body)).toBeGreaterThan(MAX_BODY_BYTES);

    const response = await postJsonText(body);

    expect(response.status).toBe(413);
    expect(response.contentType).toMatch(/application\/json/);
    expect(response.json?.errors?.[0]?.extensions?.code).toBe('PAYLOAD_TOO_LARGE');
    expect(response.json?.errors?.[0]?.message).toEqual(expect.any(String));
    expectNoInternals(response.text);
    expect(await countRows(db, 'customers')).toBe(customersBefore);
  });

  it('refuses malformed JSON with 400 BAD_REQUEST and no stack', async () => {
    const response = await postJsonText('{"query": "{ __typename }",');
    expect(response.status).toBe(400);
    expect(response.contentType).toMatch(/application\/json/);
    expect(response.json?.errors?.[0]?.extensions?.code).toBe('BAD_REQUEST');
    expectNoInternals(response.text);
    expect(response.text).not.toMatch(/SyntaxError|Unexpected|JSON\.parse/);
  });
});

describe('operator operations with ADMIN_TOKEN set', () => {
  it('refuses deadEvents and reviveDeadEvents without the token, with FORBIDDEN, and serves them with it', async () => {
    for (const query of ['{ deadEvents { eventId } }', 'mutation { reviveDeadEvents { eventIds } }']) {
      const refused = await graphql(url, query);
      expect(refused.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
      // The refusal says how to get in.
      expect(refused.errors?.[0]?.message).toMatch(/ADMIN_TOKEN.*Authorization: Bearer/);
      const wrong = await graphql(url, query, undefined, { authorization: 'Bearer not-the-token-at-all' });
      expect(wrong.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
      const allowed = await graphql(url, query, undefined, { authorization: `Bearer ${ADMIN_TOKEN}` });
      expect(allowed.errors).toBeUndefined();
      expect(allowed.data).toBeTruthy();
    }
  });
});

describe('query cost limit (GRAPHQL_MAX_COST)', () => {
  // customers(first: n) { pageInfo { hasNextPage } } costs 1 + n × 2 (pageInfo, hasNextPage).
  const page = 'query($n: Int) { customers(first: $n) { pageInfo { hasNextPage } } }';

  it('prices a page by its first, also when first comes from a variable, and refuses it above the limit', async () => {
    const small = await graphql(url, page, { n: 5 });
    expect(small.status).toBe(200);
    expect(small.errors).toBeUndefined();

    const large = await graphql(url, page, { n: 100 });
    expect(large.status).toBe(400);
    expect(large.data ?? null).toBeNull();
    expect(large.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(large.errors?.[0]?.message).toMatch(/cost \d+ exceeds the limit of 200/);
  });

  it('prices an omitted first at its schema default (20), and many aliases add up', async () => {
    const aliases = Array.from({ length: 5 }, (_, i) => `a${i}: customers { pageInfo { hasNextPage } }`).join(
      ' ',
    );
    const response = await graphql(url, `{ ${aliases} }`);
    expect(response.status).toBe(400);
    expect(response.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
  });
});

describe('query depth limit (GRAPHQL_MAX_DEPTH)', () => {
  const TOO_DEEP_QUERY = '{ customer(id: "1") { events { edges { node { payload } } } } }'; // depth 5
  const mutation = (selection: string) =>
    `mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { ${selection} } }`;

  it('refuses a query deeper than the limit with an error and no data, leaking nothing', async () => {
    const response = await postJsonText(JSON.stringify({ query: TOO_DEEP_QUERY }));
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.json?.data ?? null).toBeNull();
    expect(response.json?.errors).toHaveLength(1);
    expectNoInternals(response.text);
  });

  it('executes nothing of a mutation deeper than the limit, but runs it at the limit', async () => {
    const customersBefore = await countRows(db, 'customers');
    const outboxBefore = await countRows(db, 'outbox');
    // createCustomer > customer > events > pageInfo > hasNextPage: depth 5.
    const tooDeep = await graphql(url, mutation('customer { events { pageInfo { hasNextPage } } }'), {
      input: { email: `deep.${uniqueSuffix()}@example.com`, name: 'Too Deep' },
    });
    expect(tooDeep.status).toBeGreaterThanOrEqual(400);
    expect(tooDeep.data ?? null).toBeNull();
    expect(tooDeep.errors).toHaveLength(1);
    expect(await countRows(db, 'customers')).toBe(customersBefore);
    expect(await countRows(db, 'outbox')).toBe(outboxBefore);

    // Control: the same mutation at depth 3 does run, so the refusal above is the depth rule.
    const atLimit = await graphql<{ createCustomer: { customer: { id: string } } }>(
      url,
      mutation('customer { id }'),
      { input: { email: `shallow.${uniqueSuffix()}@example.com`, name: 'Shallow' } },
    );
    expect(atLimit.errors).toBeUndefined();
    expect(atLimit.data?.createCustomer.customer.id).toMatch(/^[0-9]+$/);
    expect(await countRows(db, 'customers')).toBe(customersBefore + 1);
    expect(await countRows(db, 'outbox')).toBe(outboxBefore + 1);
  });

  it('answers a too-deep query with 400 GRAPHQL_VALIDATION_FAILED naming the depth limit', async () => {
    const response = await graphql(url, TOO_DEEP_QUERY);
    expect(response.status).toBe(400);
    expect(response.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(response.errors?.[0]?.message).toMatch(/depth limit of 3 exceeded/i);
  });
});

describe("Apollo's CSRF prevention", () => {
  const query = '{ __typename }';

  it('refuses a GET carrying a query without a preflight-forcing header (400)', async () => {
    const response = await send(`/graphql?query=${encodeURIComponent(query)}`, { method: 'GET' });
    expect(response.status).toBe(400);
    expect(response.text).toMatch(/CSRF|Cross-Site Request Forgery/i);
    expect(response.text).not.toContain('"__typename":"Query"');
  });

  it('serves the same GET once it carries apollo-require-preflight (control)', async () => {
    const response = await send(`/graphql?query=${encodeURIComponent(query)}`, {
      method: 'GET',
      headers: { 'apollo-require-preflight': 'true' },
    });
    expect(response.status).toBe(200);
    expect(response.json?.data).toEqual({ __typename: 'Query' });
  });

  it('refuses a text/plain POST carrying a mutation (400) and writes nothing', async () => {
    const customersBefore = await countRows(db, 'customers');
    const response = await send('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify({
        query: 'mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId } }',
        variables: { input: { email: `csrf.${uniqueSuffix()}@example.com`, name: 'Forged' } },
      }),
    });
    expect(response.status).toBe(400);
    expect(response.text).toMatch(/CSRF|Cross-Site Request Forgery/i);
    expectNoInternals(response.text);
    expect(await countRows(db, 'customers')).toBe(customersBefore);
  });
});

describe('health endpoints', () => {
  it('answers GET /healthz with 200', async () => {
    const response = await send('/healthz', { method: 'GET' });
    expect(response.status).toBe(200);
    expect(response.json).toEqual({ status: 'ok' });
  });

  it('answers GET /readyz with 200 once MySQL and RabbitMQ are up', async () => {
    // The broker connection is opened in the background at start; readiness follows it.
    const response = await waitFor('readyz to report ready', async () => {
      const r = await send('/readyz', { method: 'GET' });
      return r.status === 200 ? r : undefined;
    });
    expect(response.json).toEqual({ status: 'ready', checks: { mysql: 'up', rabbitmq: 'up' } });
  });
});
