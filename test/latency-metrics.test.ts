import type { Histogram } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secondsSince } from '../src/metrics/index.js';
import { type RunningService, startService } from '../src/service.js';
import { createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { graphql, stopAndClean, testConfig, testLogger } from './support/service.js';
import { connectWs, subscribeCustomerEvents, type WsClient } from './support/subscriptions.js';
import { waitFor } from './support/wait.js';

/**
 * The delays users feel, from an event's occurrence to its publish, its handling and its
 * delivery to a live subscriber: one observation per event at each step, of a plausible size;
 * a subscriber's replay of events handled before it subscribed is not a delay anyone felt.
 */

let db: TestDatabase;
let service: RunningService;
let url: string;
let ws: WsClient;

beforeAll(async () => {
  db = await createTestDatabase('latency_metrics');
  service = await startService(testConfig(db.url, { ROLES: 'app,relay,worker' }), testLogger());
  url = service.app?.url as string;
  ws = connectWs(url);
  await waitFor('the WebSocket to connect', () => ws.connected());
});

afterAll(async () => {
  await ws?.dispose();
  await stopAndClean(service);
  await db?.drop();
});

async function observed(histogram: Histogram): Promise<{ count: number; sum: number }> {
  const { name, values } = await histogram.get();
  const value = (suffix: string) => values.find((v) => v.metricName === `${name}${suffix}`)?.value ?? 0;
  return { count: value('_count'), sum: value('_sum') };
}

describe('latency histograms', () => {
  it('secondsSince never goes below zero and reads ISO text and dates alike', () => {
    expect(secondsSince('2026-12-07T10:00:00.000Z', Date.parse('2026-12-07T10:00:01.500Z'))).toBe(1.5);
    expect(secondsSince(new Date('2026-12-07T10:00:02.000Z'), Date.parse('2026-12-07T10:00:01.000Z'))).toBe(
      0,
    );
    expect(secondsSince('not a date')).toBe(0);
  });

  it('publish, handling and live delivery are each observed once per event; a replay is not', async () => {
    const { publishLatency, handleLatency, deliveryLatency } = service.metrics;
    const customer = await createCustomer(url, 'latency');
    await waitFor('the event to be handled', async () => (await observed(handleLatency)).count === 1);
    expect((await observed(publishLatency)).count).toBe(1);

    // The customer's history first (handled before this subscription), then live events.
    const events = subscribeCustomerEvents(ws, customer.customerId);
    await waitFor('the replayed event', () => events.count(customer.eventId) === 1);
    expect((await observed(deliveryLatency)).count).toBe(0);

    const renamed = await graphql<{ updateCustomer: { eventId: string } }>(
      url,
      'mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) { eventId } }',
      { input: { id: customer.customerId, name: 'Renamed' } },
    );
    const eventId = renamed.data?.updateCustomer.eventId as string;
    await waitFor('the live event', () => events.count(eventId) === 1);
    await waitFor('the delivery to be observed', async () => (await observed(deliveryLatency)).count === 1);
    events.unsubscribe();

    for (const [name, histogram] of Object.entries({ publishLatency, handleLatency, deliveryLatency })) {
      const { count, sum } = await observed(histogram);
      expect(count, name).toBe(histogram === deliveryLatency ? 1 : 2);
      // Each step took more than nothing and less than the test's own deadlines.
      expect(sum, name).toBeGreaterThan(0);
      expect(sum / count, name).toBeLessThan(20);
    }
  });
});
