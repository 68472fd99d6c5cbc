import { Writable } from 'node:stream';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeHistoryCursor } from '../src/customers/cursor.js';
import { CUSTOMER_HANDLERS } from '../src/customers/handlers.js';
import { createLogger } from '../src/log.js';
import { OutboxWriter } from '../src/outbox/writer.js';
import { type RunningService, startService } from '../src/service.js';
import { tracer } from '../src/telemetry/tracer.js';
import { handleGroup } from '../src/worker/handling.js';
import { connectTestBroker, type TestBroker } from './support/amqp.js';
import { claimedNewCustomers } from './support/claims.js';
import { CREATE_CUSTOMER, createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startTestRelay } from './support/faults.js';
import { openMultipart, openSse } from './support/http-streams.js';
import { graphql, stopAndClean, testConfig, testLogger, uniqueSuffix } from './support/service.js';
import { connectWs, subscribeCustomerEvents } from './support/subscriptions.js';
import { waitFor } from './support/wait.js';

/**
 * One create's trace across the app, the relay and the worker, with the SDK's in-memory
 * exporter in place of OTLP: the GraphQL span continues the client's traceparent, its
 * transaction is its child, the relay's PRODUCER span links to it (the context stored with the
 * event), the worker's CONSUMER span continues it from the AMQP headers, with the history write
 * inside; each subscriber's delivery of the handled event (WebSocket, SSE, multipart) is a span
 * linked to that handling; a parked message, an event the relay gives up on (dead) and a
 * refused request end their spans with an error status and the reason; log lines inside a
 * span carry its ids.
 */

const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
let db: TestDatabase;
let broker: TestBroker;
let service: RunningService;
let url: string;

beforeAll(async () => {
  provider.register();
  db = await createTestDatabase('tracing');
  broker = await connectTestBroker();
  service = await startService(testConfig(db.url, { ROLES: 'app,relay,worker' }), testLogger());
  url = service.app?.url as string;
});

afterAll(async () => {
  await stopAndClean(service);
  await broker?.close();
  await db?.drop();
  await provider.shutdown();
});

const spans = () => exporter.getFinishedSpans();
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

