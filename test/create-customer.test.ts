import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../src/service.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { countRows, INTERNALS, parseJsonColumn } from './support/rows.js';
import {
  type GraphQLResponse,
  graphql,
  stopAndClean,
  testConfig,
  testLogger,
  uniqueSuffix,
} from './support/service.js';

const CREATE = /* GraphQL */ `
  mutation Create($input: CreateCustomerInput!) {
    createCustomer(input: $input) {
      eventId
      customer { id email name createdAt }
    }
  }
`;

interface Created {
  createCustomer: {
    eventId: string;
    customer: { id: string; email: string; name: string; createdAt: string };
  } | null;
}

interface CustomerRow {
  id: number | string;
  email: string;
  email_normalized: string;
  name: string;
  created_at: Date;
}

interface OutboxRow {
  id: number | string;
  event_id: string;
  aggregate_type: string;
  aggregate_id: string;
  sequence: number;
  type: string;
  payload: unknown;
  headers: unknown;
  occurred_at: Date;
  published_at: Date | null;
  dead_at: Date | null;
}

let db: TestDatabase;
let service: RunningService;
let url: string;

/** An address nobody else in this file uses, so tests do not depend on each other's rows. */
const freshEmail = (local = 'customer') => `${local}.${uniqueSuffix()}@example.com`;

const create = (input: Record<string, unknown>, headers: Record<string, string> = {}) =>
  graphql<Created>(url, CREATE, { input }, headers);

async function createOk(input: { email: string; name: string }, headers: Record<string, string> = {}) {
  const response = await create(input, headers);
  expect(response.errors).toBeUndefined();
  const created = response.data?.createCustomer;
  if (!created) throw new Error(`createCustomer returned no data: ${JSON.stringify(response)}`);
  return created;
}

async function outboxRowOf(eventId: string): Promise<OutboxRow> {
  const rows = await db.query<OutboxRow>('SELECT * FROM outbox WHERE event_id = ?', [eventId]);
  expect(rows).toHaveLength(1);
  return rows[0] as OutboxRow;
}

beforeAll(async () => {
  db = await createTestDatabase('create_customer');
  service = await startService(testConfig(db.url, { ROLES: 'app' }), testLogger());
  if (!service.app) throw new Error('the app role did not start');
  url = service.app.url;
});

afterAll(async () => {
  await stopAndClean(service);
  await db?.drop();
});

