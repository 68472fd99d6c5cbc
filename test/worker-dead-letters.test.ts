import type { ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CustomerCreatedPayload } from '../src/customers/events.js';
import { welcomeEmail } from '../src/customers/handlers.js';
import { type Handler, PermanentFailure } from '../src/outbox/handler.js';
import { type RunningService, startService } from '../src/service.js';
import { connectTestBroker, sameProperties, type TestBroker } from './support/amqp.js';
import { createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { graphql, stopAndClean, testConfig, testLogger } from './support/service.js';
import { waitFor } from './support/wait.js';

/**
 * The worker's dead letters through the API: a poison message parked, listed, fixed and
 * requeued, handled once; a copy left twice by a cut-off move is listed and handled once; the
 * operations are closed without the admin token.
 */

const ADMIN_TOKEN = 'test-admin-token-0123456789';
const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };

/** Names whose welcome e-mail fails for good, until the test "fixes" the handler. */
const poisoned = new Set<string>();
const poisonous: Handler<CustomerCreatedPayload> = {
  name: 'welcome-email',
  payload: welcomeEmail.payload,
  async handle(tx, event, helpers) {
    if (poisoned.has(event.payload.name)) throw new PermanentFailure('mail template missing');
    await welcomeEmail.handle(tx, event, helpers);
  },
};

let db: TestDatabase;
let broker: TestBroker;
let service: RunningService;
let url: string;

interface Letter {
  id: string;
  eventId: string | null;
  type: string | null;
  aggregateType: string | null;
  aggregateId: string | null;
  reason: string | null;
  parkedAt: string | null;
  attempts: number;
}

const LIST =
  '{ workerDeadLetters(first: 50) { id eventId type aggregateType aggregateId reason parkedAt attempts } }';
const REQUEUE = 'mutation($ids: [ID!]) { requeueWorkerDeadLetters(ids: $ids) { ids } }';

async function list(): Promise<Letter[]> {
  const response = await graphql<{ workerDeadLetters: Letter[] }>(url, LIST, {}, admin);
  expect(response.errors).toBeUndefined();
  return response.data?.workerDeadLetters ?? [];
}

async function requeue(ids?: string[]): Promise<string[]> {
  const response = await graphql<{ requeueWorkerDeadLetters: { ids: string[] } }>(
    url,
    REQUEUE,
    { ids },
    admin,
  );
  expect(response.errors).toBeUndefined();
  return response.data?.requeueWorkerDeadLetters.ids ?? [];
}

const count = async (query: string, params: unknown[]) =>
  Number((await db.query<{ n: number | string }>(query, params))[0]?.n);
const welcomeEmails = (customerId: string) =>
  count('SELECT COUNT(*) AS n FROM welcome_emails WHERE customer_id = ?', [customerId]);
const handledRows = (eventId: string) =>
  count('SELECT COUNT(*) AS n FROM handled_events WHERE event_id = ?', [eventId]);

/** A customer whose CustomerCreated the worker parks; returns it once it is in the dead-letter queue. */
async function parkedCustomer(label: string) {
  poisoned.add(`Test ${label}`);
  const customer = await createCustomer(url, label);
  const letter = await waitFor(`${label}'s event to be parked`, async () =>
    (await list()).find((l) => l.eventId === customer.eventId),
  );
  return { customer, letter };
}

beforeAll(async () => {
  db = await createTestDatabase('worker_dead_letters');
  broker = await connectTestBroker();
  service = await startService(testConfig(db.url, { ROLES: 'app,relay,worker', ADMIN_TOKEN }), testLogger(), {
    handlers: { CustomerCreated: poisonous },
  });
  url = service.app?.url as string;
  await waitFor(
    'the worker to consume',
    async () => (await broker.consumerCount(service.topology.workerQueue)) > 0,
  );
});

afterAll(async () => {
  await stopAndClean(service);
  await broker?.close();
  await db?.drop();
});

