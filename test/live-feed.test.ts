import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { encodeHistoryCursor } from '../src/customers/cursor.js';
import { headPosition } from '../src/history/store.js';
import { type RunningService, startService } from '../src/service.js';
import { closeBrokerConnections, deleteBrokerObjects } from './support/broker.js';
import { type CreatedCustomer, createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { appendRows, bulkSeedHistory, handledRow } from './support/history.js';
import { stopAndClean, testConfig, testLogger, uniqueSuffix } from './support/service.js';
import {
  connectWs,
  ON_CUSTOMER_EVENT,
  subscribeCustomerEvents,
  type WsClient,
  wsUrlOf,
} from './support/subscriptions.js';
import { waitFor } from './support/wait.js';

const PAGE_SIZE = 500;
const BUFFER_SIZE = 1000;
const BACKLOG = 20_000;

let db: TestDatabase;
let service: RunningService;
let url: string;
const clients: WsClient[] = [];

beforeAll(async () => {
  db = await createTestDatabase('live_feed');
  service = await startService(
    testConfig(db.url, {
      ROLES: 'app',
      LIVE_POLL_INTERVAL_MS: '50',
      LIVE_PAGE_SIZE: String(PAGE_SIZE),
      LIVE_BUFFER_SIZE: String(BUFFER_SIZE),
    }),
    testLogger(),
  );
  url = service.app?.url as string;
});

afterAll(async () => {
  await Promise.all(clients.splice(0).map((c) => c.dispose()));
  await stopAndClean(service);
  await db?.drop();
});

/**
 * A subscriber that reads its socket slowly: a raw graphql-transport-ws client whose socket
 * can be paused, so the server meets real TCP back-pressure rather than a client that buffers.
 */
async function slowSubscriber(after: string) {
  const socket = new WebSocket(wsUrlOf(url), 'graphql-transport-ws');
  const eventIds: string[] = [];
  const problems: unknown[] = [];
  socket.on('message', (data) => {
    const message = JSON.parse(String(data)) as {
      type: string;
      payload?: { data?: { onCustomerEvent?: { eventId: string } } };
    };
    const event = message.payload?.data?.onCustomerEvent;
    if (message.type === 'next' && event) eventIds.push(event.eventId);
    else if (message.type !== 'connection_ack') problems.push(message);
  });
  socket.on('error', (error) => problems.push(error));
  socket.on('close', (code, reason) => problems.push({ code, reason: String(reason) }));
  await new Promise((resolve) => socket.once('open', resolve));
  const acknowledged = new Promise((resolve) => socket.once('message', resolve));
  socket.send(JSON.stringify({ type: 'connection_init' }));
  await acknowledged;
  socket.send(
    JSON.stringify({
      id: '1',
      type: 'subscribe',
      payload: { query: ON_CUSTOMER_EVENT, variables: { after } },
    }),
  );
  return {
    socket,
    eventIds,
    problems,
    close: () => {
      socket.removeAllListeners('close');
      socket.terminate();
    },
  };
}

async function counterValue(
  counter: RunningService['metrics']['historyReads'],
  reader: string,
): Promise<number> {
  return (await counter.get()).values.find((v) => v.labels.reader === reader)?.value ?? 0;
}

async function queuedRows(): Promise<number> {
  const gauge = service.metrics.registry.getSingleMetric('live_queued_rows');
  const value = (await gauge?.get())?.values[0]?.value;
  return Number(value ?? Number.NaN);
}

describe('catch-up of a long history by a slow subscriber', () => {
  it(`${BACKLOG} events reach a slow subscriber in order exactly once, read in pages with bounded memory, while a fast subscriber on the same instance gets live events promptly`, async () => {
    const start = await headPosition(db.db);
    const seeded = await bulkSeedHistory(db, BACKLOG, { padding: 600 });
    const readsBefore = await counterValue(service.metrics.historyReads, 'catch_up');
    const rowsBefore = await counterValue(service.metrics.historyRowsRead, 'catch_up');

    let maxQueued = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxQueued = Math.max(maxQueued, await queuedRows());
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();

    const slow = await slowSubscriber(encodeHistoryCursor(start));
    try {
      // It starts reading, then stops: the server can send only what the socket takes.
      await waitFor('the slow subscriber to receive a first event', () => slow.eventIds.length > 0);
      slow.socket.pause();

      // A fast subscriber, connected meanwhile, is live and gets new events promptly.
      const fastWs = connectWs(url);
      clients.push(fastWs);
      const fast = subscribeCustomerEvents(fastWs);
      await waitFor('the fast subscriber to be acknowledged', () => fastWs.connected());
      const live: string[] = [];
      const latencies: number[] = [];
      for (let i = 0; i < 5; i++) {
        const row = handledRow(String(2_000_000 + i), 1);
        const at = performance.now();
        await appendRows(db.db, [row]);
        live.push(row.eventId);
        await waitFor('the live event on the fast subscriber', () => fast.count(row.eventId) === 1, {
          timeoutMs: 5000,
        });
        latencies.push(performance.now() - at);
      }
      expect(fast.events().map((e) => e.eventId)).toEqual(live);
      // The feed polls every 50 ms here; two seconds is far above it and far below a catch-up.
      expect(Math.max(...latencies)).toBeLessThan(2000);
      expect(slow.eventIds.length).toBeLessThan(BACKLOG);

      // The slow one reads in short bursts now.
      while (slow.eventIds.length < BACKLOG + live.length) {
        const had = slow.eventIds.length;
        slow.socket.resume();
        await waitFor('the slow subscriber to make progress', () => slow.eventIds.length > had, {
          timeoutMs: 20_000,
        });
        slow.socket.pause();
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      slow.socket.resume();
      // A last live event: once it is in, anything duplicated would have come before it.
      const sentinel = handledRow('2999999', 1);
      await appendRows(db.db, [sentinel]);
      await waitFor('the sentinel on the slow subscriber', () => slow.eventIds.at(-1) === sentinel.eventId, {
        timeoutMs: 20_000,
      });
      expect(slow.eventIds).toEqual([...seeded, ...live, sentinel.eventId]);
      expect(slow.problems).toEqual([]);
    } finally {
      sampling = false;
      await sampler;
      slow.close();
    }

    // Paged: at least one read per page of the backlog, none larger than a page.
    const reads = (await counterValue(service.metrics.historyReads, 'catch_up')) - readsBefore;
    const rows = (await counterValue(service.metrics.historyRowsRead, 'catch_up')) - rowsBefore;
    expect(reads).toBeGreaterThanOrEqual(BACKLOG / PAGE_SIZE);
    expect(rows).toBeGreaterThanOrEqual(BACKLOG);
    expect(rows / reads).toBeLessThanOrEqual(PAGE_SIZE);
    // Bounded: what the instance held at any time stayed within a page plus a live buffer,
    // a small fraction of the backlog.
    expect(maxQueued).toBeGreaterThan(0);
    expect(maxQueued).toBeLessThanOrEqual(PAGE_SIZE + BUFFER_SIZE);
  }, 180_000);
});

describe('live delivery without broker hints', () => {
  const apps: RunningService[] = [];
  let backend: RunningService | undefined;
  let hintsDb: TestDatabase;

  afterAll(async () => {
    await Promise.all(apps.map((a) => a.stop()));
    await stopAndClean(backend);
    await hintsDb?.drop();
  });

  it("a steady stream reaches every subscriber on two instances with nothing missing while the apps' broker connections are closed and then the history hints are gone for good", async () => {
    hintsDb = await createTestDatabase('live_hints');
    const suffix = uniqueSuffix();
    const shared = { OUTBOX_EXCHANGE: `test.hints.${suffix}`, WORKER_QUEUE: `test.hints.worker.${suffix}` };
    backend = await startService(testConfig(hintsDb.url, { ...shared, ROLES: 'relay,worker' }), testLogger());
    for (let i = 0; i < 2; i++) {
      apps.push(
        await startService(
          testConfig(hintsDb.url, { ...shared, ROLES: 'app', LIVE_POLL_INTERVAL_MS: '250' }),
          testLogger(),
        ),
      );
    }
    const a = apps[0] as RunningService;
    const urlA = a.app?.url as string;
    const start = await headPosition(hintsDb.db);
    const subscribers = apps.flatMap((app) =>
      Array.from({ length: 2 }, () => {
        const ws = connectWs(app.app?.url as string);
        clients.push(ws);
        return subscribeCustomerEvents(ws, { after: encodeHistoryCursor(start) });
      }),
    );

    const created: CreatedCustomer[] = [];
    let streaming = true;
    const stream = (async () => {
      while (streaming) created.push(await createCustomer(urlA, 'steady'));
    })();
    const delivered = (n: number) => () => subscribers.every((s) => s.events().length >= n);
    try {
      await waitFor('the stream to flow to every subscriber', delivered(5));
      // The apps lose the broker: their hint queues go with their connections.
      for (const app of apps) {
        expect(await closeBrokerConnections(`app ${app.instance}`)).toBeGreaterThan(0);
      }
      const atClose = created.length;
      await waitFor('the stream to go on', () => created.length >= atClose + 10);
      await waitFor('delivery after the broker returned', delivered(atClose + 5));
      // Now the hints are gone for good: the history exchange and with it every binding of the
      // apps' hint queues. Only the feeds' polling (every 250 ms) still brings new rows.
      await deleteBrokerObjects({ exchanges: [a.topology.historyHintExchange] });
      const atDelete = created.length;
      await waitFor('the stream to go on without hints', () => created.length >= atDelete + 10);
    } finally {
      streaming = false;
      await stream;
    }

    const last = created.at(-1) as CreatedCustomer;
    await waitFor(
      'every subscriber to reach the last event',
      () => subscribers.every((s) => s.count(last.eventId) === 1),
      {
        timeoutMs: 30_000,
      },
    );
    const history = (
      await hintsDb.query<{ event_id: string }>(
        'SELECT event_id FROM handled_events WHERE position > ? ORDER BY position',
        [start],
      )
    ).map((r) => r.event_id);
    expect(history).toEqual(expect.arrayContaining(created.map((c) => c.eventId)));
    for (const subscriber of subscribers) {
      expect(subscriber.events().map((e) => e.eventId)).toEqual(history);
      expect(subscriber.errors).toEqual([]);
    }
  }, 120_000);
});
