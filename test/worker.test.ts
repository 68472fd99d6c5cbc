import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { Config } from '../src/config/index.js';
import type { CustomerCreatedPayload } from '../src/customers/events.js';
import { CUSTOMER_HANDLERS, welcomeEmail } from '../src/customers/handlers.js';
import type { Handler } from '../src/outbox/handler.js';
import { type RunningService, type ServiceOptions, startService } from '../src/service.js';
import { canonicalJson } from '../src/support/json.js';
import { connectTestBroker, sameProperties, type TestBroker } from './support/amqp.js';
import { brokerObjectsOf, deleteBrokerObjects } from './support/broker.js';
import { createCustomer, customerCreatedEnvelope, renameCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { graphql, testConfig, testLogger } from './support/service.js';
import { waitFor } from './support/wait.js';

let db: TestDatabase;
let broker: TestBroker;
const running: RunningService[] = [];
/** Every exchange and queue a service of this file declared, deleted in afterAll. */
const brokerObjects = { queues: [] as string[], exchanges: [] as string[] };

interface Started {
  readonly service: RunningService;
  readonly config: Config;
  readonly url: string;
  readonly workerQueue: string;
  readonly retryQueue: string;
  readonly deadQueue: string;
  readonly exchange: string;
}

/** A service with the given roles on its own exchange and worker queues (fresh names per call). */
async function start(env: Record<string, string> = {}, options: ServiceOptions = {}): Promise<Started> {
  const config = testConfig(db.url, { ROLES: 'app,relay,worker', ...env });
  const queue = config.worker.queue;
  const objects = brokerObjectsOf(config.exchange, queue);
  brokerObjects.queues.push(...objects.queues);
  brokerObjects.exchanges.push(...objects.exchanges);
  const service = await startService(config, testLogger(), options);
  running.push(service);
  // startService returns before the worker's channel is set up: wait until it consumes, so
  // the exchange, its queues and bindings exist before the test publishes anything.
  await waitFor('the worker to consume', async () => (await broker.consumerCount(queue)) > 0);
  return {
    service,
    config,
    url: service.app?.url ?? '',
    workerQueue: service.topology.workerQueue,
    retryQueue: service.topology.workerRetryQueue,
    deadQueue: service.topology.workerDeadLetterQueue,
    exchange: service.topology.exchange,
  };
}

/** worker_messages_total by outcome, as this service counted them. */
async function outcomes(service: RunningService): Promise<Record<string, number>> {
  const { values } = await service.metrics.workerHandled.get();
  return Object.fromEntries(values.map((v) => [String(v.labels.outcome), v.value]));
}

async function count(sql: string, params: unknown[]): Promise<number> {
  const [row] = await db.query<{ n: number | string }>(sql, params);
  return Number(row?.n ?? Number.NaN);
}

const inboxRows = (messageId: string) =>
  count('SELECT COUNT(*) AS n FROM inbox WHERE message_id = ?', [messageId]);
const welcomeEmails = (customerId: string) =>
  count('SELECT COUNT(*) AS n FROM welcome_emails WHERE customer_id = ?', [customerId]);
/** Rows in the history of handled events (what customerEvents and onCustomerEvent read). */
const historyRows = (customerId: string) =>
  count("SELECT COUNT(*) AS n FROM handled_events WHERE aggregate_type = 'Customer' AND aggregate_id = ?", [
    customerId,
  ]);

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

/** Publishes a stored outbox event to `exchange` as a relay would, without marking it published. */
async function publishStoredEvent(exchange: string, eventId: string): Promise<void> {
  const [row] = await db.query<Record<string, unknown>>(
    'SELECT event_id, type, aggregate_type, aggregate_id, sequence, occurred_at, payload FROM outbox WHERE event_id = ?',
    [eventId],
  );
  if (!row) throw new Error(`no outbox row ${eventId}`);
  const envelope = {
    eventId: row.event_id,
    type: row.type,
    aggregateType: row.aggregate_type,
    aggregateId: row.aggregate_id,
    sequence: row.sequence,
    occurredAt: (row.occurred_at as Date).toISOString(),
    payload: typeof row.payload === 'string' ? JSON.parse(row.payload) : row.payload,
  };
  const routingKey = row.type === 'CustomerCreated' ? 'customer.created' : 'customer.updated';
  await broker.publish(exchange, routingKey, json(envelope), {
    messageId: eventId,
    type: String(row.type),
    contentType: 'application/json',
    persistent: true,
  });
}

/** A handler that counts its calls, fails the first `failures` of them, then does the real work. */
function flakyHandler(name: string, failures: number, fault: () => Error = () => new Error('boom')) {
  const calls: number[] = [];
  const handler: Handler<CustomerCreatedPayload> = {
    name,
    payload: welcomeEmail.payload,
    async handle(tx, event, helpers) {
      calls.push(performance.now());
      if (calls.length <= failures) throw fault();
      await welcomeEmail.handle(tx, event, helpers);
    },
  };
  return { handler, calls };
}

beforeAll(async () => {
  db = await createTestDatabase('worker');
  broker = await connectTestBroker();
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
});

afterAll(async () => {
  await broker?.close();
  await db?.drop();
  await deleteBrokerObjects(brokerObjects);
});

describe('worker: idempotent receiver', () => {
  it('the same message published four times: one inbox row, one e-mail, one history row', async () => {
    const { service, url, exchange, workerQueue } = await start();
    // The message exactly as the relay put it on the exchange: body bytes and properties.
    const captured = await broker.capture(exchange, 'customer.created');
    const customer = await createCustomer(url, 'dup');

    const original = await waitFor('the CustomerCreated message on the exchange', () =>
      captured.find((m) => m.properties.messageId === customer.eventId),
    );
    await waitFor('the first delivery to be handled', async () => (await outcomes(service)).handled === 1);
    expect(await welcomeEmails(customer.customerId)).toBe(1);

    for (let i = 0; i < 3; i++) {
      await broker.publish(exchange, original.fields.routingKey, original.content, sameProperties(original));
    }

    await waitFor('the three copies to be settled as duplicates', async () => {
      const o = await outcomes(service);
      return o.duplicate === 3 && (await broker.messageCount(workerQueue)) === 0;
    });
    // The copies really went through the exchange: the bound test queue saw four in all.
    expect(captured.filter((m) => m.properties.messageId === customer.eventId)).toHaveLength(4);
    expect(await outcomes(service)).toEqual({ handled: 1, duplicate: 3 });
    expect(
      await count('SELECT COUNT(*) AS n FROM inbox WHERE consumer = ? AND message_id = ?', [
        workerQueue,
        customer.eventId,
      ]),
    ).toBe(1);
    expect(await welcomeEmails(customer.customerId)).toBe(1);
    expect(await historyRows(customer.customerId)).toBe(1);
    const [email] = await db.query<{ event_id: string; recipient: string }>(
      'SELECT event_id, recipient FROM welcome_emails WHERE customer_id = ?',
      [customer.customerId],
    );
    expect(email).toEqual({ event_id: customer.eventId, recipient: customer.email });
  });

  it('a late copy of a handled message whose outbox row retention pruned is acked as a duplicate, known from the inbox', async () => {
    const { service, url, exchange, workerQueue } = await start();
    const captured = await broker.capture(exchange, 'customer.created');
    const customer = await createCustomer(url, 'late-copy');
    const original = await waitFor('the CustomerCreated message on the exchange', () =>
      captured.find((m) => m.properties.messageId === customer.eventId),
    );
    await waitFor('the message to be handled', async () => (await outcomes(service)).handled === 1);
    // What retention does after OUTBOX_RETENTION: the published row is gone; the inbox row stays.
    await db.query('DELETE FROM outbox WHERE event_id = ?', [customer.eventId]);

    await broker.publish(exchange, original.fields.routingKey, original.content, sameProperties(original));

    await waitFor('the copy to be settled', async () => {
      const o = await outcomes(service);
      return o.duplicate === 1 && (await broker.messageCount(workerQueue)) === 0;
    });
    expect(await outcomes(service)).toEqual({ handled: 1, duplicate: 1 });
    expect(await broker.messageCount(service.topology.workerDeadLetterQueue)).toBe(0);
    expect(await welcomeEmails(customer.customerId)).toBe(1);
    expect(await historyRows(customer.customerId)).toBe(1);
  });

  it("a customer's second event that arrives before its first waits, and then both are handled, in order", async () => {
    // No relay: the test publishes the stored events itself, the second first.
    const { service, url, exchange } = await start({ ROLES: 'app,worker', WORKER_ORDER_WAIT_MS: '100' });
    const customer = await createCustomer(url, 'early-second');
    const second = await renameCustomer(url, customer.customerId, 'Renamed before handled');
    const publishStored = (eventId: string) => publishStoredEvent(exchange, eventId);

    await publishStored(second);
    await waitFor(
      'the second event to wait for the first',
      async () => ((await outcomes(service)).waiting ?? 0) >= 1,
    );
    expect(await historyRows(customer.customerId)).toBe(0);
    await publishStored(customer.eventId);

    await waitFor('both events in the history', async () => (await historyRows(customer.customerId)) === 2);
    const rows = await db.query<{ sequence: number; event_id: string }>(
      "SELECT sequence, event_id FROM handled_events WHERE aggregate_type = 'Customer' AND aggregate_id = ? ORDER BY position",
      [customer.customerId],
    );
    expect(rows).toEqual([
      { sequence: 1, event_id: customer.eventId },
      { sequence: 2, event_id: second },
    ]);
    expect(await welcomeEmails(customer.customerId)).toBe(1);
    expect((await outcomes(service)).duplicate ?? 0).toBe(0);
    // Published by hand, so marked by hand: the next test's relay must not send them again.
    await db.query('UPDATE outbox SET published_at = NOW(3) WHERE event_id IN (?, ?)', [
      customer.eventId,
      second,
    ]);
  });

  it('a stored CustomerCreated whose customer row is gone is parked with the reason, and nothing of it is written', async () => {
    // The welcome e-mail reads the customer's row and finds none: a PermanentFailure.
    const { handler, calls } = flakyHandler('welcome-email', 0);
    const { service, url, exchange, deadQueue } = await start(
      { ROLES: 'app,worker' },
      { handlers: { CustomerCreated: handler } },
    );
    const customer = await createCustomer(url, 'gone');
    await db.query('DELETE FROM customers WHERE id = ?', [customer.customerId]);
    await publishStoredEvent(exchange, customer.eventId);
    // Published by hand, so marked by hand: the next test's relay must not send it again.
    await db.query('UPDATE outbox SET published_at = NOW(3) WHERE event_id = ?', [customer.eventId]);

    await waitFor('the message to be parked', async () => (await outcomes(service)).parked === 1);
    const [parked] = await waitFor('the dead-letter queue to hold it', async () => {
      const drained = await broker.drain(deadQueue);
      return drained.length > 0 ? drained : undefined;
    });
    expect(parked?.properties.messageId).toBe(customer.eventId);
    expect(String(parked?.properties.headers?.['x-last-error'])).toBe(
      `PermanentFailure: CustomerCreated for unknown customer ${customer.customerId}`,
    );
    expect(await outcomes(service)).toEqual({ parked: 1 });
    // Parked at its first attempt, never retried.
    expect(calls).toHaveLength(1);
    expect(await inboxRows(customer.eventId)).toBe(0);
    expect(await welcomeEmails(customer.customerId)).toBe(0);
    expect(await historyRows(customer.customerId)).toBe(0);
    // Only the parking's own mark: the event counts as passed, so later ones are not held behind it.
    const progress = await db.query<{ last_sequence: number }>(
      "SELECT last_sequence FROM worker_progress WHERE aggregate_type = 'Customer' AND aggregate_id = ?",
      [customer.customerId],
    );
    expect(progress).toEqual([{ last_sequence: 1 }]);
  });

  it('a copy of a handled first event is a duplicate even when its handler now fails', async () => {
    // Deferring, the handler runs before anything looks for a duplicate; its failure must not
    // turn a redelivery into a retry.
    let calls = 0;
    const handler: Handler<CustomerCreatedPayload> = {
      name: 'welcome-email',
      payload: welcomeEmail.payload,
      async handle(tx, event, helpers) {
        calls++;
        if (calls > 1) throw new Error('the mail server is down now');
        await welcomeEmail.handle(tx, event, helpers);
      },
    };
    const { service, url, exchange, workerQueue, retryQueue, deadQueue } = await start(
      {},
      { handlers: { CustomerCreated: handler } },
    );
    const captured = await broker.capture(exchange, 'customer.created');
    const customer = await createCustomer(url, 'copy-fails');
    const original = await waitFor('the CustomerCreated message on the exchange', () =>
      captured.find((m) => m.properties.messageId === customer.eventId),
    );
    await waitFor('the first delivery to be handled', async () => (await outcomes(service)).handled === 1);

    await broker.publish(exchange, original.fields.routingKey, original.content, sameProperties(original));
    await waitFor('the copy to be settled', async () => {
      const o = await outcomes(service);
      return o.duplicate === 1 && (await broker.messageCount(workerQueue)) === 0;
    });
    expect(await outcomes(service)).toEqual({ handled: 1, duplicate: 1 });
    expect(calls).toBe(2);
    expect(await broker.messageCount(retryQueue)).toBe(0);
    expect(await broker.messageCount(deadQueue)).toBe(0);
    expect(await welcomeEmails(customer.customerId)).toBe(1);
  });

  it.each([
    ['lets it fail', false],
    ['swallows its failure', true],
  ])(
    "a first event whose handler appends a follow-up (and %s), arriving after its successor, is handled: the deferred rows' conflict sends it down the statement-by-statement path",
    async (_, swallow) => {
      // The follow-up's append sends the deferred progress and inbox rows early (it reads the
      // outbox); the successor already created the progress row, so they fail there, inside the
      // handler, not at the COMMIT.
      const notes: string[] = [];
      const noted: Handler<{ customerId: string }> = {
        name: 'note',
        payload: z.object({ customerId: z.string() }),
        async handle(_tx, event) {
          notes.push(event.payload.customerId);
        },
      };
      const appending: Handler<CustomerCreatedPayload> = {
        name: 'welcome-email',
        payload: welcomeEmail.payload,
        async handle(tx, event, helpers) {
          await welcomeEmail.handle(tx, event, helpers);
          const emitted = helpers.emit({
            eventId: randomUUID(),
            type: 'CustomerNoted',
            aggregateType: 'Note',
            aggregateId: event.aggregateId,
            sequence: 2,
            occurredAt: new Date(),
            payload: { customerId: event.aggregateId },
            headers: {},
          });
          // Even a handler that catches the error cannot commit without the rows that failed.
          if (swallow) await emitted.catch(() => {});
          else await emitted;
        },
      };
      const { service, url, exchange, retryQueue, deadQueue } = await start(
        { ROLES: 'app,worker', WORKER_ORDER_WAIT_MS: '100' },
        { handlers: { ...CUSTOMER_HANDLERS, CustomerCreated: appending, CustomerNoted: noted } },
      );
      const customer = await createCustomer(url, 'appends');
      const second = await renameCustomer(url, customer.customerId, 'Renamed before handled');
      await publishStoredEvent(exchange, second);
      await waitFor(
        'the second event to wait for the first',
        async () => ((await outcomes(service)).waiting ?? 0) >= 1,
      );
      await publishStoredEvent(exchange, customer.eventId);
      // Published by hand, so marked by hand (the follow-up too): no later relay sends them.
      await db.query('UPDATE outbox SET published_at = NOW(3) WHERE event_id IN (?, ?)', [
        customer.eventId,
        second,
      ]);

      await waitFor('both events in the history', async () => (await historyRows(customer.customerId)) === 2);
      const o = await outcomes(service);
      expect(o.retried ?? 0).toBe(0);
      expect(o.parked ?? 0).toBe(0);
      expect(await broker.messageCount(retryQueue)).toBe(0);
      expect(await broker.messageCount(deadQueue)).toBe(0);
      expect(await welcomeEmails(customer.customerId)).toBe(1);
      expect(await inboxRows(customer.eventId)).toBe(1);
      const [followUp] = await db.query<{ n: number | string }>(
        "SELECT COUNT(*) AS n FROM outbox WHERE aggregate_type = 'Note' AND aggregate_id = ?",
        [customer.customerId],
      );
      expect(Number(followUp?.n)).toBe(1);
      await db.query("UPDATE outbox SET published_at = NOW(3) WHERE aggregate_type = 'Note'");
    },
  );

  it("a create's event, handed to the relay in its process, is the stored one, with the id the database gave the customer", async () => {
    // The create's one round trip: the outbox row takes the customer's id from LAST_INSERT_ID()
    // and the process builds the same event once the id is known (writer.appendWithInsert). The
    // lease outlasts the test's wait: only the hand-off can have published the row.
    const { service, url, exchange } = await start({ RELAY_LEASE_MS: '45000' });
    const captured = await broker.capture(exchange, 'customer.created');
    const name = 'Zoë "Quote" \\ O\'Brien 😀';
    const response = await graphql<{ createCustomer: { eventId: string; customer: { id: string } } }>(
      url,
      'mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId customer { id } } }',
      { input: { email: `zoe.${randomUUID()}@example.com`, name } },
    );
    const created = response.data?.createCustomer;
    expect(response.errors).toBeUndefined();
    const message = await waitFor('the CustomerCreated message on the exchange', () =>
      captured.find((m) => m.properties.messageId === created?.eventId),
    );
    const [row] = await db.query<{ aggregate_id: string; payload: string }>(
      'SELECT aggregate_id, CAST(payload AS CHAR) AS payload FROM outbox WHERE event_id = ?',
      [created?.eventId],
    );
    expect(row?.aggregate_id).toBe(created?.customer.id);
    const body = message.content.toString('utf8');
    // MySQL 8 keeps JSON in a form of its own, so the comparison is the worker's: canonical JSON.
    expect(canonicalJson(JSON.parse(body).payload)).toBe(canonicalJson(JSON.parse(String(row?.payload))));
    const envelope = JSON.parse(body) as {
      aggregateId: string;
      payload: { customerId: string; name: string };
    };
    expect(envelope.aggregateId).toBe(created?.customer.id);
    expect(envelope.payload.customerId).toBe(created?.customer.id);
    expect(envelope.payload.name).toBe(name);
    await waitFor('the event to be handled', async () => (await outcomes(service)).handled === 1);
    expect(await welcomeEmails(String(created?.customer.id))).toBe(1);
  });

  it('a message redelivered ten times is parked before RabbitMQ 4 would drop it at its delivery limit', async () => {
    const { service, url, workerQueue, deadQueue } = await start();
    const customer = await createCustomer(url, 'redelivered');
    await waitFor('the customer to be handled', async () => (await welcomeEmails(customer.customerId)) === 1);
    const messageId = randomUUID();
    // What a quorum queue's header says of a message handed out ten times before.
    await broker.sendToQueue(
      workerQueue,
      json(
        customerCreatedEnvelope(
          { customerId: customer.customerId, email: customer.email, name: 'X' },
          messageId,
        ),
      ),
      { messageId, contentType: 'application/json', persistent: true, headers: { 'x-delivery-count': 10 } },
    );
    await waitFor('the message to be parked', async () => (await outcomes(service)).parked === 1);
    const [parked] = await broker.drain(deadQueue);
    expect(parked?.properties.messageId).toBe(messageId);
    expect(String(parked?.properties.headers?.['x-last-error'])).toMatch(
      /^PermanentFailure: redelivered 10 times/,
    );
    expect(await inboxRows(messageId)).toBe(0);
  });

  it('a malformed message is parked at once and the worker keeps consuming', async () => {
    const { service, url, exchange, workerQueue, deadQueue, retryQueue } = await start();
    const ids = {
      badJson: randomUUID(),
      unknownType: randomUUID(),
      missingFields: randomUUID(),
      idMismatch: randomUUID(),
      unknownCustomer: randomUUID(),
    };
    const sent = new Map<string, Buffer>([
      [ids.badJson, Buffer.from('{"eventId": nope')],
      [
        ids.unknownType,
        json({
          ...customerCreatedEnvelope({ customerId: '1', email: 'x@example.com', name: 'X' }, ids.unknownType),
          type: 'CustomerDeleted',
        }),
      ],
      [ids.missingFields, json({ eventId: ids.missingFields, type: 'CustomerCreated' })],
      [
        ids.idMismatch,
        json(customerCreatedEnvelope({ customerId: '1', email: 'x@example.com', name: 'X' }, randomUUID())),
      ],
      [
        ids.unknownCustomer,
        json(
          customerCreatedEnvelope(
            { customerId: '99999999', email: 'x@example.com', name: 'X' },
            ids.unknownCustomer,
          ),
        ),
      ],
    ]);
    for (const [messageId, content] of sent) {
      const options = { messageId, contentType: 'application/json', persistent: true };
      // One through the exchange as a relay would send it, the others straight to the queue.
      if (messageId === ids.unknownCustomer)
        await broker.publish(exchange, 'customer.created', content, options);
      else await broker.sendToQueue(workerQueue, content, options);
    }

    await waitFor('all five to be parked', async () => (await outcomes(service)).parked === 5);
    await waitFor(
      'the dead-letter queue to hold them',
      async () => (await broker.messageCount(deadQueue)) === 5,
    );
    expect(await broker.messageCount(retryQueue)).toBe(0);

    const parked = await broker.drain(deadQueue);
    const byId = new Map(parked.map((m) => [String(m.properties.messageId), m]));
    expect(new Set(byId.keys())).toEqual(new Set(sent.keys()));
    const lastError = (id: string) => String(byId.get(id)?.properties.headers?.['x-last-error']);
    expect(lastError(ids.badJson)).toBe('PermanentFailure: body is not JSON');
    expect(lastError(ids.unknownType)).toBe('PermanentFailure: no handler for event type "CustomerDeleted"');
    expect(lastError(ids.missingFields)).toMatch(/^PermanentFailure: envelope (aggregateType|aggregateId)/);
    expect(lastError(ids.idMismatch)).toBe('PermanentFailure: messageId does not match the envelope eventId');
    // The worker trusts only events the database holds: a made-up one is parked unread.
    expect(lastError(ids.unknownCustomer)).toMatch(/^PermanentFailure: no stored event with this id/);
    for (const [id, content] of sent) {
      const message = byId.get(id);
      // Parked on the first delivery (no retries for what retrying cannot fix), body untouched.
      expect(message?.properties.headers?.['x-attempts']).toBe(1);
      expect(message?.content.equals(content)).toBe(true);
      // The failed transaction left no inbox row behind.
      expect(await inboxRows(id)).toBe(0);
    }

    // The worker is still consuming: a valid customer created afterwards gets its e-mail.
    const customer = await createCustomer(url, 'after-poison');
    await waitFor(
      'the valid customer to be handled',
      async () => (await welcomeEmails(customer.customerId)) === 1,
    );
    expect(await inboxRows(customer.eventId)).toBe(1);
    expect(await outcomes(service)).toEqual({ parked: 5, handled: 1 });
    expect(await broker.messageCount(workerQueue)).toBe(0);
  });

  it('a failing handler is retried after the retry delay, then parked with x-attempts = WORKER_MAX_ATTEMPTS', async () => {
    const { handler, calls } = flakyHandler('always-fails', Number.POSITIVE_INFINITY);
    const { service, url, deadQueue, retryQueue, workerQueue } = await start(
      { WORKER_MAX_ATTEMPTS: '3', WORKER_RETRY_DELAY_MS: '100' },
      { handlers: { CustomerCreated: handler } },
    );
    const customer = await createCustomer(url, 'always-fails');

    await waitFor('the message to be parked', async () => (await outcomes(service)).parked === 1);
    await waitFor(
      'the dead-letter queue to hold it',
      async () => (await broker.messageCount(deadQueue)) === 1,
    );
    const [dead, ...more] = await broker.drain(deadQueue);
    expect(more).toHaveLength(0);
    expect(dead?.properties.messageId).toBe(customer.eventId);
    expect(dead?.properties.headers?.['x-attempts']).toBe(3);
    expect(dead?.properties.headers?.['x-last-error']).toBe('Error: boom');
    expect(JSON.parse(String(dead?.content))).toMatchObject({
      eventId: customer.eventId,
      type: 'CustomerCreated',
      aggregateId: customer.customerId,
    });

    expect(calls).toHaveLength(3);
    // Each retry waited out WORKER_RETRY_DELAY_MS in the retry queue.
    expect((calls[1] as number) - (calls[0] as number)).toBeGreaterThanOrEqual(100);
    expect((calls[2] as number) - (calls[1] as number)).toBeGreaterThanOrEqual(100);
    expect(await outcomes(service)).toEqual({ retried: 2, parked: 1 });
    expect(await welcomeEmails(customer.customerId)).toBe(0);
    expect(await historyRows(customer.customerId)).toBe(0);
    expect(await inboxRows(customer.eventId)).toBe(0);
    expect(await broker.messageCount(retryQueue)).toBe(0);
    expect(await broker.messageCount(workerQueue)).toBe(0);
  });

  it('a handler that fails twice then succeeds: the message is handled once, after two retries', async () => {
    const { handler, calls } = flakyHandler('flaky-welcome-email', 2);
    const { service, url, deadQueue } = await start(
      { WORKER_MAX_ATTEMPTS: '3', WORKER_RETRY_DELAY_MS: '100' },
      { handlers: { CustomerCreated: handler } },
    );
    const customer = await createCustomer(url, 'flaky');

    await waitFor('the history row', async () => (await historyRows(customer.customerId)) === 1);
    await waitFor('the success to be counted', async () => (await outcomes(service)).handled === 1);
    expect(calls).toHaveLength(3);
    expect(await outcomes(service)).toEqual({ retried: 2, handled: 1 });
    expect(await welcomeEmails(customer.customerId)).toBe(1);
    expect(await inboxRows(customer.eventId)).toBe(1);
    expect(await broker.messageCount(deadQueue)).toBe(0);
    const [row] = await db.query<{ event_id: string; handler: string; sequence: number }>(
      'SELECT event_id, handler, sequence FROM handled_events WHERE aggregate_id = ?',
      [customer.customerId],
    );
    expect(row).toEqual({ event_id: customer.eventId, handler: 'flaky-welcome-email', sequence: 1 });
  });

  it('a lost database connection is retried without counting attempts: never parked for an outage', async () => {
    // The error mysql2 raises when the server goes away mid-transaction.
    const connectionLost = () =>
      Object.assign(new Error('Connection lost: The server closed the connection.'), {
        code: 'PROTOCOL_CONNECTION_LOST',
      });
    const { handler, calls } = flakyHandler('outage-welcome-email', 3, connectionLost);
    const { service, url, deadQueue } = await start(
      { WORKER_MAX_ATTEMPTS: '2', WORKER_RETRY_DELAY_MS: '100' },
      { handlers: { CustomerCreated: handler } },
    );
    const customer = await createCustomer(url, 'outage');

    await waitFor('the history row', async () => (await historyRows(customer.customerId)) === 1);
    // Three failures with a limit of two attempts, and still handled: the outage did not count.
    expect(calls).toHaveLength(4);
    await waitFor('the success to be counted', async () => (await outcomes(service)).handled === 1);
    expect(await outcomes(service)).toEqual({ retried: 3, handled: 1 });
    expect(await welcomeEmails(customer.customerId)).toBe(1);
    expect(await broker.messageCount(deadQueue)).toBe(0);
  });

  it('outboxStats.workerDeadLetters reports the dead-letter queue message count, and null when it cannot be read', async () => {
    const { service, url, workerQueue, deadQueue } = await start();
    const deadLetters = async () =>
      (
        await graphql<{ outboxStats: { workerDeadLetters: number | null } }>(
          url,
          '{ outboxStats { workerDeadLetters } }',
        )
      ).data?.outboxStats.workerDeadLetters;

    expect(await broker.messageCount(deadQueue)).toBe(0);
    expect(await deadLetters()).toBe(0);

    for (let i = 0; i < 2; i++) {
      await broker.sendToQueue(workerQueue, Buffer.from('not json'), { messageId: `junk-${i}` });
    }
    await waitFor('both to be parked', async () => (await outcomes(service)).parked === 2);
    await waitFor(
      'the dead-letter queue to show them',
      async () => (await broker.messageCount(deadQueue)) === 2,
    );
    expect(await deadLetters()).toBe(2);

    await broker.drain(deadQueue);
    expect(await deadLetters()).toBe(0);

    // The broker cannot say (the queue is gone): null, not 0 and not an error.
    await deleteBrokerObjects({ queues: [deadQueue] });
    const response = await graphql<{ outboxStats: { workerDeadLetters: number | null } }>(
      url,
      '{ outboxStats { workerDeadLetters } }',
    );
    expect(response.errors).toBeUndefined();
    expect(response.data?.outboxStats.workerDeadLetters).toBeNull();
  });
});
