import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BrokerConnection } from '../src/broker/connection.js';
import { ConfirmPublisher, type OutgoingMessage, type Publisher } from '../src/broker/publisher.js';
import { declareWorkerQueues, topologyFor } from '../src/broker/topology.js';
import type { CustomerCreatedPayload } from '../src/customers/events.js';
import { welcomeEmail } from '../src/customers/handlers.js';
import type { Transaction } from '../src/db/client.js';
import { Metrics } from '../src/metrics/index.js';
import type { Handler, HandlerHelpers, StoredEvent } from '../src/outbox/handler.js';
import { Relay } from '../src/relay/relay.js';
import { type RunningService, type ServiceOptions, startService } from '../src/service.js';
import { connectTestBroker, type TestBroker } from './support/amqp.js';
import { brokerObjectsOf, deleteBrokerObjects } from './support/broker.js';
import { createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { TEST_AMQP_URL } from './support/env.js';
import { seedEvents } from './support/seed.js';
import { testConfig, testLogger, uniqueSuffix } from './support/service.js';
import { waitFor } from './support/wait.js';

let db: TestDatabase;
let broker: TestBroker;
const running: RunningService[] = [];
const brokerObjects = { queues: [] as string[], exchanges: [] as string[] };

/**
 * What the welcome-email handler does for a customer named `label`, the first time only;
 * afterwards (and for every other customer) it does its real work.
 */
type Fault = (tx: Transaction) => Promise<void>;
const faults = new Map<string, Fault>();
const calls = new Map<string, number>();

const controlled: Handler<CustomerCreatedPayload> = {
  name: 'welcome-email',
  payload: welcomeEmail.payload,
  async handle(tx: Transaction, event: StoredEvent<CustomerCreatedPayload>, helpers: HandlerHelpers) {
    const label = event.payload.name;
    calls.set(label, (calls.get(label) ?? 0) + 1);
    const fault = faults.get(label);
    if (fault) {
      faults.delete(label);
      await fault(tx);
    }
    await welcomeEmail.handle(tx, event, helpers);
  },
};

async function start(env: Record<string, string> = {}, options: ServiceOptions = {}) {
  const config = testConfig(db.url, { ROLES: 'app,relay,worker', WORKER_RETRY_DELAY_MS: '100', ...env });
  const objects = brokerObjectsOf(config.exchange, config.worker.queue);
  brokerObjects.queues.push(...objects.queues);
  brokerObjects.exchanges.push(...objects.exchanges);
  const service = await startService(config, testLogger(), {
    handlers: { CustomerCreated: controlled },
    ...options,
  });
  running.push(service);
  await waitFor('the worker to consume', async () => (await broker.consumerCount(config.worker.queue)) > 0);
  return { service, config, url: service.app?.url as string };
}

async function outcomes(service: RunningService): Promise<Record<string, number>> {
  const { values } = await service.metrics.workerHandled.get();
  return Object.fromEntries(values.map((v) => [String(v.labels.outcome), v.value]));
}

const count = async (query: string, params: unknown[] = []) =>
  Number((await db.query<{ n: number | string }>(query, params))[0]?.n);
const welcomeEmails = (customerId: string) =>
  count('SELECT COUNT(*) AS n FROM welcome_emails WHERE customer_id = ?', [customerId]);

async function connectionId(tx: Transaction): Promise<number> {
  const [rows] = (await tx.execute(sql`SELECT CONNECTION_ID() AS id`)) as unknown as [Array<{ id: number }>];
  return Number(rows[0]?.id);
}

/** KILLs a server connection from the test's own pool and waits until the server has dropped it. */
async function kill(id: number): Promise<void> {
  await db.query(`KILL ${id}`);
  await waitFor(
    `connection ${id} gone`,
    async () =>
      (await count('SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ?', [id])) === 0,
  );
}

beforeAll(async () => {
  db = await createTestDatabase('worker_faults');
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

describe('an outage is never a failure of the message (WORKER_MAX_ATTEMPTS=1)', () => {
  const cases: Array<[string, Fault]> = [
    [
      'the connection killed mid-statement',
      async (tx) => {
        const id = await connectionId(tx);
        const sleeping = tx.execute(sql`SELECT SLEEP(30)`);
        // Rejects when the connection dies; awaited below, after the KILL.
        sleeping.catch(() => {});
        await waitFor(
          'the statement to run',
          async () =>
            (await count(
              "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ? AND INFO LIKE 'SELECT SLEEP%'",
              [id],
            )) === 1,
        );
        await kill(id);
        await sleeping;
      },
    ],
    [
      'the connection killed as the handler returns (the last statements and COMMIT find it closed)',
      async (tx) => {
        await kill(await connectionId(tx));
      },
    ],
    [
      'the connection killed, then the handler fails (the ROLLBACK finds it closed)',
      async (tx) => {
        await kill(await connectionId(tx));
        throw new Error('handler failed after its connection died');
      },
    ],
  ];

  it.each(cases)('%s: retried, handled once, never parked, no attempt counted', async (_name, fault) => {
    const { service, url, config } = await start({ WORKER_MAX_ATTEMPTS: '1' });
    const label = `outage-${uniqueSuffix()}`;
    // support/customers.ts names a customer "Test <label>".
    faults.set(`Test ${label}`, fault);
    const customer = await createCustomer(url, label);
    await waitFor('the welcome e-mail', async () => (await welcomeEmails(customer.customerId)) === 1, {
      timeoutMs: 30_000,
    });
    expect(calls.get(`Test ${label}`)).toBe(2);
    await waitFor('the success to be counted', async () => (await outcomes(service)).handled === 1);
    expect(await outcomes(service)).toEqual({ retried: 1, handled: 1 });
    expect(await broker.messageCount(`${config.worker.queue}.dead`)).toBe(0);
    expect(await count('SELECT COUNT(*) AS n FROM inbox WHERE message_id = ?', [customer.eventId])).toBe(1);
    expect(
      await count('SELECT COUNT(*) AS n FROM handled_events WHERE event_id = ?', [customer.eventId]),
    ).toBe(1);
  });
});

describe('the worker never stalls', () => {
  it('with its retry queue gone, a failing message is nacked back to the queue, others are handled, and stop() keeps its deadline', async () => {
    const { service, url, config } = await start({
      WORKER_MAX_ATTEMPTS: '5',
      RELAY_CONFIRM_TIMEOUT_MS: '1000',
      RELAY_LEASE_MS: '2000',
    });
    await deleteBrokerObjects({ queues: [`${config.worker.queue}.retry`] });
    const label = `stall-${uniqueSuffix()}`;
    let failing = true;
    const failUntilReleased: Fault = async () => {
      if (failing) {
        faults.set(`Test ${label}`, failUntilReleased);
        throw new Error('handler fails');
      }
    };
    faults.set(`Test ${label}`, failUntilReleased);
    const stuck = await createCustomer(url, label);
    await waitFor(
      'the failing message to be requeued',
      async () => ((await outcomes(service)).requeued ?? 0) >= 2,
    );
    // Redelivered again and again, not left unacked: the handler keeps being called.
    expect(calls.get(`Test ${label}`)).toBeGreaterThanOrEqual(2);
    const others = await Promise.all([1, 2, 3].map((i) => createCustomer(url, `flowing-${i}`)));
    await waitFor('the other customers handled', async () => {
      for (const o of others) if ((await welcomeEmails(o.customerId)) !== 1) return false;
      return true;
    });
    expect(await welcomeEmails(stuck.customerId)).toBe(0);

    failing = false;
    const startedAt = performance.now();
    await service.worker?.stop();
    expect(performance.now() - startedAt).toBeLessThan(config.relay.confirmTimeoutMs + 2000);
  });
});

describe('relay: a channel closing mid-confirm is an outage', () => {
  it('counted as channel_closed, not nacked; its lease handed back with attempts 0', async () => {
    await db.query('DELETE FROM outbox');
    const suffix = uniqueSuffix();
    const exchange = `test.faults.${suffix}`;
    const queue = `test.faults.worker.${suffix}`;
    const objects = brokerObjectsOf(exchange, queue);
    brokerObjects.queues.push(...objects.queues);
    brokerObjects.exchanges.push(...objects.exchanges);
    const log = testLogger();
    const connection = new BrokerConnection(TEST_AMQP_URL, `faults relay ${suffix}`, log);
    connection.start();
    const topology = topologyFor(exchange, queue, ['CustomerCreated']);
    const confirm = new ConfirmPublisher({
      broker: connection,
      exchange,
      confirmTimeoutMs: 5000,
      log,
      setup: (channel) => declareWorkerQueues(channel, topology),
    });
    let cut = true;
    let unconfirmedAtCut = 0;
    // The real publisher; once, its socket is destroyed right after the batch was written and
    // before any confirm could be read (no I/O runs between the microtasks below).
    const cutting: Publisher = {
      get isReady() {
        return confirm.isReady;
      },
      ready: (signal) => confirm.ready(signal),
      async publishAll(messages: readonly OutgoingMessage[], signal?: AbortSignal) {
        const pending = confirm.publishAll(messages, signal);
        if (cut) {
          cut = false;
          const channel = Reflect.get(confirm, 'channel') as {
            unconfirmed: unknown[];
            connection: { stream: { destroy(error: Error): void } };
          };
          for (let i = 0; i < 1000 && channel.unconfirmed.length < messages.length; i++)
            await Promise.resolve();
          unconfirmedAtCut = channel.unconfirmed.length;
          channel.connection.stream.destroy(new Error('socket cut by the test'));
        }
        return pending;
      },
    };
    const metrics = new Metrics(db.db);
    const relay = new Relay({
      db: db.db,
      publisher: cutting,
      log,
      metrics,
      owner: 'cut-relay',
      batchSize: 10,
      lanes: 1,
      pollIntervalMs: 50,
      leaseMs: 60_000,
      retry: { maxAttempts: 1, backoffBaseMs: 60_000, backoffMaxMs: 60_000 },
    });
    const ids = await seedEvents(db.db, 3);
    relay.start();
    try {
      await waitFor(
        'all three published after the reconnect',
        async () => (await count('SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NOT NULL')) === 3,
        { timeoutMs: 30_000 },
      );
    } finally {
      await relay.stop();
      await confirm.close();
      await connection.stop();
    }
    const failures = Object.fromEntries(
      (await metrics.publishFailures.get()).values.map((v) => [String(v.labels.reason), v.value]),
    );
    // The batch was written and awaiting its confirms when the socket went.
    expect(unconfirmedAtCut).toBe(3);
    expect(failures).toEqual({ channel_closed: 3 });
    const rows = await db.query<{ event_id: string; attempts: number; dead_at: Date | null }>(
      'SELECT event_id, attempts, dead_at FROM outbox',
    );
    // maxAttempts is 1: had the outage counted, all three would be dead.
    expect(rows.map((r) => [r.attempts, r.dead_at])).toEqual([
      [0, null],
      [0, null],
      [0, null],
    ]);
    expect(new Set(rows.map((r) => r.event_id))).toEqual(new Set(ids));
  });
});