describe('createCustomer writes the customer and its CustomerCreated event in one transaction', () => {
  it('commits a customer row (trimmed, e-mail normalized) and a matching outbox event', async () => {
    const suffix = uniqueSuffix();
    const typedEmail = `  Ada.Lovelace.${suffix}@Example.COM `;
    const before = Date.now();
    const created = await createOk({ email: typedEmail, name: '  Ada Lovelace  ' });
    const after = Date.now();

    // What the client is told.
    expect(created.customer.email).toBe(`Ada.Lovelace.${suffix}@Example.COM`);
    expect(created.customer.name).toBe('Ada Lovelace');
    expect(created.customer.id).toMatch(/^[1-9][0-9]*$/);
    expect(created.eventId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const createdAt = new Date(created.customer.createdAt);
    expect(created.customer.createdAt).toBe(createdAt.toISOString());
    expect(createdAt.getTime()).toBeGreaterThanOrEqual(before);
    expect(createdAt.getTime()).toBeLessThanOrEqual(after);

    // The customer row.
    const customers = await db.query<CustomerRow>('SELECT * FROM customers WHERE id = ?', [
      created.customer.id,
    ]);
    expect(customers).toHaveLength(1);
    const customer = customers[0] as CustomerRow;
    expect(customer.email).toBe(`Ada.Lovelace.${suffix}@Example.COM`);
    expect(customer.email_normalized).toBe(`ada.lovelace.${suffix}@example.com`);
    expect(customer.name).toBe('Ada Lovelace');
    expect(customer.created_at.toISOString()).toBe(created.customer.createdAt);

    // The outbox row, written in the same transaction.
    const event = await outboxRowOf(created.eventId);
    expect(event.event_id).toBe(created.eventId);
    expect(event.aggregate_type).toBe('Customer');
    expect(event.aggregate_id).toBe(created.customer.id);
    expect(Number(event.sequence)).toBe(1);
    expect(event.type).toBe('CustomerCreated');
    expect(event.occurred_at.toISOString()).toBe(created.customer.createdAt);
    expect(event.published_at).toBeNull();
    expect(event.dead_at).toBeNull();
    expect(parseJsonColumn(event.payload)).toEqual({
      customerId: created.customer.id,
      email: `Ada.Lovelace.${suffix}@Example.COM`,
      name: 'Ada Lovelace',
      createdAt: created.customer.createdAt,
    });
    const headers = parseJsonColumn<Record<string, string>>(event.headers);
    expect(headers.correlationId).toEqual(expect.any(String));
    expect(headers.correlationId?.length).toBeGreaterThan(0);
    expect(headers).not.toHaveProperty('traceparent');

    // Exactly one event for the new customer.
    const [{ n } = { n: -1 }] = await db.query<{ n: number }>(
      "SELECT COUNT(*) AS n FROM outbox WHERE aggregate_type = 'Customer' AND aggregate_id = ?",
      [created.customer.id],
    );
    expect(Number(n)).toBe(1);
  });

  it('gives every request its own generated correlation id when the client sends none', async () => {
    const first = await createOk({ email: freshEmail('corr.a'), name: 'A' });
    const second = await createOk({ email: freshEmail('corr.b'), name: 'B' });
    const a = parseJsonColumn<Record<string, string>>((await outboxRowOf(first.eventId)).headers);
    const b = parseJsonColumn<Record<string, string>>((await outboxRowOf(second.eventId)).headers);
    expect(a.correlationId).toMatch(/^[0-9a-f-]{36}$/);
    expect(b.correlationId).toMatch(/^[0-9a-f-]{36}$/);
    expect(a.correlationId).not.toBe(b.correlationId);
  });

  it('uses the x-correlation-id request header as the event correlation id', async () => {
    const correlationId = `order-flow.${uniqueSuffix()}:step-1`;
    const created = await createOk(
      { email: freshEmail('corr'), name: 'Correlated' },
      { 'x-correlation-id': correlationId },
    );
    const headers = parseJsonColumn<Record<string, string>>((await outboxRowOf(created.eventId)).headers);
    expect(headers.correlationId).toBe(correlationId);
  });

  it('replaces an x-correlation-id that is not a sane token instead of storing it', async () => {
    const hostile = 'evil value\twith spaces';
    const created = await createOk(
      { email: freshEmail('corr.bad'), name: 'Not Correlated' },
      { 'x-correlation-id': hostile },
    );
    const headers = parseJsonColumn<Record<string, string>>((await outboxRowOf(created.eventId)).headers);
    expect(headers.correlationId).not.toBe(hostile);
    expect(headers.correlationId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('copies a well-formed W3C traceparent request header into the event headers', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const created = await createOk({ email: freshEmail('traced'), name: 'Traced' }, { traceparent });
    const headers = parseJsonColumn<Record<string, string>>((await outboxRowOf(created.eventId)).headers);
    expect(headers.traceparent).toBe(traceparent);
    expect(headers.correlationId).toEqual(expect.any(String));
  });

  it.each([
    ['a truncated trace id', '00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01'],
    ['non-hex characters', '00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01'],
    ['free text', 'hello; DROP TABLE outbox'],
    ['a missing flags field', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7'],
  ])(
    'drops a malformed traceparent (%s) instead of copying it into the event',
    async (_what, traceparent) => {
      const created = await createOk({ email: freshEmail('badtrace'), name: 'Untraced' }, { traceparent });
      const headers = parseJsonColumn<Record<string, string>>((await outboxRowOf(created.eventId)).headers);
      expect(headers).not.toHaveProperty('traceparent');
      expect(JSON.stringify(headers)).not.toContain(traceparent);
      expect(headers.correlationId).toEqual(expect.any(String));
    },
  );
});

describe('a failure while writing the event rolls back the customer', () => {
  it('answers INTERNAL_SERVER_ERROR without internals and leaves no customer and no event', async () => {
    const customersBefore = await countRows(db, 'customers');
    const outboxBefore = await countRows(db, 'outbox');
    const email = freshEmail('rollback');
    await db.query(
      "CREATE TRIGGER outbox_fail_injected BEFORE INSERT ON outbox FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected'",
    );
    let response: GraphQLResponse<Created>;
    let raw: string;
    try {
      const http = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: CREATE, variables: { input: { email, name: 'Rolled Back' } } }),
      });
      raw = await http.text();
      response = { status: http.status, ...(JSON.parse(raw) as Omit<GraphQLResponse<Created>, 'status'>) };
    } finally {
      await db.query('DROP TRIGGER IF EXISTS outbox_fail_injected');
    }

    expect(response.data ?? null).toBeNull();
    expect(response.errors).toHaveLength(1);
    const [error] = response.errors ?? [];
    expect(error?.extensions?.code).toBe('INTERNAL_SERVER_ERROR');
    expect(error?.message).toBe('Internal server error');
    expect(error?.extensions).not.toHaveProperty('stacktrace');
    expect(raw).not.toContain('injected');
    expect(raw).not.toContain('45000');
    for (const pattern of INTERNALS) expect(raw).not.toMatch(pattern);

    // Neither row survived: the customer insert was rolled back with the failed event insert.
    expect(await countRows(db, 'customers')).toBe(customersBefore);
    expect(await countRows(db, 'outbox')).toBe(outboxBefore);
    const leftovers = await db.query('SELECT id FROM customers WHERE email_normalized = ?', [
      email.toLowerCase(),
    ]);
    expect(leftovers).toHaveLength(0);

    // With the fault gone, the same address is free: nothing half-written holds it.
    const retried = await createOk({ email, name: 'Rolled Back' });
    expect(retried.customer.email).toBe(email);
    expect(await countRows(db, 'customers')).toBe(customersBefore + 1);
    expect(await countRows(db, 'outbox')).toBe(outboxBefore + 1);
  });
});

