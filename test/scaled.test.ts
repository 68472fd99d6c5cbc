import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeHistoryCursor } from '../src/customers/cursor.js';
import { connectTestBroker, type TestBroker } from './support/amqp.js';
import { brokerObjectsOf, deleteBrokerObjects } from './support/broker.js';
import { logLines, stopProcess, waitForLog } from './support/children.js';
import { type CreatedCustomer, createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { childEnv, type ServiceProcess, spawnService } from './support/process.js';
import { uniqueSuffix } from './support/service.js';
import {
  type CustomerEventData,
  connectWs,
  type EventSubscription,
  subscribeCustomerEvents,
  type WsClient,
} from './support/subscriptions.js';
import { untilLive, waitFor } from './support/wait.js';

const CUSTOMERS = 20;

let db: TestDatabase;
let broker: TestBroker;
const suffix = uniqueSuffix();
const exchange = `test.scaled.${suffix}`;
const workerQueue = `test.scaled.worker.${suffix}`;

interface Child {
  readonly name: string;
  readonly proc: ServiceProcess;
}
const children: Child[] = [];
/** Children a test killed on purpose. */
const killed = new Set<Child>();
let appA: string;
let appB: string;
let workerMetricsPorts: number[];
let ws: WsClient | undefined;
let subscriber: EventSubscription;

function spawn(name: string, roles: string): Child {
  const proc = spawnService(roles, childEnv(db.url, exchange, workerQueue));
  const child = { name, proc };
  children.push(child);
  return child;
}

/** worker_messages_total{outcome="handled"} as one standalone worker's /metrics reports it. */
async function handledBy(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const match = text.match(/^worker_messages_total\{outcome="handled"\} (\d+)$/m);
  return match ? Number(match[1]) : 0;
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const [row] = await db.query<{ n: number | string }>(sql, params);
  return Number(row?.n ?? Number.NaN);
}

beforeAll(async () => {
  db = await createTestDatabase('scaled');
  broker = await connectTestBroker();
  const a = spawn('app A', 'app');
  const b = spawn('app B', 'app');
  const relay = spawn('relay', 'relay');
  const workers = [spawn('worker 1', 'worker'), spawn('worker 2', 'worker')];

  const listening = (c: Child) => waitForLog(c.proc, 'GraphQL server listening', 60_000);
  appA = String((await listening(a)).url);
  appB = String((await listening(b)).url);
  await waitForLog(relay.proc, 'service started', 60_000);
  workerMetricsPorts = await Promise.all(
    workers.map(async (c) => Number((await waitForLog(c.proc, 'metrics server listening', 60_000)).port)),
  );
  await waitFor('both workers to consume', async () => (await broker.consumerCount(workerQueue)) === 2, {
    timeoutMs: 30_000,
  });

  // A subscriber on A; live once an event from a customer created through B reaches it.
  ws = connectWs(appA);
  subscriber = subscribeCustomerEvents(ws);
  await waitFor(
    'a probe customer created on B to reach the subscriber on A',
    async () => {
      const probe = await createCustomer(appB, 'probe');
      return waitFor('the probe', () => subscriber.count(probe.eventId) === 1, { timeoutMs: 3000 }).catch(
        () => false,
      );
    },
    { timeoutMs: 30_000 },
  );
}, 120_000);

afterAll(async () => {
  await ws?.dispose();
  // Normally the last test has stopped them all; this only cleans up after a failure.
  await Promise.all(children.map((c) => stopProcess(c.proc, 15_000)));
  await broker?.close();
  await db?.drop();
  await deleteBrokerObjects(brokerObjectsOf(exchange, workerQueue));
}, 60_000);

describe('scaled out: two apps, a standalone relay and two standalone workers as processes', () => {
  it(`${CUSTOMERS} customers created through app B: app A's subscriber receives each handled event exactly once`, async () => {
    const created: CreatedCustomer[] = await Promise.all(
      Array.from({ length: CUSTOMERS }, (_, i) => createCustomer(appB, `scaled-${i}`)),
    );
    const ids = created.map((c) => c.eventId);
    await waitFor(`all ${CUSTOMERS} events on A`, () => ids.every((id) => subscriber.count(id) >= 1), {
      timeoutMs: 30_000,
    });
    // Anything still in flight for those 20 is ahead of a sentinel created after them.
    const sentinel = await createCustomer(appB, 'sentinel');
    await waitFor('the sentinel on A', () => subscriber.count(sentinel.eventId) === 1);

    for (const customer of created) {
      expect(subscriber.count(customer.eventId)).toBe(1);
      const event = subscriber.events().find((e) => e.eventId === customer.eventId);
      expect(event).toMatchObject({
        eventId: customer.eventId,
        type: 'CustomerCreated',
        customerId: customer.customerId,
        payload: { customerId: customer.customerId, email: customer.email },
      });
    }
    expect(subscriber.errors).toEqual([]);

    const placeholders = ids.map(() => '?').join(',');
    expect(
      await count(`SELECT COUNT(*) AS n FROM welcome_emails WHERE event_id IN (${placeholders})`, ids),
    ).toBe(CUSTOMERS);
    expect(
      await count(`SELECT COUNT(*) AS n FROM inbox WHERE consumer = ? AND message_id IN (${placeholders})`, [
        workerQueue,
        ...ids,
      ]),
    ).toBe(CUSTOMERS);

    // Every customer (the 20, probes, sentinel) was handled by exactly one of the two workers,
    // and both took a share.
    const total = await count('SELECT COUNT(*) AS n FROM customers');
    const perWorker = await waitFor('the workers to count every customer', async () => {
      const counts = await Promise.all(workerMetricsPorts.map(handledBy));
      return counts.reduce((a, b) => a + b, 0) === total ? counts : undefined;
    });
    expect(perWorker.every((n) => n > 0)).toBe(true);
    expect(await count('SELECT COUNT(*) AS n FROM welcome_emails')).toBe(total);
    // One history row per handled event, and no event about handling went through the outbox.
    expect(await count('SELECT COUNT(*) AS n FROM handled_events')).toBe(total);
    expect(await count("SELECT COUNT(*) AS n FROM outbox WHERE type <> 'CustomerCreated'")).toBe(0);
  });

  it('a subscriber whose instance is SIGKILLed mid-stream resumes on the other instance from its last cursor: exactly the missed events, in order, none twice', async () => {
    const onA = connectWs(appA);
    const before = subscribeCustomerEvents(onA);
    const created: CreatedCustomer[] = [
      await untilLive(
        'a customer created through B on A',
        () => createCustomer(appB, 'first'),
        (eventId) => before.count(eventId) === 1,
      ),
    ];
    // A steady stream of customers through B, before, during and after the kill.
    let streaming = true;
    const stream = (async () => {
      while (streaming) created.push(await createCustomer(appB, 'stream'));
    })();
    try {
      await waitFor('a few streamed events on A', () => before.events().length >= 5, { timeoutMs: 30_000 });
      const a = children.find((c) => c.name === 'app A') as Child;
      a.proc.child.kill('SIGKILL');
      expect(await a.proc.exited).toBe('SIGKILL');
      killed.add(a);
      const atKill = created.length;
      await waitFor('more customers created while A is gone', () => created.length >= atKill + 10, {
        timeoutMs: 30_000,
      });
    } finally {
      streaming = false;
      await stream;
    }
    await onA.dispose();
    const seenOnA = before.events();
    const lastCursor = before.lastCursor() as string;
    expect(lastCursor).toBeTruthy();

    // The history as the database has it, from the first event A delivered to the end of the
    // stream, once every streamed event is in it: two workers handle different customers' events
    // in any order, so the last one created may be handled before an earlier one.
    const lastCreated = created.at(-1) as CreatedCustomer;
    const createdIds = created.map((c) => c.eventId);
    await waitFor(
      'every streamed event to be handled',
      async () =>
        (await count(
          `SELECT COUNT(*) AS n FROM handled_events WHERE event_id IN (${createdIds.map(() => '?').join(', ')})`,
          createdIds,
        )) === createdIds.length,
    );
    const firstPosition = decodeHistoryCursor((seenOnA[0] as CustomerEventData).cursor, 'after');
    const history = (
      await db.query<{ event_id: string }>(
        'SELECT event_id FROM handled_events WHERE position >= ? ORDER BY position',
        [firstPosition],
      )
    ).map((r) => r.event_id);
    expect(history.length).toBeGreaterThan(seenOnA.length);

    const onB = connectWs(appB);
    try {
      const resumed = subscribeCustomerEvents(onB, { after: lastCursor });
      await waitFor(
        'the resumed stream to reach the last event',
        () => resumed.count(lastCreated.eventId) === 1,
      );
      // Live after the catch-up: a customer created now arrives too, and once it has, anything
      // duplicated would have arrived before it.
      const sentinel = await createCustomer(appB, 'resume-sentinel');
      await waitFor('the sentinel on B', () => resumed.count(sentinel.eventId) === 1);
      const delivered = [...seenOnA, ...resumed.events()].map((e) => e.eventId);
      expect(delivered).toEqual([...history, sentinel.eventId]);
      expect(resumed.errors).toEqual([]);
      // Every streamed customer is in it.
      for (const c of created) expect(delivered.filter((id) => id === c.eventId)).toHaveLength(1);
    } finally {
      await onB.dispose();
    }
  });

  it('SIGTERM stops every process still running gracefully: each exits 0 after logging "stopped"', async () => {
    await ws?.dispose();
    ws = undefined;
    const running = children.filter((c) => !killed.has(c));
    const results = await Promise.all(
      running.map(async (c) => ({ name: c.name, exit: await stopProcess(c.proc, 20_000) })),
    );
    expect(results).toEqual(running.map((c) => ({ name: c.name, exit: 0 })));
    for (const c of running) {
      expect(logLines(c.proc).some((l) => l.msg === 'stopped')).toBe(true);
    }
  }, 60_000);
});
