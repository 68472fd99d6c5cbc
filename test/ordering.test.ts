import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../src/service.js';
import { connectTestBroker, type TestBroker } from './support/amqp.js';
import { bindTestQueue, brokerObjectsOf, deleteBrokerObjects, type TestQueue } from './support/broker.js';
import { waitForLog } from './support/children.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { TEST_AMQP_URL } from './support/env.js';
import { type Fault, seededRandom, startTestRelay, type TestRelay } from './support/faults.js';
import { type ServiceProcess, spawnService } from './support/process.js';
import { parseJsonColumn } from './support/rows.js';
import { type GraphQLResponse, graphql, testConfig, testLogger, uniqueSuffix } from './support/service.js';
import {
  connectWs,
  type EventSubscription,
  subscribeCustomerEvents,
  type WsClient,
} from './support/subscriptions.js';
import { untilLive, waitFor } from './support/wait.js';

/**
 * The ordering guarantee as a property: random creates and updates of a few hundred customers,
 * through three relays (two of them injecting publish faults, one SIGKILLed mid-run) and two
 * workers with prefetch > 1 (one SIGKILLed mid-run); afterwards every customer's events were
 * published, handled and streamed to a subscriber in sequence order. ORDERING_SEED replays a run.
 */

const SEED = Number(process.env.ORDERING_SEED ?? Date.now() % 2_147_483_647);
/** ORDERING_EVENTS scales the run (customers are a fifth of the events). */
const EVENTS = Number(process.env.ORDERING_EVENTS ?? 1500);
const CUSTOMERS = Math.floor(EVENTS / 5);
const CLIENTS = 12;
const FAULT_RATE = 0.08;

const suffix = uniqueSuffix();
const exchange = `test.order.${suffix}`;
const workerQueue = `test.order.worker.${suffix}`;

let db: TestDatabase;
let broker: TestBroker;
let app: RunningService;
let url: string;
let queue: TestQueue;
let ws: WsClient;
let subscription: EventSubscription;
const relays: TestRelay[] = [];
const children: ServiceProcess[] = [];

beforeAll(async () => {
  db = await createTestDatabase('ordering');
  queue = await bindTestQueue(exchange, '#');
  broker = await connectTestBroker();
});

afterAll(async () => {
  for (const child of children) child.child.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exited));
  await ws?.dispose();
  await Promise.all(relays.map((r) => r.stop()));
  await app?.stop();
  await queue?.close();
  await broker?.close();
  await db?.drop();
  await deleteBrokerObjects(brokerObjectsOf(exchange, workerQueue));
});

const childEnv = (extra: Record<string, string>) => ({
  DATABASE_URL: db.url,
  AMQP_URL: TEST_AMQP_URL,
  OUTBOX_EXCHANGE: exchange,
  WORKER_QUEUE: workerQueue,
  METRICS_PORT: '0',
  LOG_LEVEL: 'warn',
  ...extra,
});

/** outbox_events_published_total as a standalone relay's /metrics reports it. */
async function publishedBy(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const match = text.match(/^outbox_events_published_total (\d+)$/m);
  return match ? Number(match[1]) : 0;
}

const count = async (sql: string, params: unknown[] = []) =>
  Number((await db.query<{ n: number | string }>(sql, params))[0]?.n);

/** Runs `ops` with `clients` concurrent callers, in list order. */
async function runConcurrently(ops: Array<() => Promise<void>>, clients: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < ops.length) {
        const op = ops[next++] as () => Promise<void>;
        await op();
      }
    }),
  );
}