describe('an e-mail address belongs to one customer only', () => {
  it('refuses the same address in another case and with surrounding spaces with EMAIL_TAKEN', async () => {
    const suffix = uniqueSuffix();
    await createOk({ email: `Grace.Hopper.${suffix}@Example.com`, name: 'Grace Hopper' });
    const customersBefore = await countRows(db, 'customers');
    const outboxBefore = await countRows(db, 'outbox');

    const response = await create({ email: `  grace.HOPPER.${suffix}@EXAMPLE.COM  `, name: 'Another Grace' });

    expect(response.data ?? null).toBeNull();
    expect(response.errors).toHaveLength(1);
    expect(response.errors?.[0]?.extensions?.code).toBe('EMAIL_TAKEN');
    expect(response.errors?.[0]?.extensions?.field).toBe('input.email');
    expect(await countRows(db, 'customers')).toBe(customersBefore);
    expect(await countRows(db, 'outbox')).toBe(outboxBefore);
  });

  it('a refused address spends one auto-increment id, as one failed INSERT does (the README example: the next customer is 3)', async () => {
    const suffix = uniqueSuffix();
    const first = await createOk({ email: `alan.${suffix}@example.com`, name: 'Alan Turing' });
    const refused = await create({ email: `ALAN.${suffix}@example.com`, name: 'Alan again' });
    expect(refused.errors?.map((e) => e.extensions?.code)).toEqual(['EMAIL_TAKEN']);
    const next = await createOk({ email: `grace.${suffix}@example.com`, name: 'Grace Hopper' });
    expect(Number(next.customer.id)).toBe(Number(first.customer.id) + 2);
  });

  it('lets exactly one of 20 concurrent requests for one new address win; the other 19 get EMAIL_TAKEN', async () => {
    const suffix = uniqueSuffix();
    const variants = (i: number) =>
      i % 2 === 0 ? `race.${suffix}@example.com` : `  RACE.${suffix}@Example.COM `;
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => create({ email: variants(i), name: `Racer ${i}` })),
    );

    const winners = responses.filter((r) => r.data?.createCustomer);
    const losers = responses.filter((r) => !r.data?.createCustomer);
    expect(winners).toHaveLength(1);
    expect(losers).toHaveLength(19);
    for (const loser of losers) {
      expect(loser.errors?.map((e) => e.extensions?.code)).toEqual(['EMAIL_TAKEN']);
    }

    const rows = await db.query<CustomerRow>('SELECT * FROM customers WHERE email_normalized = ?', [
      `race.${suffix}@example.com`,
    ]);
    expect(rows).toHaveLength(1);
    const winner = winners[0]?.data?.createCustomer;
    expect(String(rows[0]?.id)).toBe(winner?.customer.id);
    const events = await db.query<OutboxRow>(
      "SELECT * FROM outbox WHERE aggregate_type = 'Customer' AND aggregate_id = ?",
      [winner?.customer.id],
    );
    expect(events).toHaveLength(1);
    expect(events[0]?.event_id).toBe(winner?.eventId);
    // No event of a losing request slipped in under some other aggregate id.
    const racerEvents = await db.query(
      "SELECT id FROM outbox WHERE type = 'CustomerCreated' AND JSON_UNQUOTE(JSON_EXTRACT(payload, '$.email')) LIKE ?",
      [`%${suffix}%`],
    );
    expect(racerEvents).toHaveLength(1);
  });
});

