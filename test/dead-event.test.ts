import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OutgoingMessage } from '../src/broker/publisher.js';
import { reviveDead } from '../src/outbox/dead.js';
import { type RunningService, startService } from '../src/service.js';
import { connectTestBroker, type TestBroker } from './support/amqp.js';
import { bindTestQueue, brokerObjectsOf, deleteBrokerObjects, type TestQueue } from './support/broker.js';
import { createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startTestRelay, type TestRelay } from './support/faults.js';
import { graphql, testConfig, testLogger } from './support/service.js';
import { waitFor } from './support/wait.js';

/**
 * A dead event holds back its own customer and nobody else, until an operator revives it (its
 * successor follows in order) or skips it (its successor moves on, and the worker accepts the gap).
 */

const ADMIN_TOKEN = 'test-admin-token-0123456789';
const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };

let db: TestDatabase;
let broker: TestBroker;
let service: RunningService;
let relay: TestRelay;
let queue: TestQueue;
let url: string;
/** The (customer id, sequence) pairs the relay's publisher refuses, every time. */
const poisoned = new Set<string>();

const keyOf = (message: OutgoingMessage) => {
  const body = JSON.parse(message.body.toString('utf8')) as { aggregateId: string; sequence: number };
  return `${body.aggregateId}#${body.sequence}`;
};

beforeAll(async () => {
  db = await createTestDatabase('dead_event');
  broker = await connectTestBroker();
  service = await startService(
    testConfig(db.url, { ROLES: 'app,worker', ADMIN_TOKEN, WORKER_ORDER_WAIT_MS: '50' }),
    testLogger(),
  );
  url = service.app?.url as string;
  const { exchange, workerQueue } = service.topology;
  queue = await bindTestQueue(exchange, '#');
  relay = startTestRelay({
    db: db.db,
    exchange,
    workerQueue,
    owner: 'dead-event-relay',
    maxAttempts: 2,
    backoffBaseMs: 20,
    backoffMaxMs: 50,
    decide: (message) => (poisoned.has(keyOf(message)) ? 'nacked' : 'ok'),
  });
  await waitFor('the worker to consume', async () => (await broker.consumerCount(workerQueue)) > 0);
});

afterAll(async () => {
  await relay?.stop();
  await service?.stop();
  await queue?.close();
  await broker?.close();
  await db?.drop();
  if (service)
    await deleteBrokerObjects(brokerObjectsOf(service.topology.exchange, service.topology.workerQueue));
});

async function rename(customerId: string, name: string): Promise<string> {
  const response = await graphql<{ updateCustomer: { eventId: string } }>(
    url,
    'mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) { eventId } }',
    { input: { id: customerId, name } },
  );
  expect(response.errors).toBeUndefined();
  return response.data?.updateCustomer.eventId as string;
}

const stats = async () =>
  (await graphql<{ outboxStats: { held: number; dead: number } }>(url, '{ outboxStats { held dead } }')).data
    ?.outboxStats;

/** The customer's handled sequences, in history order. */
const handledSequences = async (customerId: string) =>
  (
    await db.query<{ sequence: number }>(
      "SELECT sequence FROM handled_events WHERE aggregate_type = 'Customer' AND aggregate_id = ? ORDER BY position",
      [customerId],
    )
  ).map((r) => r.sequence);

/** The customer's sequences as they first appeared on the exchange. */
const publishedSequences = (customerId: string) => {
  const seen = new Set<string>();
  const sequences: number[] = [];
  for (const m of queue.received) {
    const id = String(m.properties.messageId);
    if (m.body.aggregateId !== customerId || seen.has(id)) continue;
    seen.add(id);
    sequences.push(Number(m.body.sequence));
  }
  return sequences;
};

/** A customer whose second event goes dead, with a third held behind it. */
async function customerWithDeadEvent(label: string) {
  const customer = await createCustomer(url, label);
  poisoned.add(`${customer.customerId}#2`);
  const dead = await rename(customer.customerId, `${label} two`);
  const held = await rename(customer.customerId, `${label} three`);
  await waitFor(`${label}'s second event to go dead`, async () => {
    const [row] = await db.query<{ dead_at: Date | null }>('SELECT dead_at FROM outbox WHERE event_id = ?', [
      dead,
    ]);
    return row?.dead_at != null;
  });
  return { customer, dead, held };
}