describe('the worker dead letters in the API', () => {
  it('a parked message is listed, requeued after the fix, and handled once', async () => {
    const before = Date.now();
    const { customer, letter } = await parkedCustomer('poison');
    expect(letter).toMatchObject({
      eventId: customer.eventId,
      type: 'CustomerCreated',
      aggregateType: 'Customer',
      aggregateId: customer.customerId,
      attempts: 1,
    });
    expect(letter.reason).toContain('mail template missing');
    expect(Date.parse(letter.parkedAt as string)).toBeGreaterThanOrEqual(before - 1000);
    // Listing moves each message and puts it back: a second listing sees the same, once.
    expect((await list()).filter((l) => l.id === letter.id)).toHaveLength(1);
    const stats = await graphql<{ outboxStats: { workerDeadLetters: number } }>(
      url,
      '{ outboxStats { workerDeadLetters } }',
    );
    expect(stats.data?.outboxStats.workerDeadLetters).toBe(1);
    expect(await welcomeEmails(customer.customerId)).toBe(0);

    poisoned.delete(customer.name);
    expect(await requeue([letter.id])).toEqual([letter.id]);
    await waitFor(
      'the requeued event to be handled',
      async () => (await welcomeEmails(customer.customerId)) === 1,
    );
    expect(await list()).toEqual([]);
    expect(await requeue([letter.id])).toEqual([]);
    expect(await handledRows(customer.eventId)).toBe(1);
    expect(await broker.messageCount(service.topology.workerDeadLetterQueue)).toBe(0);
  });

  it('requeueing some leaves the others parked, listed oldest first', async () => {
    const first = await parkedCustomer('keep-one');
    const second = await parkedCustomer('move-two');
    const third = await parkedCustomer('keep-three');
    poisoned.delete(second.customer.name);
    expect(await requeue([second.letter.id])).toEqual([second.letter.id]);
    await waitFor(
      'the second to be handled',
      async () => (await welcomeEmails(second.customer.customerId)) === 1,
    );
    expect((await list()).map((l) => l.id)).toEqual([first.letter.id, third.letter.id]);

    poisoned.delete(first.customer.name);
    poisoned.delete(third.customer.name);
    expect((await requeue()).sort()).toEqual([first.letter.id, third.letter.id].sort());
    await waitFor(
      'both to be handled',
      async () =>
        (await welcomeEmails(first.customer.customerId)) === 1 &&
        (await welcomeEmails(third.customer.customerId)) === 1,
    );
    expect(await list()).toEqual([]);
  });

  it('a message left twice by a cut-off move is listed once and handled once', async () => {
    const { customer, letter } = await parkedCustomer('twice');
    // What a pass cut off between the copy's confirm and the original's ack leaves behind.
    const [parked] = await broker.drain(service.topology.workerDeadLetterQueue);
    if (!parked) throw new Error('nothing parked');
    const copy = parked as unknown as ConsumeMessage;
    for (let i = 0; i < 2; i++) {
      await broker.sendToQueue(service.topology.workerDeadLetterQueue, parked.content, sameProperties(copy));
    }
    expect((await list()).map((l) => l.id)).toEqual([letter.id]);
    expect(await broker.messageCount(service.topology.workerDeadLetterQueue)).toBe(1);

    // Both copies requeued (one by a pass, the other as if a pass was cut off after its confirm).
    await broker.sendToQueue(service.topology.workerDeadLetterQueue, parked.content, sameProperties(copy));
    poisoned.delete(customer.name);
    await broker.sendToQueue(service.topology.workerQueue, parked.content, {
      ...sameProperties(copy),
      headers: {},
    });
    expect(await requeue()).toEqual([letter.id]);
    await waitFor('the event to be handled', async () => (await welcomeEmails(customer.customerId)) === 1);
    await waitFor(
      'the queue to empty',
      async () => (await broker.messageCount(service.topology.workerQueue)) === 0,
    );
    expect(await welcomeEmails(customer.customerId)).toBe(1);
    expect(await handledRows(customer.eventId)).toBe(1);
  });

  it('without the admin token: FORBIDDEN, and nothing moves', async () => {
    const { letter } = await parkedCustomer('forbidden');
    const refused: Record<string, string>[] = [{}, { Authorization: 'Bearer not-the-token-at-all' }];
    for (const headers of refused) {
      const listed = await graphql(url, LIST, {}, headers);
      expect(listed.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
      const moved = await graphql(url, REQUEUE, {}, headers);
      expect(moved.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    }
    expect((await list()).map((l) => l.id)).toContain(letter.id);
  });
});
