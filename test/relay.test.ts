import { randomUUID } from 'node:crypto';
import { drizzle } from 'drizzle-orm/mysql2';
import mysql from 'mysql2/promise';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { OutgoingMessage, Publisher, PublishOutcome } from '../src/broker/publisher.js';
import { connectDatabase, type Database, transaction } from '../src/db/client.js';
import * as schema from '../src/db/schema.js';
import { outbox } from '../src/db/schema.js';
import { createLogger } from '../src/log.js';
import { Metrics } from '../src/metrics/index.js';
import { claimAndSettle } from '../src/outbox/claim.js';
import type { ClaimedEvent } from '../src/outbox/rows.js';
import { markPublished } from '../src/outbox/settle.js';
import { findEvents } from '../src/outbox/stored.js';
import { OutboxWriter } from '../src/outbox/writer.js';
import { Relay } from '../src/relay/relay.js';
import { type RunningService, startService } from '../src/service.js';
import {
  bindTestQueue,
  brokerObjectsOf,
  closeBrokerConnections,
  deleteBrokerObjects,
  type TestQueue,
} from './support/broker.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { testEvent } from './support/rows.js';
import { seedEvents } from './support/seed.js';
import { graphql, testConfig, testLogger, uniqueSuffix } from './support/service.js';
import { waitFor } from './support/wait.js';

const OPERATOR_TOKEN = 'relay-test-operator-token';
const operator = { authorization: `Bearer ${OPERATOR_TOKEN}` };

let db: TestDatabase;
const suffix = uniqueSuffix();
const exchange = `test.relay.${suffix}`;
const workerQueue = `test.relay.worker.${suffix}`;
const running: RunningService[] = [];
const queues: TestQueue[] = [];

/** A relay-only service on this file's database, exchange and worker queue. */
async function startRelay(env: Record<string, string> = {}): Promise<RunningService> {
  const service = await startService(
    testConfig(db.url, { ROLES: 'relay', OUTBOX_EXCHANGE: exchange, WORKER_QUEUE: workerQueue, ...env }),
    testLogger(),
  );
  running.push(service);
  return service;
}

async function testQueue(): Promise<TestQueue> {
  const queue = await bindTestQueue(exchange, '#');
  queues.push(queue);
  return queue;
}

const pendingCount = async () =>
  Number(
    (
      await db.query<{ n: number }>(
        'SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL AND dead_at IS NULL',
      )
    )[0]?.n,
  );

beforeAll(async () => {
  db = await createTestDatabase('relay');
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
  await Promise.all(queues.splice(0).map((q) => q.close()));
  await db.query('DELETE FROM outbox');
});

afterAll(async () => {
  await db?.drop();
  await deleteBrokerObjects(brokerObjectsOf(exchange, workerQueue));
});