describe('ordering', () => {
  it(`every customer's events are published, handled and streamed in sequence order with 3 relays, 2 workers, faults and kills (seed ${SEED})`, async () => {
    const random = seededRandom(SEED);
    const faultRandom = seededRandom(SEED + 1);
    const seedNote = `ORDERING_SEED=${SEED}`;

    // The app and one worker in this process; prefetch > 1 so a worker has several messages of
    // one customer in hand at once.
    app = await startService(
      testConfig(db.url, {
        ROLES: 'app,worker',
        OUTBOX_EXCHANGE: exchange,
        WORKER_QUEUE: workerQueue,
        WORKER_PREFETCH: '16',
        WORKER_ORDER_WAIT_MS: '50',
        LIVE_POLL_INTERVAL_MS: '200',
      }),
      testLogger(),
    );
    url = app.app?.url as string;

    // Two relays here whose publisher fails a share of messages (nack, return, timeout after the
    // broker took it), and one real relay process that is SIGKILLed mid-run.
    const decide = (): Fault => {
      const r = faultRandom();
      if (r >= FAULT_RATE) return 'ok';
      return r < FAULT_RATE / 3 ? 'nacked' : r < (2 * FAULT_RATE) / 3 ? 'unroutable' : 'timeout';
    };
    for (const owner of ['relay-a', 'relay-b']) {
      relays.push(startTestRelay({ db: db.db, exchange, workerQueue, owner, decide, leaseMs: 4000 }));
    }
    const relayChild = spawnService(
      'relay',
      childEnv({
        RELAY_LEASE_MS: '2000',
        RELAY_CONFIRM_TIMEOUT_MS: '1000',
        RELAY_BATCH_SIZE: '20',
        RELAY_POLL_INTERVAL_MS: '50',
        // Its "metrics server listening" line tells the port of its /metrics.
        LOG_LEVEL: 'info',
      }),
    );
    const relayChildMetrics = Number((await waitForLog(relayChild, 'metrics server listening', 60_000)).port);
    const workerChild = spawnService(
      'worker',
      childEnv({ WORKER_PREFETCH: '16', WORKER_ORDER_WAIT_MS: '50' }),
    );
    children.push(relayChild, workerChild);
    await waitFor('both workers consuming', async () => (await broker.consumerCount(workerQueue)) === 2, {
      timeoutMs: 60_000,
    });

    // A subscriber for every customer, from now on: a canary customer proves it is live.
    ws = connectWs(url);
    subscription = subscribeCustomerEvents(ws);
    // Canaries made before the subscription was live are not streamed to it (see untilLive).
    const canaries: string[] = [];
    const live = await untilLive(
      'the subscriber to see the canary',
      async () => {
        const made = await mutate('createCustomer', {
          email: `canary${canaries.length}.${suffix}@example.com`,
          name: 'Canary',
        });
        canaries.push(made.eventId);
        return made;
      },
      (eventId) => subscription.count(eventId) === 1,
    );
    const beforeLive = new Set(canaries.filter((id) => id !== live.eventId));

    // The workload: CUSTOMERS creates and the rest updates, interleaved at random; an update
    // waits for its customer's create. Updates of one customer run concurrently too.
    const created: Array<Promise<string>> = [];
    const ops: Array<() => Promise<void>> = [];
    let creates = 0;
    for (let i = 0; i < EVENTS; i++) {
      const mustCreate =
        created.length === 0 || (creates < CUSTOMERS && random() < (CUSTOMERS - creates) / (EVENTS - i));
      if (mustCreate) {
        const n = creates++;
        let resolve!: (id: string) => void;
        created.push(new Promise((r) => (resolve = r)));
        ops.push(async () => {
          const result = await mutate('createCustomer', {
            email: `c${n}.${suffix}@example.com`,
            name: `Customer ${n}`,
          });
          resolve(result.customerId);
        });
      } else {
        const target = created[Math.floor(random() * created.length)] as Promise<string>;
        const changeEmail = random() < 0.3;
        const tag = `${i}.${Math.floor(random() * 1e6)}`;
        ops.push(async () => {
          const id = await target;
          await mutate(
            'updateCustomer',
            changeEmail ? { id, email: `u${tag}.${suffix}@example.com` } : { id, name: `Name ${tag}` },
          );
        });
      }
    }

    let done = 0;
    const counted = ops.map((op) => async () => {
      await op();
      done++;
    });
    const workload = runConcurrently(counted, CLIENTS);
    // The kills, while events flow: the relay child a third of the way, the worker child halfway.
    await waitFor('a third of the workload', () => done >= EVENTS / 3, { timeoutMs: 120_000 });
    // The relay child takes part before it dies.
    await waitFor('the relay child to publish', async () => (await publishedBy(relayChildMetrics)) > 0, {
      timeoutMs: 60_000,
    });
    relayChild.child.kill('SIGKILL');
    await waitFor('half of the workload', () => done >= EVENTS / 2, { timeoutMs: 120_000 });
    workerChild.child.kill('SIGKILL');
    await workload;
    expect(await relayChild.exited).toBe('SIGKILL');
    expect(await workerChild.exited).toBe('SIGKILL');

    const total = await count('SELECT COUNT(*) AS n FROM outbox');
    expect(total, seedNote).toBe(EVENTS + canaries.length);
    await waitFor(
      'every event published',
      async () => (await count('SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL')) === 0,
      { timeoutMs: 40_000 },
    );
    await waitFor(
      'every event handled',
      async () => (await count('SELECT COUNT(*) AS n FROM handled_events')) === total,
      { timeoutMs: 60_000 },
    );
    await waitFor(
      'the subscriber to see every event',
      () => new Set(subscription.events().map((e) => e.eventId)).size === total - beforeLive.size,
      { timeoutMs: 20_000 },
    );

    try {
      await checkOrder(total, beforeLive);
    } catch (error) {
      (error as Error).message = `${seedNote}\n${(error as Error).message}`;
      throw error;
    }
    const injected = relays.map((r) => r.publisher.injected);
    // Faults really happened, of every kind.
    for (const kind of ['nacked', 'unroutable', 'timeout'] as const) {
      expect(
        injected.reduce((sum, i) => sum + i[kind], 0),
        `${kind} faults injected`,
      ).toBeGreaterThan(0);
    }
  }, 180_000);
});

