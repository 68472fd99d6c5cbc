import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Config } from '../src/config/index.js';
import { encodeHistoryCursor } from '../src/customers/cursor.js';
import { type RunningService, type ServiceOptions, startService } from '../src/service.js';
import { connectTestBroker, sameProperties, type TestBroker } from './support/amqp.js';
import { brokerObjectsOf, deleteBrokerObjects } from './support/broker.js';
import { type CreatedCustomer, createCustomer, customerEvents, renameCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { appendRows, handledRow } from './support/history.js';
import { countRows, INTERNALS } from './support/rows.js';
import { testConfig, testLogger, uniqueSuffix } from './support/service.js';
import {
  connectWs,
  type EventSubscription,
  subscribe,
  subscribeCustomerEvents,
  type WsClient,
} from './support/subscriptions.js';
import { waitFor } from './support/wait.js';

const MAX_BODY_BYTES = 4096;
// customerEvents { edges { node { … } } } is 4 deep.
const MAX_DEPTH = 4;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

let db: TestDatabase;
let broker: TestBroker;
/** The service most tests talk to: all roles, small body and depth limits. */
let main: RunningService;
let url: string;
/** A subscription to every event on `main`, open for the whole file, proven live in beforeAll. */
let watcher: EventSubscription;

const services: RunningService[] = [];
const clients: WsClient[] = [];
const databases: TestDatabase[] = [];
const brokerObjects = { queues: [] as string[], exchanges: [] as string[] };

async function start(
  database: TestDatabase,
  env: Record<string, string>,
  options: ServiceOptions = {},
): Promise<RunningService> {
  const config: Config = testConfig(database.url, env);
  const queue = config.worker.queue;
  const objects = brokerObjectsOf(config.exchange, queue);
  brokerObjects.queues.push(...objects.queues);
  brokerObjects.exchanges.push(...objects.exchanges);
  const service = await startService(config, testLogger(), options);
  services.push(service);
  if (config.roles.includes('worker')) {
    await waitFor('the worker to consume', async () => (await broker.consumerCount(queue)) > 0);
  }
  return service;
}

function client(httpUrl: string, options: Parameters<typeof connectWs>[1] = {}): WsClient {
  const ws = connectWs(httpUrl, options);
  clients.push(ws);
  return ws;
}

/** Creates a customer and waits until the worker has handled its CustomerCreated event. */
async function handledCustomer(label: string): Promise<CreatedCustomer> {
  const customer = await createCustomer(url, label);
  await waitFor(`${label}'s event to be handled`, async () => {
    const events = await customerEvents(url, customer.customerId);
    return events.length > 0;
  });
  return customer;
}

/** The GraphQL errors a subscription's error sink received. */
function graphqlErrors(errors: unknown[]): Array<{ message: string; extensions?: { code?: string } }> {
  return errors.flatMap((e) => (Array.isArray(e) ? e : []));
}

beforeAll(async () => {
  db = await createTestDatabase('subscriptions');
  databases.push(db);
  broker = await connectTestBroker();
  main = await start(db, {
    ROLES: 'app,relay,worker',
    MAX_BODY_BYTES: String(MAX_BODY_BYTES),
    GRAPHQL_MAX_DEPTH: String(MAX_DEPTH),
  });
  url = main.app?.url as string;

  // Live traffic flows once a customer created after subscribing reaches the subscriber.
  watcher = subscribeCustomerEvents(client(url));
  await waitFor(
    'a probe event to reach the watcher',
    async () => {
      const probe = await createCustomer(url, 'probe');
      return waitFor('the probe', () => watcher.count(probe.eventId) === 1, { timeoutMs: 2000 }).catch(
        () => false,
      );
    },
    { timeoutMs: 20_000 },
  );
});

afterAll(async () => {
  await Promise.all(clients.splice(0).map((c) => c.dispose()));
  await Promise.all(services.splice(0).map((s) => s.stop()));
  await broker?.close();
  await Promise.all(databases.map((d) => d.drop()));
  await deleteBrokerObjects(brokerObjects);
});

describe('onCustomerEvent, end to end over the network', () => {
  it('delivers the handled event of a customer created over HTTP, with the mutation ids; a filtered subscription sees only its customer', async () => {
    const other = await handledCustomer('other');
    const ws = client(url);
    const all = subscribeCustomerEvents(ws);
    const onlyOther = subscribeCustomerEvents(ws, other.customerId);
    // The filtered subscription starts with the other customer's history. It was subscribed
    // after the unfiltered one on the same socket, so once it answers both are registered.
    await waitFor('the other customer history', () => onlyOther.events().length === 1);

    const customer = await createCustomer(url, 'e2e');
    const event = await waitFor('the subscriber to receive the new customer event', () =>
      all.events().find((e) => e.eventId === customer.eventId),
    );
    expect(event).toEqual({
      eventId: customer.eventId,
      type: 'CustomerCreated',
      customerId: customer.customerId,
      sequence: 1,
      occurredAt: customer.createdAt,
      handledAt: expect.stringMatching(ISO),
      payload: {
        customerId: customer.customerId,
        email: customer.email,
        name: customer.name,
        createdAt: customer.createdAt,
      },
      cursor: expect.stringMatching(/^[A-Za-z0-9_-]+$/),
    });
    expect(event.occurredAt).toMatch(ISO);
    expect(Date.parse(event.handledAt)).toBeGreaterThanOrEqual(Date.parse(event.occurredAt));
    // The query side tells the same story.
    expect(await customerEvents(url, customer.customerId)).toEqual([event]);

    // A later event of the other customer is the filtered subscription's next one: the new
    // customer's event, dispatched before it, was not passed on.
    const later = await renameCustomer(url, other.customerId, 'Other, renamed');
    await waitFor('the later event on the filtered subscription', () => onlyOther.count(later) === 1);
    expect(onlyOther.events().map((e) => e.eventId)).toEqual([other.eventId, later]);
    expect(onlyOther.events().every((e) => e.customerId === other.customerId)).toBe(true);
    await waitFor('the later event on the unfiltered one', () => all.count(later) === 1);
    expect(all.count(customer.eventId)).toBe(1);
    expect(all.errors).toEqual([]);
    expect(onlyOther.errors).toEqual([]);
  });

  it('gap-free start: subscribing to a customer while its events are being handled delivers its history, then live events, each once and in sequence order', async () => {
    const customer = await handledCustomer('history');
    const RENAMES = 12;
    // Updates keep coming while the subscription starts, so its switch from reading the
    // history to the live fan-out happens in the middle of the stream.
    let renamed = 0;
    const renaming = (async () => {
      for (; renamed < RENAMES; renamed++) {
        await renameCustomer(url, customer.customerId, `History ${renamed}`);
      }
    })();
    await waitFor('a few updates to be written', () => renamed >= 3);
    const ws = client(url);
    const sub = subscribeCustomerEvents(ws, customer.customerId);
    await renaming;

    await waitFor(`all ${RENAMES + 1} events`, () => sub.events().length >= RENAMES + 1);
    // A sentinel after them: anything duplicated would have arrived before it.
    await renameCustomer(url, customer.customerId, 'History sentinel');
    await waitFor('the sentinel', () => sub.events().length >= RENAMES + 2);
    const events = sub.events();
    expect(events.map((e) => e.sequence)).toEqual(Array.from({ length: RENAMES + 2 }, (_, i) => i + 1));
    expect(new Set(events.map((e) => e.eventId)).size).toBe(events.length);
    expect(events.every((e) => e.customerId === customer.customerId)).toBe(true);
    // The query side tells the same story, cursors included.
    expect(await customerEvents(url, customer.customerId)).toEqual(events);
    expect(sub.errors).toEqual([]);
  });

  it('each subscriber gets each handled event once even when the broker delivers the event three times', async () => {
    const capture = await broker.capture(main.topology.exchange, 'customer.created');
    const customer = await createCustomer(url, 'redelivered');
    await waitFor('the watcher to receive the event', () => watcher.count(customer.eventId) === 1);
    const message = await waitFor('the CustomerCreated message on the exchange', () =>
      capture.find((m) => m.properties.messageId === customer.eventId),
    );
    const ws = client(url);
    const filtered = subscribeCustomerEvents(ws, customer.customerId);
    await waitFor('the filtered history', () => filtered.count(customer.eventId) === 1);

    // The very same message (same message id, body and properties) twice more, as a relay that
    // lost its confirms would publish it.
    for (let i = 0; i < 2; i++) {
      await broker.publish(
        main.topology.exchange,
        message.fields.routingKey,
        message.content,
        sameProperties(message),
      );
    }
    const later = await renameCustomer(url, customer.customerId, 'Redelivered, renamed');
    await waitFor('the later event on both', () => watcher.count(later) === 1 && filtered.count(later) === 1);

    // The broker did deliver it three times (the test's own queue, bound like the worker's, shows it)…
    const copies = capture.filter((m) => m.properties.messageId === customer.eventId);
    expect(copies).toHaveLength(3);
    // …the history holds it once…
    const [row] = await db.query<{ n: number }>(
      'SELECT COUNT(*) AS n FROM handled_events WHERE event_id = ?',
      [customer.eventId],
    );
    expect(Number(row?.n)).toBe(1);
    // …and each subscriber saw the event once.
    expect(watcher.count(customer.eventId)).toBe(1);
    expect(filtered.events().map((e) => e.eventId)).toEqual([customer.eventId, later]);
  });
});

describe('the WebSocket side keeps the HTTP rules', () => {
  it('an operation deeper than GRAPHQL_MAX_DEPTH is refused over WebSocket; fragments add no depth', async () => {
    const customer = await handledCustomer('depth');
    const ws = client(url);
    // Fields two deep wrapped in five inline fragments: depth 2, under the limit, and it
    // runs (the history arrives). Fragments are how clients compose, not nesting.
    const wrapped = `subscription($id: ID) { onCustomerEvent(customerId: $id) { ${'... on CustomerEvent { '.repeat(5)}eventId${' }'.repeat(5)} } }`;
    const allowed = subscribe<{ onCustomerEvent: { eventId: string } }>(ws, wrapped, {
      id: customer.customerId,
    });
    // No subscription field has object fields, so real depth is shown with a query: validation
    // (the depth rule) runs before the WebSocket's subscriptions-only rule.
    const refused = subscribe(ws, '{ customer(id: "1") { events { edges { node { eventId } } } } }');

    await waitFor('the refusal', () => refused.errors.length > 0);
    expect(graphqlErrors(refused.errors)).toMatchObject([
      {
        message: `Query depth limit of ${MAX_DEPTH} exceeded: the operation nests fields 5 deep`,
        extensions: { code: 'GRAPHQL_VALIDATION_FAILED' },
      },
    ]);
    await waitFor('the allowed subscription history', () => allowed.results.length === 1);
    expect(allowed.results[0]?.data?.onCustomerEvent.eventId).toBe(customer.eventId);
    expect(refused.results).toEqual([]);
    expect(refused.completed()).toBe(false);
  });

  it('a query or a mutation sent over WebSocket is refused with BAD_REQUEST and writes nothing', async () => {
    const ws = client(url);
    const email = `ws.${uniqueSuffix()}@example.com`;
    const customersBefore = await countRows(db, 'customers');
    const outboxBefore = await countRows(db, 'outbox');
    const mutation = subscribe(
      ws,
      'mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId } }',
      { input: { email, name: 'Over WebSocket' } },
    );
    const query = subscribe(ws, '{ outboxStats { pending } }');

    await waitFor('both refusals', () => mutation.errors.length > 0 && query.errors.length > 0);
    for (const refused of [mutation, query]) {
      expect(graphqlErrors(refused.errors)).toEqual([
        {
          message: 'Only subscriptions are served over WebSocket; send queries and mutations over HTTP',
          extensions: { code: 'BAD_REQUEST' },
        },
      ]);
      expect(refused.results).toEqual([]);
    }
    expect(await db.query('SELECT id FROM customers WHERE email = ?', [email])).toEqual([]);
    // Other tests may be creating customers concurrently only through this file's own calls,
    // which are sequential: the counts are unchanged.
    expect(await countRows(db, 'customers')).toBe(customersBefore);
    expect(await countRows(db, 'outbox')).toBe(outboxBefore);
  });

  it('a WebSocket message larger than MAX_BODY_BYTES closes the socket with 1009; the server keeps serving', async () => {
    const ws = client(url);
    await waitFor('the connection to be acknowledged', () => ws.connected());
    // graphql-ws reports the socket error with console.error (see the report); keep it out of the output.
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => {});
    const padding = `# ${'x'.repeat(MAX_BODY_BYTES)}\n`;
    const big = subscribe(ws, `${padding}subscription { onCustomerEvent { eventId } }`);
    try {
      await waitFor('the socket to close', () => ws.closes.length > 0);
    } finally {
      consoleError.mockRestore();
    }
    expect(ws.closes[0]?.code).toBe(1009);
    expect(big.results).toEqual([]);
    expect(big.errors.some((e) => (e as { code?: number }).code === 1009)).toBe(true);

    // Just under the limit is fine, on a new connection.
    const next = client(url);
    const fits = subscribe<{ onCustomerEvent: { eventId: string } }>(
      next,
      `# ${'x'.repeat(MAX_BODY_BYTES - 400)}\nsubscription($id: ID) { onCustomerEvent(customerId: $id) { eventId } }`,
      { id: (await handledCustomer('fits')).customerId },
    );
    await waitFor('the subscription that fits to run', () => fits.results.length === 1);
    expect(next.closes).toEqual([]);
  });

  it('a subscription with customerId "abc" answers BAD_USER_INPUT naming the argument', async () => {
    const ws = client(url);
    const sub = subscribe(ws, 'subscription { onCustomerEvent(customerId: "abc") { eventId } }');
    await waitFor('the answer', () => sub.completed() || sub.errors.length > 0);
    const errors = [...sub.results.flatMap((r) => r.errors ?? []), ...graphqlErrors(sub.errors)];
    expect(errors).toEqual([
      expect.objectContaining({
        message: 'Not a valid customer id',
        extensions: { code: 'BAD_USER_INPUT', field: 'customerId' },
      }),
    ]);
  });

  it('an internal error in a subscription is masked: no SQL, table names or stack reach the client', async () => {
    // A service whose database loses its history table: reading a customer's history fails.
    const broken = await createTestDatabase('subscriptions_broken');
    databases.push(broken);
    // One row, so that a customer's subscription from the start has history to read (one that
    // starts at the feed's position reads nothing until the feed has read more).
    await appendRows(broken.db, [handledRow('1', 1)]);
    const service = await start(broken, { ROLES: 'app' });
    const ws = client(service.app?.url as string);
    // The feed knows where the history ends once it can judge a cursor: one past the end is refused.
    const ahead = subscribe(
      ws,
      'subscription($after: String) { onCustomerEvent(after: $after) { eventId } }',
      {
        after: encodeHistoryCursor(2),
      },
    );
    await waitFor('the feed to know the head', () => ahead.completed() || ahead.errors.length > 0);
    expect([...ahead.results.flatMap((r) => r.errors ?? []), ...graphqlErrors(ahead.errors)]).toEqual([
      expect.objectContaining({ extensions: { code: 'BAD_USER_INPUT', field: 'after' } }),
    ]);
    await broken.query('RENAME TABLE handled_events TO handled_events_gone');
    const sub = subscribe(ws, 'subscription { onCustomerEvent(customerId: "1") { eventId } }');

    await waitFor('the error', () => sub.errors.length > 0 || sub.results.length > 0);
    const errors = [...sub.results.flatMap((r) => r.errors ?? []), ...graphqlErrors(sub.errors)];
    expect(errors).toEqual([
      expect.objectContaining({
        message: 'Internal server error',
        extensions: { code: 'INTERNAL_SERVER_ERROR' },
      }),
    ]);
    const text = JSON.stringify({ results: sub.results, errors: sub.errors });
    for (const pattern of INTERNALS) expect(text).not.toMatch(pattern);
    expect(text).not.toMatch(/handled_events|doesn't exist/i);
    // The connection itself survives an operation's failure.
    expect(ws.closes).toEqual([]);
  });

  it('connection_init: a refusing authenticateWebSocket closes with 4403 Forbidden; accepted ones proceed; no hook accepts all', async () => {
    const seen: Array<{ url: string | undefined; params: unknown }> = [];
    const service = await start(
      db,
      { ROLES: 'app' },
      {
        authenticateWebSocket: (request: IncomingMessage, params) => {
          seen.push({ url: request.url, params });
          if (params?.token === 'explode') throw new Error('authenticator crashed');
          return params?.token === 'let-me-in';
        },
      },
    );
    const guardedUrl = service.app?.url as string;

    const anonymous = client(guardedUrl);
    const wrong = client(guardedUrl, { connectionParams: { token: 'nope' } });
    const crashing = client(guardedUrl, { connectionParams: { token: 'explode' } });
    const allowed = client(guardedUrl, { connectionParams: { token: 'let-me-in' } });

    await waitFor(
      'the three refusals',
      () => anonymous.closes.length > 0 && wrong.closes.length > 0 && crashing.closes.length > 0,
    );
    for (const refused of [anonymous, wrong, crashing]) {
      expect(refused.closes[0]).toEqual({ code: 4403, reason: 'Forbidden' });
      expect(refused.connected()).toBe(false);
    }
    await waitFor('the allowed client to be acknowledged', () => allowed.connected());
    expect(allowed.closes).toEqual([]);
    // The hook saw the upgrade request and the connection_init payload.
    expect(seen).toEqual(
      expect.arrayContaining([
        { url: '/graphql', params: undefined },
        { url: '/graphql', params: { token: 'nope' } },
        { url: '/graphql', params: { token: 'let-me-in' } },
      ]),
    );

    // Without a hook (the main service), a client with no credentials at all is accepted.
    const open = client(url);
    await waitFor('the hook-less service to acknowledge', () => open.connected());
    expect(open.closes).toEqual([]);
  });
});

describe('shutdown', () => {
  it('stopping the service closes open WebSocket clients with 1001 and stop() resolves', async () => {
    const service = await start(db, { ROLES: 'app,relay,worker' });
    const serviceUrl = service.app?.url as string;
    const ws = client(serviceUrl);
    const sub = subscribeCustomerEvents(ws);
    // Everything is up (the live feed consumes) once an event reaches the subscriber.
    await waitFor('live traffic on the service being stopped', async () => {
      const probe = await createCustomer(serviceUrl, 'stop-probe');
      return waitFor('the probe', () => sub.count(probe.eventId) === 1, { timeoutMs: 2000 }).catch(
        () => false,
      );
    });

    const startedAt = performance.now();
    await service.stop();
    const tookMs = performance.now() - startedAt;

    await waitFor('the client to see the close', () => ws.closes.length > 0);
    expect(ws.closes[0]).toEqual({ code: 1001, reason: 'Going away' });
    expect(sub.errors.some((e) => (e as { code?: number }).code === 1001)).toBe(true);
    // Open subscriptions do not hold the shutdown up (the default stop grace period is 10 s).
    expect(tookMs).toBeLessThan(5000);
    // And nothing listens any more.
    await expect(fetch(serviceUrl)).rejects.toThrow();
  });
});