describe('relay', () => {
  it('three relays drain 2,000 events: each reaches a bound queue exactly once, as the contract says', async () => {
    const queue = await testQueue();
    // All three are up and polling before the events commit, so they compete from the start.
    const relays = await Promise.all(
      [1, 2, 3].map(() => startRelay({ RELAY_BATCH_SIZE: '50', RELAY_POLL_INTERVAL_MS: '20' })),
    );
    const ids = await seedEvents(db.db, 2000);

    await waitFor('all 2,000 events on the queue', () => queue.counts().size === 2000, { timeoutMs: 60_000 });
    await waitFor('every row marked published', async () => (await pendingCount()) === 0);

    const counts = queue.counts();
    expect(new Set(counts.keys())).toEqual(new Set(ids));
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    expect(queue.received).toHaveLength(2000);
    // The work was shared: more than one relay published some of it. (A relay counts its
    // published events once its mark statement has returned, a moment after the rows changed.)
    const perRelay = () =>
      Promise.all(relays.map(async (r) => (await r.metrics.published.get()).values[0]?.value ?? 0));
    await waitFor(
      'the relays to count 2,000 published',
      async () => (await perRelay()).reduce((a, b) => a + b, 0) === 2000,
    );
    expect((await perRelay()).filter((n) => n > 0).length).toBeGreaterThan(1);

    const message = queue.received.find((m) => m.properties.messageId === ids[0]);
    expect(message?.routingKey).toBe('customer.created');
    expect(message?.properties).toMatchObject({
      messageId: ids[0],
      type: 'CustomerCreated',
      contentType: 'application/json',
      deliveryMode: 2,
      headers: expect.objectContaining({ correlationId: ids[0] }),
    });
    expect(message?.body).toEqual({
      eventId: ids[0],
      type: 'CustomerCreated',
      aggregateType: 'Test',
      aggregateId: ids[0],
      sequence: 1,
      occurredAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      payload: { n: 0 },
    });
  });

  it('fencing: a relay whose hand-off lease expired and was taken over cannot mark those events', async () => {
    const [eventId] = await seedEvents(db.db, 1);
    // The row as a writer hands it to relay A in its process: leased to A, for 200 ms.
    const staleToken = randomUUID();
    await db.query(
      `UPDATE outbox SET lease_owner = 'relay-a', lease_token = ?,
         lease_expires_at = NOW(3) + INTERVAL 200000 MICROSECOND, next_attempt_at = NOW(3) + INTERVAL 200000 MICROSECOND`,
      [staleToken],
    );
    const [leased] = await db.query<{ id: number }>('SELECT id FROM outbox');
    const handedToA = {
      id: Number(leased?.id),
      envelope: { aggregateType: 'Test', aggregateId: eventId as string, sequence: 1 },
    };
    const retry = { maxAttempts: 10, backoffBaseMs: 1000, backoffMaxMs: 1000 };
    const publishAll = async (batch: readonly ClaimedEvent[]) => ({ published: batch, failed: new Map() });

    // Not claimable while the lease runs; claimable (a takeover) once the database clock passes it.
    expect(await claimAndSettle(db.db, { limit: 10, holdSeconds: 30, retry }, publishAll)).toBeUndefined();
    let taken: readonly ClaimedEvent[] = [];
    const outcome = await waitFor('the lease to expire and relay B to take over', () =>
      claimAndSettle(db.db, { limit: 10, holdSeconds: 30, retry }, async (batch) => {
        taken = batch;
        return publishAll(batch);
      }),
    );
    expect(taken.map((e) => e.envelope.eventId)).toEqual([eventId]);
    expect(taken[0]?.takenOver).toBe(true);
    expect(outcome).toMatchObject({ claimed: 1, takenOver: 1, marked: 1 });

    // A's late mark changes nothing.
    expect(await markPublished(db.db, [handedToA], staleToken)).toEqual({ marked: 0, released: 0 });
    const [row] = await db.query<{ published: number }>(
      'SELECT published_at IS NOT NULL AS published FROM outbox',
    );
    expect(Number(row?.published)).toBe(1);
  });

  it('the claim and the stored-event read give the same event through a DATABASE_URL with dateStrings and through a Drizzle database of its own', async () => {
    const occurredAt = new Date('2026-03-04T05:06:07.089Z');
    const eventId = randomUUID();
    await db.db.insert(outbox).values({
      eventId,
      aggregateType: 'Test',
      aggregateId: eventId,
      sequence: 1,
      type: 'CustomerCreated',
      payload: { n: 1, name: 'Zoë' },
      headers: { correlationId: eventId },
      occurredAt,
      nextAttemptAt: new Date(0),
    });
    const expected = {
      eventId,
      type: 'CustomerCreated',
      aggregateType: 'Test',
      aggregateId: eventId,
      sequence: 1,
      occurredAt: occurredAt.toISOString(),
    };
    const retry = { maxAttempts: 10, backoffBaseMs: 1000, backoffMaxMs: 1000 };
    // The rows as each kind of database gives them: Dates from our pools; text with dateStrings
    // in the URL; text from a Drizzle database not made by connectDatabase (its own transaction).
    const withDateStrings = connectDatabase(`${db.url}?dateStrings=true`, 2);
    const ownPool = mysql.createPool({ uri: db.url, connectionLimit: 2 });
    const own = drizzle(ownPool, { schema, mode: 'default' }) as unknown as Database;
    try {
      for (const database of [db.db, withDateStrings.db, own]) {
        let claimed: readonly ClaimedEvent[] = [];
        // Nothing published: the row stays due for the next database.
        await claimAndSettle(database, { limit: 10, holdSeconds: 30, retry }, async (batch) => {
          claimed = batch;
          return { published: [], failed: new Map() };
        });
        expect(claimed.map((e) => ({ envelope: e.envelope, payload: JSON.parse(e.payloadJson) }))).toEqual([
          { envelope: expected, payload: { n: 1, name: 'Zoë' } },
        ]);
        const stored = await transaction(database, (tx) => findEvents(tx, [eventId]));
        expect(stored.get(eventId)).toEqual({ ...expected, payload: { n: 1, name: 'Zoë' } });
      }
    } finally {
      await withDateStrings.close();
      await ownPool.end();
      await db.query('DELETE FROM outbox');
    }
  });

  it('a mark releases the held successor of an aggregate whose id needs escaping (quotes, backslashes)', async () => {
    const aggregateId = 'O\'Brien \\\' OR 1=1 -- "x"';
    const event = (sequence: number, held: boolean) => ({
      eventId: randomUUID(),
      aggregateType: 'Test',
      aggregateId,
      sequence,
      type: 'CustomerCreated',
      payload: { n: sequence },
      headers: { correlationId: randomUUID() },
      occurredAt: new Date(),
      nextAttemptAt: held ? new Date('9999-12-31T00:00:00Z') : new Date(0),
      held,
    });
    // Another aggregate's held row, which the release must leave alone.
    const other = { ...event(2, true), aggregateId: 'O' };
    await db.db.insert(outbox).values([event(1, false), event(2, true), other]);
    const retry = { maxAttempts: 10, backoffBaseMs: 1000, backoffMaxMs: 1000 };
    const outcome = await claimAndSettle(db.db, { limit: 10, holdSeconds: 30, retry }, async (batch) => ({
      published: batch,
      failed: new Map(),
    }));
    expect(outcome).toMatchObject({ claimed: 1, marked: 1, released: 1 });
    const rows = await db.query<{ aggregate_id: string; sequence: number; held: number }>(
      'SELECT aggregate_id, sequence, held FROM outbox ORDER BY id',
    );
    expect(rows.map((r) => [r.aggregate_id, r.sequence, Number(r.held)])).toEqual([
      [aggregateId, 1, 0],
      [aggregateId, 2, 0],
      ['O', 2, 1],
    ]);
    await db.query('DELETE FROM outbox');
  });

  it('two events of one aggregate appended in one transaction: the second is written held behind the first, and both get their ids at the commit', async () => {
    const writer = new OutboxWriter({ maxPayloadBytes: 65_536 });
    const aggregateId = randomUUID();
    const event = (sequence: number) => testEvent(aggregateId, sequence);
    const appended = await transaction(db.db, async (tx) => [
      await writer.append(tx, event(1)),
      await writer.append(tx, event(2)),
    ]);
    const rows = await db.query<{ id: number; sequence: number; held: number }>(
      'SELECT id, sequence, held FROM outbox WHERE aggregate_id = ? ORDER BY sequence',
      [aggregateId],
    );
    expect(rows.map((r) => [r.sequence, Number(r.held)])).toEqual([
      [1, 0],
      [2, 1],
    ]);
    expect(appended.map((e) => e.id)).toEqual(rows.map((r) => Number(r.id)));
    await db.query('DELETE FROM outbox');
  });

  it('an unroutable publish (no queue bound for its routing key) is not marked published', async () => {
    // The worker queue binds customer.created only; nothing is bound for test.unroutable.
    const [eventId] = await seedEvents(db.db, 1, { type: 'TestUnroutable' });
    const relay = await startRelay({ RELAY_BACKOFF_BASE_MS: '60000', RELAY_BACKOFF_MAX_MS: '60000' });
    const row = await waitFor('the failed attempt to be recorded', async () => {
      const [r] = await db.query<{ attempts: number; published_at: Date | null; last_error: string | null }>(
        'SELECT attempts, published_at, last_error FROM outbox WHERE event_id = ?',
        [eventId],
      );
      return r && r.attempts > 0 ? r : undefined;
    });
    expect(row.published_at).toBeNull();
    expect(row.last_error).toMatch(/unroutable/);
    expect((await relay.metrics.published.get()).values[0]?.value ?? 0).toBe(0);
  });

  it('the broker closing the connection under load: the relay reconnects and every event arrives', async () => {
    const queue = await testQueue();
    const ids = await seedEvents(db.db, 3000);
    const relay = await startRelay({ RELAY_BATCH_SIZE: '50', RELAY_LANES: '1' });
    await waitFor('publishing to be under way', () => queue.received.length > 0);
    const closed = await closeBrokerConnections(relay.instance);
    expect(closed).toBeGreaterThan(0);

    await waitFor('all 3,000 events on the queue', () => queue.counts().size === 3000, { timeoutMs: 60_000 });
    await waitFor('every row marked published', async () => (await pendingCount()) === 0);
    expect(new Set(queue.counts().keys())).toEqual(new Set(ids));
  });

  it('a poison event is retried with back-off, parked as dead, the others flow, and revive brings it back', async () => {
    const queue = await testQueue();
    // amqplib cannot encode a header table over 64 KiB: this event fails on every attempt.
    const [poison] = await seedEvents(db.db, 1, {
      headers: { correlationId: 'poison', junk: 'x'.repeat(70_000) },
    });
    const good = await seedEvents(db.db, 20);
    const service = await startService(
      testConfig(db.url, {
        ROLES: 'app,relay',
        OUTBOX_EXCHANGE: exchange,
        WORKER_QUEUE: workerQueue,
        RELAY_MAX_ATTEMPTS: '3',
        RELAY_BACKOFF_BASE_MS: '100',
        RELAY_BACKOFF_MAX_MS: '400',
        RELAY_POLL_INTERVAL_MS: '20',
        // The operator operations are closed without a token.
        ADMIN_TOKEN: OPERATOR_TOKEN,
      }),
      testLogger(),
    );
    running.push(service);

    await waitFor('the 20 good events to arrive', () => good.every((id) => queue.counts().has(id)));
    const dead = await waitFor('the poison event to be parked', async () => {
      const [r] = await db.query<{
        attempts: number;
        dead_at: Date | null;
        last_error: string;
        occurred_at: Date;
      }>('SELECT attempts, dead_at, last_error, occurred_at FROM outbox WHERE event_id = ?', [poison]);
      return r?.dead_at ? r : undefined;
    });
    expect(dead.attempts).toBe(3);
    expect(dead.last_error).toMatch(/could not publish/);
    // Back-off: attempt 2 waited ≥ 50 ms (half of 100) and attempt 3 ≥ 100 ms (half of 200).
    expect((dead.dead_at as Date).getTime() - dead.occurred_at.getTime()).toBeGreaterThanOrEqual(150);
    expect(queue.counts().has(poison as string)).toBe(false);

    const url = service.app?.url as string;
    const listed = await graphql<{ deadEvents: Array<{ eventId: string; attempts: number }> }>(
      url,
      '{ deadEvents { eventId attempts lastError } outboxStats { dead } }',
      undefined,
      operator,
    );
    expect(listed.data?.deadEvents.map((e) => e.eventId)).toEqual([poison]);

    // The cause is fixed (the header shrinks), then the event is revived on purpose.
    await db.query(`UPDATE outbox SET headers = '{"correlationId":"poison"}' WHERE event_id = ?`, [poison]);
    const revived = await graphql<{ reviveDeadEvents: { eventIds: string[] } }>(
      url,
      'mutation($ids: [ID!]) { reviveDeadEvents(eventIds: $ids) { eventIds } }',
      { ids: [poison] },
      operator,
    );
    expect(revived.data?.reviveDeadEvents.eventIds).toEqual([poison]);
    await waitFor('the revived event to arrive', () => queue.counts().has(poison as string));
    // The mark follows the broker's confirm, a moment after the message reached the queue.
    await waitFor('the revived event to be marked published', async () => (await pendingCount()) === 0);
  });

  it('a graceful stop leaves its unconfirmed batch due: a second relay publishes it without waiting for any timeout', async () => {
    const queue = await testQueue();
    const ids = await seedEvents(db.db, 30);
    // One fault injected: a broker that never confirms, so relay A is stuck holding its batch.
    let holding = 0;
    const stalled: Publisher = {
      isReady: true,
      ready: async () => {},
      publishAll: (messages: readonly OutgoingMessage[], signal?: AbortSignal) =>
        new Promise<PublishOutcome[]>((resolve) => {
          holding = messages.length;
          const fail = () =>
            resolve(messages.map(() => ({ ok: false, reason: 'timeout', error: 'no confirm before stop' })));
          signal?.addEventListener('abort', fail, { once: true });
          setTimeout(fail, 2000);
        }),
    };
    const relayA = new Relay({
      db: db.db,
      publisher: stalled,
      log: createLogger('silent'),
      metrics: new Metrics(db.db),
      owner: 'relay-a',
      batchSize: 100,
      lanes: 1,
      pollIntervalMs: 1000,
      leaseMs: 600_000,
      retry: { maxAttempts: 10, backoffBaseMs: 60_000, backoffMaxMs: 60_000 },
    });
    relayA.start();
    await waitFor('relay A to hold the batch', () => holding === 30);
    await relayA.stop();
    const [after] = await db.query<{ leased: number; attempts: number }>(
      'SELECT SUM(lease_token IS NOT NULL) AS leased, SUM(attempts) AS attempts FROM outbox',
    );
    expect(Number(after?.leased)).toBe(0);
    expect(Number(after?.attempts)).toBe(0);

    // Relay A's claim would be held for 10 minutes: only the stop's hand-back lets B publish now.
    await startRelay();
    await waitFor('relay B to publish all 30', () => queue.counts().size === 30, { timeoutMs: 10_000 });
    expect(new Set(queue.counts().keys())).toEqual(new Set(ids));
  });
});