async function mutate(
  name: 'createCustomer' | 'updateCustomer',
  input: Record<string, unknown>,
): Promise<{ customerId: string; eventId: string }> {
  const inputType = name === 'createCustomer' ? 'CreateCustomerInput' : 'UpdateCustomerInput';
  // A keep-alive connection the server has just closed fails the request (ECONNRESET): send it
  // again with the same Idempotency-Key, which is what the key is for.
  const key = randomUUID();
  let response: GraphQLResponse<Record<string, { eventId: string; customer: { id: string } }>> | undefined;
  for (let attempt = 1; response === undefined; attempt++) {
    try {
      response = await graphql(
        url,
        `mutation($input: ${inputType}!) { ${name}(input: $input) { eventId customer { id } } }`,
        { input },
        { 'Idempotency-Key': key },
      );
    } catch (error) {
      if (attempt >= 5) throw error;
    }
  }
  const result = response.data?.[name];
  if (response.errors || !result) throw new Error(`${name} failed: ${JSON.stringify(response)}`);
  return { customerId: result.customer.id, eventId: result.eventId };
}

async function checkOrder(total: number, beforeLive: ReadonlySet<string>): Promise<void> {
  const rows = await db.query<{
    event_id: string;
    aggregate_id: string;
    sequence: number;
    type: string;
    payload: unknown;
    dead_at: Date | null;
  }>(
    "SELECT event_id, aggregate_id, sequence, type, payload, dead_at FROM outbox WHERE aggregate_type = 'Customer'",
  );
  expect(rows).toHaveLength(total);
  expect(rows.filter((r) => r.dead_at !== null)).toEqual([]);
  const sequenceOf = new Map(rows.map((r) => [r.event_id, r]));
  const customerIds = [...new Set(rows.map((r) => r.aggregate_id))];
  const expected = new Map<string, number>();
  for (const r of rows) expected.set(r.aggregate_id, Math.max(expected.get(r.aggregate_id) ?? 0, r.sequence));
  const oneToN = (id: string) => Array.from({ length: expected.get(id) ?? 0 }, (_, i) => i + 1);

  /** Sequences per customer, in the order the event ids appear. */
  const perCustomer = (eventIds: readonly string[]) => {
    const result = new Map<string, number[]>();
    for (const eventId of eventIds) {
      const row = sequenceOf.get(eventId);
      if (!row) throw new Error(`an event id that is not in the outbox: ${eventId}`);
      const list = result.get(row.aggregate_id) ?? [];
      list.push(row.sequence);
      result.set(row.aggregate_id, list);
    }
    return result;
  };

  // 1. The exchange: a bound queue saw each customer's events in order (first appearances;
  //    duplicates from retried timeouts and the takeover are allowed).
  const firstSeen: string[] = [];
  const seen = new Set<string>();
  for (const m of queue.received) {
    const id = String(m.properties.messageId);
    if (!seen.has(id)) firstSeen.push(id);
    seen.add(id);
  }
  const onExchange = perCustomer(firstSeen);
  // 2. The worker: handled exactly once each, in order (history by position).
  const history = await db.query<{ event_id: string; aggregate_id: string; sequence: number }>(
    'SELECT event_id, aggregate_id, sequence FROM handled_events ORDER BY position',
  );
  const handled = perCustomer(history.map((h) => h.event_id));
  // 3. The subscriber: each event once, in order.
  const streamed = perCustomer(subscription.events().map((e) => e.eventId));

  // Canary customers made before the subscription was live: their one event is not streamed.
  const notStreamed = new Set(rows.filter((r) => beforeLive.has(r.event_id)).map((r) => r.aggregate_id));
  const wrong: string[] = [];
  for (const id of customerIds) {
    const want = JSON.stringify(oneToN(id));
    if (JSON.stringify(onExchange.get(id)) !== want)
      wrong.push(`exchange ${id}: ${JSON.stringify(onExchange.get(id))} ≠ ${want}`);
    if (JSON.stringify(handled.get(id)) !== want)
      wrong.push(`handled ${id}: ${JSON.stringify(handled.get(id))} ≠ ${want}`);
    const streamedWant = notStreamed.has(id) ? undefined : want;
    if (JSON.stringify(streamed.get(id)) !== streamedWant)
      wrong.push(`streamed ${id}: ${JSON.stringify(streamed.get(id))} ≠ ${streamedWant}`);
  }
  expect(wrong.slice(0, 20)).toEqual([]);
  expect(customerIds).toHaveLength(CUSTOMERS + 1 + beforeLive.size);

  // The effects: one welcome e-mail per customer, one notice per e-mail change.
  const emails = await db.query<{ customer_id: number | string; n: number | string }>(
    'SELECT customer_id, COUNT(*) AS n FROM welcome_emails GROUP BY customer_id',
  );
  expect(emails).toHaveLength(CUSTOMERS + 1 + beforeLive.size);
  expect(emails.every((e) => Number(e.n) === 1)).toBe(true);
  const emailChanges = rows.filter(
    (r) =>
      r.type === 'CustomerUpdated' &&
      parseJsonColumn<{ changes: { email?: unknown } }>(r.payload).changes.email,
  );
  const notices = await db.query<{ event_id: string }>('SELECT event_id FROM email_change_notices');
  expect(new Set(notices.map((n) => n.event_id))).toEqual(new Set(emailChanges.map((r) => r.event_id)));
  expect(notices).toHaveLength(emailChanges.length);
}