describe('OpenTelemetry traces', () => {
  it("one create's trace spans the GraphQL operation, its transaction, the relay's publish and the worker's handling", async () => {
    const clientTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const clientSpan = '00f067aa0ba902b7';
    const response = await graphql<{ createCustomer: { eventId: string } }>(
      url,
      CREATE_CUSTOMER,
      { input: { email: `traced.${uniqueSuffix()}@example.com`, name: 'Traced' } },
      { traceparent: `00-${clientTrace}-${clientSpan}-01` },
    );
    expect(response.errors).toBeUndefined();
    const eventId = response.data?.createCustomer.eventId as string;

    const operation = await waitFor('the GraphQL span', () =>
      spans().find((s) => s.name === 'mutation Create' && s.spanContext().traceId === clientTrace),
    );
    expect(operation.kind).toBe(SpanKind.SERVER);
    expect(parentOf(operation)).toBe(clientSpan);
    expect(operation.attributes['graphql.operation.type']).toBe('mutation');
    const own = operation.spanContext().spanId;
    expect(spans().some((s) => s.name === 'transaction' && parentOf(s) === own)).toBe(true);

    const consumer = await waitFor('the worker span', () =>
      spans().find((s) => s.kind === SpanKind.CONSUMER && s.attributes['messaging.message.id'] === eventId),
    );
    expect(consumer.spanContext().traceId).toBe(clientTrace);
    expect(parentOf(consumer)).toBe(own);
    expect(consumer.attributes).toMatchObject({
      'messaging.system': 'rabbitmq',
      'messaging.operation.name': 'process',
      'messaging.destination.name': service.topology.exchange,
      'messaging.destination.subscription.name': service.topology.workerQueue,
      'messaging.rabbitmq.destination.routing_key': 'customer.created',
    });
    expect(consumer.attributes['outbox.worker.outcome']).toBe('handled');
    const inConsumer = (s: ReadableSpan): boolean => {
      if (s.spanContext().spanId === consumer.spanContext().spanId) return true;
      const parent = spans().find((p) => p.spanContext().spanId === parentOf(s));
      return parent !== undefined && inConsumer(parent);
    };
    await waitFor('the history write inside the handling', () =>
      spans().some((s) => s.name === 'INSERT handled_events' && inConsumer(s)),
    );

    const producer = spans().find(
      (s) => s.kind === SpanKind.PRODUCER && s.links.some((l) => l.context.spanId === own),
    );
    expect(producer?.name).toBe(`send ${service.topology.exchange}`);
    expect(parentOf(producer as ReadableSpan)).toBeUndefined();
    expect(producer?.attributes).toMatchObject({
      'messaging.system': 'rabbitmq',
      'messaging.operation.name': 'send',
      'messaging.destination.name': service.topology.exchange,
    });
    expect(producer?.links.find((l) => l.context.spanId === own)?.attributes).toEqual({
      'messaging.message.id': eventId,
      'messaging.rabbitmq.destination.routing_key': 'customer.created',
    });
  });

  it("each subscriber's delivery, on every transport, is a span linked to the worker's handling span", async () => {
    const customer = await createCustomer(url, 'delivered');
    const ws = connectWs(url);
    const subscribers = [
      subscribeCustomerEvents(ws, customer.customerId),
      await openSse(url, { variables: { customerId: customer.customerId } }),
      await openMultipart(url, { variables: { customerId: customer.customerId }, method: 'POST' }),
    ];
    try {
      const handling = await waitFor('the handling span', () =>
        spans().find(
          (s) => s.kind === SpanKind.CONSUMER && s.attributes['messaging.message.id'] === customer.eventId,
        ),
      );
      // Ended when each transport has written the event and comes back for the next one.
      const deliveries = await waitFor('three delivery spans', () => {
        const found = spans().filter(
          (s) => s.name === 'onCustomerEvent deliver' && s.attributes['outbox.event.id'] === customer.eventId,
        );
        return found.length === subscribers.length ? found : undefined;
      });
      for (const delivery of deliveries) {
        expect(delivery.kind).toBe(SpanKind.CONSUMER);
        expect(parentOf(delivery)).toBeUndefined();
        expect(delivery.links.map((l) => l.context.spanId)).toEqual([handling.spanContext().spanId]);
        expect(delivery.links[0]?.context.traceId).toBe(handling.spanContext().traceId);
        expect(delivery.attributes).toMatchObject({
          'graphql.operation.type': 'subscription',
          'graphql.operation.name': 'OnCustomerEvent',
          'outbox.event.type': 'CustomerCreated',
        });
        expect(delivery.status.code).not.toBe(SpanStatusCode.ERROR);
      }
      const received = await waitFor('the event over WebSocket', () =>
        (subscribers[0] as ReturnType<typeof subscribeCustomerEvents>).events().at(0),
      );
      for (const delivery of deliveries) {
        expect(delivery.attributes['outbox.history.position']).toBe(
          decodeHistoryCursor(received.cursor, 'cursor'),
        );
      }
    } finally {
      for (const subscriber of subscribers) {
        if ('unsubscribe' in subscriber) subscriber.unsubscribe();
        else subscriber.close();
      }
      await ws.dispose();
    }
  });

  it('a parked message ends its handling span with an error status and the reason', async () => {
    const messageId = `not-json-${uniqueSuffix()}`;
    await broker.sendToQueue(service.topology.workerQueue, Buffer.from('{ not json'), {
      messageId,
      type: 'CustomerCreated',
      persistent: true,
    });
    const parked = await waitFor('the parked message span', () =>
      spans().find((s) => s.kind === SpanKind.CONSUMER && s.attributes['messaging.message.id'] === messageId),
    );
    expect(parked.status.code).toBe(SpanStatusCode.ERROR);
    expect(parked.status.message).toBeTruthy();
    expect(parked.attributes).toMatchObject({ 'error.type': 'parked', 'outbox.worker.outcome': 'parked' });
  });

  it('an event the relay gives up on (dead) ends a span linked to its creating span, with an error status and the reason', async () => {
    const deadDb = await createTestDatabase('tracing_dead');
    const app = await startService(testConfig(deadDb.url, { ROLES: 'app' }), testLogger());
    const relay = startTestRelay({
      db: deadDb.db,
      exchange: app.topology.exchange,
      workerQueue: app.topology.workerQueue,
      owner: 'tracing-dead-relay',
      maxAttempts: 1,
      decide: () => 'nacked',
    });
    try {
      const response = await graphql<{ createCustomer: { eventId: string } }>(
        app.app?.url as string,
        CREATE_CUSTOMER,
        { input: { email: `dead.${uniqueSuffix()}@example.com`, name: 'Dead' } },
      );
      const eventId = response.data?.createCustomer.eventId as string;
      const dead = await waitFor('the dead span', () =>
        spans().find(
          (s) =>
            s.name.startsWith('dead ') &&
            s.links.some((l) => l.attributes?.['messaging.message.id'] === eventId),
        ),
      );
      const creating = spans().find((s) => s.spanContext().spanId === dead.links[0]?.context.spanId);
      expect(creating?.name).toBe('mutation Create');
      expect(dead.status.code).toBe(SpanStatusCode.ERROR);
      expect(dead.status.message).toMatch(/nack/i);
      expect(dead.attributes).toMatchObject({ 'error.type': 'dead', 'outbox.dead.count': 1 });
    } finally {
      await relay.stop();
      await stopAndClean(app);
      await deadDb.drop();
    }
  });

  it("a group's one transaction links to each message's handling span, and each history row keeps its message's", async () => {
    const groupDb = await createTestDatabase('tracing_group');
    try {
      const writer = new OutboxWriter({ maxPayloadBytes: 65_536 });
      const handlingSpans = ['00000000000000a1', '00000000000000a2', '00000000000000a3'];
      const group = (await claimedNewCustomers(groupDb.db, writer, 3)).map((delivery, i) => ({
        ...delivery,
        traceparent: `00-${'5e'.repeat(16)}-${handlingSpans[i]}-01`,
      }));
      const decisions = await handleGroup(
        { db: groupDb.db, consumer: 'tracing-group', types: Object.keys(CUSTOMER_HANDLERS), writer },
        group,
        { deferred: true },
      );
      expect(decisions.map((d) => d.kind)).toEqual(['handled', 'handled', 'handled']);
      const transaction = spans().find(
        (s) => s.name === 'transaction' && s.links.some((l) => l.context.spanId === handlingSpans[0]),
      );
      expect(transaction?.links.map((l) => l.context.spanId)).toEqual(handlingSpans);
      const rows = await groupDb.query<{ event_id: string; traceparent: string }>(
        'SELECT event_id, traceparent FROM handled_events',
      );
      expect(Object.fromEntries(rows.map((r) => [r.event_id, r.traceparent]))).toEqual(
        Object.fromEntries(group.map((d) => [d.claim.eventId, d.traceparent])),
      );
    } finally {
      await groupDb.drop();
    }
  });

  it('a refused request ends its span with an error status and the reason', async () => {
    const response = await graphql(url, '{ nope }');
    expect(response.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    const refused = await waitFor('the refusal span', () =>
      spans().find(
        (s) => s.name === 'GraphQL operation refused' && String(s.status.message).includes('nope'),
      ),
    );
    expect(refused.status.code).toBe(SpanStatusCode.ERROR);
  });

  it('log lines written inside a span carry trace_id and span_id', () => {
    const lines: string[] = [];
    const log = createLogger(
      'info',
      {},
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk));
          done();
        },
      }),
    );
    log.info('outside');
    const ids = tracer.startActiveSpan('a span', (span) => {
      log.info('inside');
      span.end();
      return span.spanContext();
    });
    const [outside, inside] = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(outside?.trace_id).toBeUndefined();
    expect(inside).toMatchObject({ trace_id: ids.traceId, span_id: ids.spanId });
  });
});
