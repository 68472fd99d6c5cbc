import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CUSTOMER_AGGREGATE, CUSTOMER_EVENT_HANDLED } from '../src/customers/events.js';
import { appendEvent } from '../src/outbox/store.js';
import { type RunningService, startService } from '../src/service.js';
import { closeBrokerConnections } from './support/broker.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { stopAndClean, testConfig, testLogger } from './support/service.js';
import { connectWs, subscribeCustomerEvents, type WsClient } from './support/subscriptions.js';
import { waitFor } from './support/wait.js';

let db: TestDatabase;
let service: RunningService;
let ws: WsClient | undefined;

beforeAll(async () => {
  db = await createTestDatabase('live_reconnect');
  // The app alone: no relay runs, so outbox rows written by this test never reach the broker.
  service = await startService(testConfig(db.url, { ROLES: 'app' }), testLogger());
});

afterAll(async () => {
  await ws?.dispose();
  await stopAndClean(service);
  await db?.drop();
});

/**
 * A worker's "handled" notification, written straight into the outbox and marked published, as
 * if a relay had published it while this instance was away from the broker.
 */
async function handledNotification(customerId: string, handledSecondsAgo = 0): Promise<string> {
  const handledEventId = randomUUID();
  const eventId = randomUUID();
  const now = new Date(Date.now() - handledSecondsAgo * 1000);
  await db.db.transaction((tx) =>
    appendEvent(tx, {
      eventId,
      type: CUSTOMER_EVENT_HANDLED,
      aggregateType: CUSTOMER_AGGREGATE,
      aggregateId: customerId,
      sequence: 2,
      occurredAt: now,
      headers: { correlationId: randomUUID() },
      payload: {
        handledEventId,
        handledEventType: 'CustomerCreated',
        handledEventOccurredAt: now.toISOString(),
        handledEventPayload: { customerId },
        customerId,
        handler: 'welcome-email',
        handledAt: now.toISOString(),
        outcome: 'succeeded',
      },
    }),
  );
  await db.query('UPDATE outbox SET published_at = NOW(3) WHERE event_id = ?', [eventId]);
  return handledEventId;
}

describe('live events across a broker connection loss', () => {
  it('notifications published while the instance had lost the broker reach its subscribers after it reconnects', async () => {
    const url = service.app?.url as string;
    ws = connectWs(url);
    const all = subscribeCustomerEvents(ws);
    await waitFor('the WebSocket to be acknowledged', () => ws?.connected());

    // Published while this instance was cut off: in the outbox, never delivered to its queue.
    // The second was handled a minute earlier and published late (a relay backlog): it counts
    // by when it was published, not by when it was handled.
    const missed = [await handledNotification('101'), await handledNotification('102', 60)];
    expect(all.events()).toHaveLength(0);

    expect(await closeBrokerConnections(`app ${service.instance}`)).toBeGreaterThan(0);
    await waitFor('both notifications, from the catch-up', () => missed.every((id) => all.count(id) === 1));

    // Each exactly once, and nothing else.
    expect(missed.map((id) => all.count(id))).toEqual([1, 1]);
    expect(all.events()).toHaveLength(2);
  });
});