describe('a dead event holds its aggregate', () => {
  it('the next event stays held while other customers flow; reviveDeadEvents publishes both in order', async () => {
    const { customer, dead, held } = await customerWithDeadEvent('revive');
    const [deadRow] = await db.query<{ attempts: number; last_error: string }>(
      'SELECT attempts, last_error FROM outbox WHERE event_id = ?',
      [dead],
    );
    expect(deadRow).toEqual({ attempts: 2, last_error: 'injected: nacked' });

    // Another customer is not held back.
    const other = await createCustomer(url, 'bystander');
    await rename(other.customerId, 'bystander two');
    await waitFor(
      'the bystander handled',
      async () => (await handledSequences(other.customerId)).length === 2,
    );

    expect(await stats()).toEqual({ held: 1, dead: 1 });
    expect(await handledSequences(customer.customerId)).toEqual([1]);
    expect(publishedSequences(customer.customerId)).toEqual([1]);
    const [heldRow] = await db.query<{ held: number; published_at: Date | null }>(
      'SELECT held, published_at FROM outbox WHERE event_id = ?',
      [held],
    );
    expect(heldRow).toEqual({ held: 1, published_at: null });

    // Operator operations need the token.
    const refused = await graphql(
      url,
      'mutation($ids: [ID!]) { reviveDeadEvents(eventIds: $ids) { eventIds } }',
      {
        ids: [dead],
      },
    );
    expect(refused.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');

    poisoned.clear();
    const revived = await graphql<{ reviveDeadEvents: { eventIds: string[] } }>(
      url,
      'mutation($ids: [ID!]) { reviveDeadEvents(eventIds: $ids) { eventIds } }',
      { ids: [dead] },
      admin,
    );
    expect(revived.data?.reviveDeadEvents.eventIds).toEqual([dead]);
    await waitFor('both handled', async () => (await handledSequences(customer.customerId)).length === 3);
    expect(await handledSequences(customer.customerId)).toEqual([1, 2, 3]);
    expect(publishedSequences(customer.customerId)).toEqual([1, 2, 3]);
    await waitFor('nothing held or dead', async () => {
      const s = await stats();
      return s?.held === 0 && s.dead === 0;
    });
  });

  it('skipDeadEvents: the next event is published and handled across the gap; the skipped one never is', async () => {
    const { customer, dead, held } = await customerWithDeadEvent('skip');
    expect(await stats()).toEqual({ held: 1, dead: 1 });

    const refused = await graphql(
      url,
      'mutation($ids: [ID!]!) { skipDeadEvents(eventIds: $ids) { eventIds } }',
      {
        ids: [dead],
      },
    );
    expect(refused.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');

    const skipped = await graphql<{ skipDeadEvents: { eventIds: string[] } }>(
      url,
      'mutation($ids: [ID!]!) { skipDeadEvents(eventIds: $ids) { eventIds } }',
      { ids: [dead] },
      admin,
    );
    expect(skipped.data?.skipDeadEvents.eventIds).toEqual([dead]);
    await waitFor(
      'the successor handled',
      async () => (await handledSequences(customer.customerId)).length === 2,
    );
    expect(await handledSequences(customer.customerId)).toEqual([1, 3]);
    expect(publishedSequences(customer.customerId)).toEqual([1, 3]);
    expect(queue.counts().has(dead)).toBe(false);
    const [row] = await db.query<{ last_error: string }>('SELECT last_error FROM outbox WHERE event_id = ?', [
      dead,
    ]);
    expect(row?.last_error).toMatch(/^skipped by an operator/);
    expect(await stats()).toEqual({ held: 0, dead: 0 });
    expect((await db.query('SELECT 1 FROM handled_events WHERE event_id = ?', [held])).length).toBe(1);
  });

  it('reviveDead brings back many dead events in transactions of a bounded size, each once, in dead order', async () => {
    // Dead rows of customers that do not exist (once revived, the worker parks them), all dead
    // at the same millisecond, so the walk from one chunk to the next must go on by id.
    const insertDead = async (count: number, label: string) => {
      const ids = Array.from({ length: count }, () => randomUUID());
      for (const [n, id] of ids.entries()) {
        await db.query(
          `INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, type, payload, headers, occurred_at,
             next_attempt_at, dead_at, attempts, last_error)
           VALUES (?, 'Customer', ?, 1, 'CustomerCreated', '{}', '{}', NOW(3), NOW(3), '2026-01-01 00:00:00.000', 2, 'nacked')`,
          [id, `${label}-${n}-${id}`],
        );
      }
      return ids;
    };
    const deadState = async (ids: readonly string[]) =>
      db.query<{ dead: number; attempts: number }>(
        `SELECT dead_at IS NOT NULL AS dead, attempts FROM outbox WHERE event_id IN (${ids.map(() => '?').join(',')})`,
        [...ids],
      );

    // Every dead event, two by two: three transactions, each event once, in id order.
    const all = await insertDead(5, 'revive-all');
    expect(await reviveDead(db.db, undefined, 2)).toEqual(all);
    expect((await deadState(all)).every((r) => Number(r.dead) === 0 && Number(r.attempts) === 0)).toBe(true);
    expect(await reviveDead(db.db, undefined, 2)).toEqual([]);

    // Only the ones named, also across chunks.
    const some = await insertDead(5, 'revive-some');
    const named = [some[0], some[2], some[4]] as string[];
    expect(await reviveDead(db.db, named, 2)).toEqual(named);
    expect((await deadState(some)).map((r) => Number(r.dead))).toEqual([0, 1, 0, 1, 0]);
    expect(await reviveDead(db.db, undefined, 2)).toEqual([some[1], some[3]]);
  });
});
