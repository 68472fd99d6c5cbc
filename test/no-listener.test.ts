import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCustomer, updateCustomer, type WriteContext } from '../src/customers/service.js';
import { readStats } from '../src/outbox/stats.js';
import { OutboxWriter } from '../src/outbox/writer.js';
import { type RunningService, startService } from '../src/service.js';
import { connectTestBroker, type TestBroker } from './support/amqp.js';
import { bindingsFrom, exchangeType } from './support/broker.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { stopAndClean, testConfig, testLogger, uniqueSuffix } from './support/service.js';
import { waitFor } from './support/wait.js';

const CUSTOMERS = 30;

let db: TestDatabase;
let broker: TestBroker;
let service: RunningService;

beforeAll(async () => {
  db = await createTestDatabase('no_listener');
  broker = await connectTestBroker();
  // A relay and a worker, and no app anywhere: nobody listens to history hints.
  service = await startService(
    testConfig(db.url, { ROLES: 'relay,worker', RELAY_POLL_INTERVAL_MS: '50' }),
    testLogger(),
  );
  await waitFor(
    'the worker to consume',
    async () => (await broker.consumerCount(service.topology.workerQueue)) > 0,
  );
});

afterAll(async () => {
  await stopAndClean(service);
  await broker?.close();
  await db?.drop();
});

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const [row] = await db.query<{ n: number | string }>(sql, params);
  return Number(row?.n ?? Number.NaN);
}

describe('relay and worker with no app listening', () => {
  it('every event is published and handled, nothing goes dead, and only the domain events reach the exchange', async () => {
    const capture = await broker.capture(service.topology.exchange, '#');
    // Written as the app would, by the domain's own service; the relay finds the rows by polling.
    const ctx: WriteContext = {
      db: db.db,
      writer: new OutboxWriter({ maxPayloadBytes: 65_536 }),
      headers: { correlationId: randomUUID() },
    };
    const suffix = uniqueSuffix();
    const eventIds: string[] = [];
    for (let i = 0; i < CUSTOMERS; i++) {
      const created = await createCustomer(ctx, {
        email: `quiet.${i}.${suffix}@example.com`,
        name: `Quiet ${i}`,
      });
      eventIds.push(created.eventId);
      if (i % 3 === 0) {
        const updated = await updateCustomer(ctx, {
          id: String(created.customer.id),
          name: `Quiet ${i}, renamed`,
        });
        eventIds.push(updated.eventId);
      }
    }

    const placeholders = eventIds.map(() => '?').join(',');
    await waitFor(
      'every event in the history',
      async () =>
        (await count(
          `SELECT COUNT(*) AS n FROM handled_events WHERE event_id IN (${placeholders})`,
          eventIds,
        )) === eventIds.length,
      { timeoutMs: 30_000 },
    );
    expect(await count('SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL')).toBe(0);
    expect(await count('SELECT COUNT(*) AS n FROM welcome_emails')).toBe(CUSTOMERS);
    const stats = await readStats(db.db);
    expect(stats).toMatchObject({ pending: 0, dead: 0, held: 0, published: eventIds.length });
    expect(await broker.messageCount(service.topology.workerDeadLetterQueue)).toBe(0);
    expect((await service.metrics.deadEvents.get()).values.reduce((n, v) => n + v.value, 0)).toBe(0);

    // On the exchange: the domain events, each once, and nothing about their handling.
    await waitFor('every event on the test queue', () => capture.length >= eventIds.length);
    expect(capture.map((m) => m.properties.messageId).sort()).toEqual([...eventIds].sort());
    expect(new Set(capture.map((m) => m.fields.routingKey))).toEqual(
      new Set(['customer.created', 'customer.updated']),
    );
  });

  it('the history hint is a non-mandatory publish to a fanout exchange with no queue bound: the broker takes it and drops it, and the worker goes on', async () => {
    const exchange = service.topology.historyHintExchange;
    // The worker declared the exchange for its hints (after the first test, it has sent many);
    // nobody bound a queue to it.
    expect(await exchangeType(exchange)).toBe('fanout');
    expect(await bindingsFrom(exchange)).toEqual([]);
    // Such a publish is confirmed, not refused, so a hint never fails a worker.
    await broker.publish(exchange, '', Buffer.alloc(0), { persistent: false });
    const ctx: WriteContext = {
      db: db.db,
      writer: new OutboxWriter({ maxPayloadBytes: 65_536 }),
      headers: { correlationId: randomUUID() },
    };
    const created = await createCustomer(ctx, {
      email: `after.${uniqueSuffix()}@example.com`,
      name: 'After',
    });
    await waitFor('the next event to be handled', async () =>
      count('SELECT COUNT(*) AS n FROM handled_events WHERE event_id = ?', [created.eventId]),
    );
    expect((await readStats(db.db)).dead).toBe(0);
  });
});
