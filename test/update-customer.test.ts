import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../src/service.js';
import { createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { parseJsonColumn } from './support/rows.js';
import { type GraphQLResponse, graphql, stopAndClean, testConfig, testLogger } from './support/service.js';

const UPDATE = /* GraphQL */ `
  mutation Update($input: UpdateCustomerInput!) {
    updateCustomer(input: $input) {
      eventId
      customer { id email name createdAt sequence }
    }
  }
`;

interface Updated {
  updateCustomer: {
    eventId: string;
    customer: { id: string; email: string; name: string; createdAt: string; sequence: number };
  } | null;
}

let db: TestDatabase;
let service: RunningService;
let url: string;

const update = (input: Record<string, unknown>, headers: Record<string, string> = {}) =>
  graphql<Updated>(url, UPDATE, { input }, headers);

async function updateOk(input: Record<string, unknown>, headers: Record<string, string> = {}) {
  const response = await update(input, headers);
  expect(response.errors).toBeUndefined();
  const updated = response.data?.updateCustomer;
  if (!updated) throw new Error(`updateCustomer returned no data: ${JSON.stringify(response)}`);
  return updated;
}

const codeOf = (response: GraphQLResponse<unknown>) => response.errors?.[0]?.extensions?.code;

/** The customer's events in the outbox, oldest first. */
const eventsOf = (customerId: string) =>
  db.query<{ event_id: string; type: string; sequence: number; payload: unknown }>(
    "SELECT event_id, type, sequence, payload FROM outbox WHERE aggregate_type = 'Customer' AND aggregate_id = ? ORDER BY sequence",
    [customerId],
  );

const customerRow = async (customerId: string) =>
  (
    await db.query<{ email: string; name: string; version: number }>(
      'SELECT email, name, version FROM customers WHERE id = ?',
      [customerId],
    )
  )[0];

beforeAll(async () => {
  db = await createTestDatabase('update_customer');
  service = await startService(testConfig(db.url, { ROLES: 'app' }), testLogger());
  url = service.app?.url as string;
});

afterAll(async () => {
  await stopAndClean(service);
  await db?.drop();
});

describe('updateCustomer', () => {
  it('changes name and e-mail and appends CustomerUpdated with before/after and the next sequence', async () => {
    const customer = await createCustomer(url, 'update');
    const email = `renamed.${randomUUID()}@example.com`;
    const updated = await updateOk({ id: customer.customerId, email, name: 'New Name' });
    expect(updated.customer).toEqual({
      id: customer.customerId,
      email,
      name: 'New Name',
      createdAt: customer.createdAt,
      sequence: 2,
    });
    expect(await customerRow(customer.customerId)).toEqual({ email, name: 'New Name', version: 2 });

    const events = await eventsOf(customer.customerId);
    expect(events.map((e) => [e.type, e.sequence])).toEqual([
      ['CustomerCreated', 1],
      ['CustomerUpdated', 2],
    ]);
    expect(events[1]?.event_id).toBe(updated.eventId);
    expect(parseJsonColumn(events[1]?.payload)).toEqual({
      customerId: customer.customerId,
      changes: {
        email: { before: customer.email, after: email },
        name: { before: customer.name, after: 'New Name' },
      },
      updatedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
    });

    // Only what changed is in the event; the sequence keeps counting.
    const renamed = await updateOk({ id: customer.customerId, name: 'Third Name', expectedSequence: 2 });
    expect(renamed.customer.sequence).toBe(3);
    const third = (await eventsOf(customer.customerId))[2];
    expect(third?.sequence).toBe(3);
    expect(parseJsonColumn<{ changes: unknown }>(third?.payload).changes).toEqual({
      name: { before: 'New Name', after: 'Third Name' },
    });
  });

  it('an e-mail another customer has (in any case) is EMAIL_TAKEN and writes nothing', async () => {
    const taken = await createCustomer(url, 'taken');
    const customer = await createCustomer(url, 'wants-it');
    const response = await update({ id: customer.customerId, email: taken.email.toUpperCase() });
    expect(codeOf(response)).toBe('EMAIL_TAKEN');
    expect(response.errors?.[0]?.extensions?.field).toBe('input.email');
    expect(await customerRow(customer.customerId)).toMatchObject({ email: customer.email, version: 1 });
    expect(await eventsOf(customer.customerId)).toHaveLength(1);
  });

  it('an unknown customer id is NOT_FOUND', async () => {
    const response = await update({ id: '987654321', name: 'Nobody' });
    expect(codeOf(response)).toBe('NOT_FOUND');
    expect(response.errors?.[0]?.extensions?.field).toBe('input.id');
  });

  it('invalid input is BAD_USER_INPUT naming the field, and writes nothing', async () => {
    const customer = await createCustomer(url, 'bad-input');
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ id: customer.customerId }, 'input.email'],
      [{ id: customer.customerId, email: 'not an address' }, 'input.email'],
      [{ id: customer.customerId, name: '   ' }, 'input.name'],
      [{ id: 'abc', name: 'X' }, 'input.id'],
      [{ id: customer.customerId, name: 'X', expectedSequence: 0 }, 'input.expectedSequence'],
      // The same values as now: nothing to change.
      [{ id: customer.customerId, email: customer.email, name: customer.name }, 'input'],
    ];
    for (const [input, field] of cases) {
      const response = await update(input);
      expect(codeOf(response), JSON.stringify(input)).toBe('BAD_USER_INPUT');
      expect(response.errors?.[0]?.extensions?.field, JSON.stringify(input)).toBe(field);
    }
    expect(await customerRow(customer.customerId)).toMatchObject({ version: 1 });
    expect(await eventsOf(customer.customerId)).toHaveLength(1);
  });

  it('20 concurrent updates with the same expectedSequence: one succeeds, 19 CONFLICT, one event', async () => {
    const customer = await createCustomer(url, 'race');
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        update({ id: customer.customerId, name: `Racer ${i}`, expectedSequence: 1 }),
      ),
    );
    const winners = responses.filter((r) => r.errors === undefined);
    const conflicts = responses.filter((r) => codeOf(r) === 'CONFLICT');
    expect(winners).toHaveLength(1);
    expect(conflicts).toHaveLength(19);
    const winner = winners[0]?.data?.updateCustomer;
    expect(winner?.customer.sequence).toBe(2);
    const events = await eventsOf(customer.customerId);
    expect(events.map((e) => e.type)).toEqual(['CustomerCreated', 'CustomerUpdated']);
    expect(events[1]?.event_id).toBe(winner?.eventId);
    expect(await customerRow(customer.customerId)).toEqual({
      email: customer.email,
      name: winner?.customer.name,
      version: 2,
    });
    // The losers are told where the customer is now.
    expect(conflicts[0]?.errors?.[0]?.extensions?.currentSequence).toBe(2);
  });

  it('a retry with the same Idempotency-Key and input returns the first result and writes nothing', async () => {
    const customer = await createCustomer(url, 'idem');
    const key = randomUUID();
    const input = { id: customer.customerId, name: 'Once Only' };
    const first = await updateOk(input, { 'Idempotency-Key': key });
    const again = await updateOk(input, { 'Idempotency-Key': key });
    expect(again).toEqual(first);
    expect(await eventsOf(customer.customerId)).toHaveLength(2);
    expect(await customerRow(customer.customerId)).toMatchObject({ version: 2 });

    // Without the key, the same input is a new request: it changes nothing, so it is refused.
    expect(codeOf(await update(input))).toBe('BAD_USER_INPUT');

    // The same key with another input is a client bug: CONFLICT, and nothing written.
    const reused = await update(
      { id: customer.customerId, name: 'Something Else' },
      { 'Idempotency-Key': key },
    );
    expect(codeOf(reused)).toBe('CONFLICT');
    expect(reused.errors?.[0]?.extensions?.reason).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(await eventsOf(customer.customerId)).toHaveLength(2);
    expect(await customerRow(customer.customerId)).toMatchObject({ name: 'Once Only', version: 2 });
  });
});
