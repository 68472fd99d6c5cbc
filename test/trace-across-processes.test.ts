import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeHistoryCursor } from '../src/customers/cursor.js';
import { brokerObjectsOf, deleteBrokerObjects } from './support/broker.js';
import { stopProcess, waitForLog } from './support/children.js';
import { CREATE_CUSTOMER } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { OTLP_KIND, type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from './support/otlp.js';
import { childEnv, type ServiceProcess, spawnService } from './support/process.js';
import { graphql, uniqueSuffix } from './support/service.js';
import { connectWs, subscribeCustomerEvents, type WsClient } from './support/subscriptions.js';
import { waitFor } from './support/wait.js';

/**
 * One create's trace as a collector sees it when the app, the relay and the worker run as
 * separate processes (`npm start -- app`, `-- relay`, `-- worker`), each exporting OTLP/HTTP
 * JSON to a receiver in this test under its own OTEL_SERVICE_NAME: the client's trace goes on
 * through the GraphQL operation and its transaction (app), the relay's PRODUCER span links to
 * the operation (relay), the worker's CONSUMER span continues it from the message headers with
 * the history write inside (worker), and the subscriber's delivery links to that handling (app).
 */

let db: TestDatabase;
let otlp: OtlpReceiver;
let ws: WsClient | undefined;
const suffix = uniqueSuffix();
const exchange = `test.traced.${suffix}`;
const workerQueue = `test.traced.worker.${suffix}`;
const children: ServiceProcess[] = [];
let appUrl: string;

function spawn(role: 'app' | 'relay' | 'worker'): ServiceProcess {
  const proc = spawnService(
    role,
    childEnv(db.url, exchange, workerQueue, {
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_SERVICE_NAME: `graphql-outbox-${role}`,
      // Export within a tenth of a second rather than the default five.
      OTEL_BSP_SCHEDULE_DELAY: '100',
    }),
  );
  children.push(proc);
  return proc;
}

beforeAll(async () => {
  db = await createTestDatabase('trace_processes');
  otlp = await startOtlpReceiver();
  const [app, relay, worker] = [spawn('app'), spawn('relay'), spawn('worker')];
  appUrl = String((await waitForLog(app, 'GraphQL server listening', 60_000)).url);
  await waitForLog(relay, 'service started', 60_000);
  await waitForLog(worker, 'worker consuming', 60_000);
  for (const proc of children) await waitForLog(proc, 'OpenTelemetry tracing started (OTLP)');
}, 120_000);

afterAll(async () => {
  await ws?.dispose();
  await Promise.all(children.map((proc) => stopProcess(proc, 15_000)));
  await otlp?.close();
  await db?.drop();
  await deleteBrokerObjects(brokerObjectsOf(exchange, workerQueue));
}, 60_000);

describe('one trace across separate app, relay and worker processes (OTLP)', () => {
  it("a create's trace: the operation, its transaction, the relay's publish, the worker's handling and the subscriber's delivery", async () => {
    const clientTrace = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    const clientSpan = '1122334455667788';
    const response = await graphql<{ createCustomer: { customerId: string; eventId: string } }>(
      appUrl,
      CREATE_CUSTOMER,
      { input: { email: `otlp.${suffix}@example.com`, name: 'Traced Across' } },
      { traceparent: `00-${clientTrace}-${clientSpan}-01` },
    );
    expect(response.errors).toBeUndefined();
    const { customerId, eventId } = response.data?.createCustomer ?? { customerId: '', eventId: '' };
    ws = connectWs(appUrl);
    const subscriber = subscribeCustomerEvents(ws, customerId);
    // On a timeout, say which side is missing: the handled row, or its delivery to this subscriber.
    await waitFor(
      'the subscriber to receive the event',
      async () => {
        if (subscriber.count(eventId) === 1) return true;
        const handled = await db.query<{ position: number }>(
          'SELECT position FROM handled_events WHERE event_id = ?',
          [eventId],
        );
        const got = {
          results: subscriber.results,
          errors: subscriber.errors,
          completed: subscriber.completed(),
        };
        throw new Error(
          `handled ${handled[0] ? `at position ${handled[0].position}` : 'not yet'}; the subscription got ${JSON.stringify(got)}`,
        );
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );

    const spans = () => otlp.spans();
    const find = (what: string, match: (s: ReceivedSpan) => boolean) =>
      waitFor(what, () => spans().find(match), { timeoutMs: 15_000 });
    const operation = await find('the GraphQL span', (s) => s.name === 'mutation Create');
    expect(operation).toMatchObject({
      service: 'graphql-outbox-app',
      traceId: clientTrace,
      parentSpanId: clientSpan,
      kind: OTLP_KIND.server,
    });
    const transaction = await find('its transaction', (s) => s.parentSpanId === operation.spanId);
    expect(transaction).toMatchObject({ name: 'transaction', kind: OTLP_KIND.client, traceId: clientTrace });
    expect(transaction.attributes['db.system.name']).toBe('mysql');

    const publish = await find('the relay span', (s) =>
      s.links.some((l) => l.spanId === operation.spanId && l.traceId === clientTrace),
    );
    expect(publish).toMatchObject({
      service: 'graphql-outbox-relay',
      name: `send ${exchange}`,
      kind: OTLP_KIND.producer,
    });
    expect(publish.parentSpanId || undefined).toBeUndefined();
    expect(publish.attributes).toMatchObject({
      'messaging.system': 'rabbitmq',
      'messaging.destination.name': exchange,
    });

    const handling = await find(
      'the worker span',
      (s) => s.kind === OTLP_KIND.consumer && s.service.endsWith('worker'),
    );
    expect(handling).toMatchObject({
      name: `process ${workerQueue}`,
      traceId: clientTrace,
      parentSpanId: operation.spanId,
    });
    expect(handling.attributes).toMatchObject({
      'messaging.system': 'rabbitmq',
      'messaging.message.id': eventId,
      'messaging.rabbitmq.destination.routing_key': 'customer.created',
    });
    const historyWrite = await find('the history write', (s) => s.name === 'INSERT handled_events');
    expect(historyWrite.service).toBe('graphql-outbox-worker');
    const ancestors = (span: ReceivedSpan): string[] => {
      const parent = spans().find((p) => p.spanId === span.parentSpanId && p.traceId === span.traceId);
      return parent ? [parent.spanId, ...ancestors(parent)] : [];
    };
    expect(ancestors(historyWrite)).toContain(handling.spanId);

    const delivery = await find('the delivery span', (s) => s.name === 'onCustomerEvent deliver');
    expect(delivery).toMatchObject({ service: 'graphql-outbox-app', kind: OTLP_KIND.consumer });
    expect(delivery.links).toEqual([
      expect.objectContaining({ traceId: clientTrace, spanId: handling.spanId }),
    ]);
    expect(delivery.attributes).toMatchObject({
      'outbox.event.id': eventId,
      'outbox.history.position': decodeHistoryCursor(subscriber.lastCursor() ?? '', 'cursor'),
      'graphql.operation.type': 'subscription',
    });
  });
});