describe('invalid input is refused with BAD_USER_INPUT naming the field, and nothing is written', () => {
  // An address that is valid apart from its length: 64 + 1 + (63 + 1 + 63 + 1 + n + 4) characters.
  const emailOfLength = (length: number) => {
    const tail = length - (64 + 1 + 63 + 1 + 63 + 1 + 4);
    return `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(tail)}.com`;
  };

  it('accepts the boundary values: a 254-character e-mail and a 100-character name', async () => {
    const email = emailOfLength(254);
    expect(email).toHaveLength(254);
    expect(emailOfLength(255)).toHaveLength(255);
    const created = await createOk({ email, name: 'n'.repeat(100) });
    expect(created.customer.email).toBe(email);
    expect(created.customer.name).toHaveLength(100);
  });

  const cases: Array<[string, { email: string; name: string }, string]> = [
    ['an e-mail without @', { email: 'not-an-address', name: 'Valid Name' }, 'input.email'],
    ['an e-mail with two @', { email: 'a@b@example.com', name: 'Valid Name' }, 'input.email'],
    ['an e-mail without a domain', { email: 'someone@', name: 'Valid Name' }, 'input.email'],
    ['an empty e-mail', { email: '', name: 'Valid Name' }, 'input.email'],
    ['an e-mail of 255 characters', { email: emailOfLength(255), name: 'Valid Name' }, 'input.email'],
    ['an empty name', { email: 'empty.name@example.com', name: '' }, 'input.name'],
    ['a whitespace-only name', { email: 'blank.name@example.com', name: ' \t  ' }, 'input.name'],
    ['a name of 101 characters', { email: 'long.name@example.com', name: 'n'.repeat(101) }, 'input.name'],
    ['a name with a NUL character', { email: 'nul.name@example.com', name: 'Bob\u0000by' }, 'input.name'],
    ['a name with a line break', { email: 'crlf.name@example.com', name: 'Bob\r\nBcc: x@y.z' }, 'input.name'],
    [
      'a name with a bell character',
      { email: 'bell.name@example.com', name: 'Ding\u0007Dong' },
      'input.name',
    ],
  ];

  it.each(cases)('refuses %s', async (_what, input, field) => {
    const customersBefore = await countRows(db, 'customers');
    const outboxBefore = await countRows(db, 'outbox');

    const response = await create(input);

    expect(response.data ?? null).toBeNull();
    expect(response.errors).toHaveLength(1);
    expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(response.errors?.[0]?.extensions?.field).toBe(field);
    expect(response.errors?.[0]?.message).toEqual(expect.any(String));
    expect(await countRows(db, 'customers')).toBe(customersBefore);
    expect(await countRows(db, 'outbox')).toBe(outboxBefore);
  });

  it.each([
    ['name', { email: 'missing.name@example.com' }],
    ['email', { name: 'Missing Email' }],
  ])('refuses an input without %s (variable coercion) with BAD_USER_INPUT', async (missing, input) => {
    const customersBefore = await countRows(db, 'customers');
    const outboxBefore = await countRows(db, 'outbox');

    const response = await create(input);

    expect(response.status).toBe(400);
    expect(response.data ?? null).toBeNull();
    expect(response.errors).toHaveLength(1);
    expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(response.errors?.[0]?.message).toContain(missing);
    expect(await countRows(db, 'customers')).toBe(customersBefore);
    expect(await countRows(db, 'outbox')).toBe(outboxBefore);
  });
});
