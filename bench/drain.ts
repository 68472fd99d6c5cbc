/**
 * The worker's drain: a backlog of N CustomerCreated events already in the worker queue (as a
 * broker cut leaves it), then the consumer starts, and the time and CPU it takes to handle them
 * all. Per event: the consumer process's CPU and MariaDB's, read from /proc from the moment the
 * consumer answers its health check (its start-up left out) to the last history position.
 *
 * Beside the product's worker (`dist/main.js worker`) the floor's consumer (bench/floor/:
 * inbox + welcome e-mail + history in one transaction per arrived group, trusting the message),
 * each on a fresh database and queue, alternated in rounds; the ratios are printed.
 * BENCH_DRAIN_BASELINE names another build's main.js (say, main's, compiled to tmp/) to drain
 * beside the product in the same rounds: an A/B of a change.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { loadavg } from 'node:os';
import amqp from 'amqplib';
import { declareWorkerQueues, topologyFor } from '../src/broker/topology.js';
import { CUSTOMER_EVENT_TYPES } from '../src/customers/events.js';
import { routingKeyOf } from '../src/outbox/event.js';
import { cpuSeconds, servers } from './cpu.js';
import {
  BENCH_AMQP_URL,
  type BenchDatabase,
  createBenchDatabase,
  deleteBrokerObjects,
  median,
  report,
  round,
  type ServiceChild,
  spawnBenchService,
  waitUntil,
} from './support.js';
import { spawnFloor } from './target.js';

type DrainTarget = 'product' | 'baseline' | 'floor';

interface DrainFigures {
  readonly eventsPerSecond: number;
  /** CPU µs per event of the consumer process, MariaDB and RabbitMQ. */
  readonly nodeUs: number;
  readonly mariadbUs: number;
  readonly rabbitmqUs: number;
  /** The same over the second half of the drain, once the consumer is warm. */
  readonly warmNodeUs: number;
  readonly warmEventsPerSecond: number;
  /** Events per handling transaction (rows of a group share their handled_at). */
  readonly meanGroup: number;
}

const ROWS_PER_INSERT = 1000;

/** `count` customers and their CustomerCreated events, stored as the writer stores them. */
async function seed(db: BenchDatabase, count: number) {
  const events: Array<{ eventId: string; id: string; body: Buffer }> = [];
  for (let start = 0; start < count; start += ROWS_PER_INSERT) {
    const customers: unknown[] = [];
    const outbox: unknown[] = [];
    for (let n = start; n < Math.min(count, start + ROWS_PER_INSERT); n++) {
      const id = String(n + 1);
      const occurredAt = new Date();
      const iso = occurredAt.toISOString();
      const at = iso.slice(0, 23).replace('T', ' ');
      const payload = { customerId: id, email: `drain${n}@example.com`, name: `Drain ${n}`, createdAt: iso };
      const eventId = randomUUID();
      customers.push([id, payload.email, payload.email, payload.name, at, 1]);
      outbox.push([eventId, 'Customer', id, 1, 'CustomerCreated', JSON.stringify(payload), '{}', at, at, at]);
      const envelope = {
        eventId,
        type: 'CustomerCreated',
        aggregateType: 'Customer',
        aggregateId: id,
        sequence: 1,
        occurredAt: iso,
        payload,
      };
      events.push({ eventId, id, body: Buffer.from(JSON.stringify(envelope)) });
    }
    await db.pool.query(
      'INSERT INTO customers (id, email, email_normalized, name, created_at, version) VALUES ?',
      [customers],
    );
    await db.pool.query(
      'INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, type, payload, headers,' +
        ' occurred_at, next_attempt_at, published_at) VALUES ?',
      [outbox],
    );
  }
  return events;
}

/** The events published to the exchange as the relay publishes them, confirmed, into the queue. */
async function publishBacklog(
  target: DrainTarget,
  exchange: string,
  queue: string,
  events: ReadonlyArray<{ eventId: string; body: Buffer }>,
): Promise<void> {
  const connection = await amqp.connect(BENCH_AMQP_URL);
  try {
    const channel = await connection.createConfirmChannel();
    if (target === 'floor') {
      await channel.assertExchange(exchange, 'topic', { durable: true });
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
      await channel.bindQueue(queue, exchange, routingKeyOf('CustomerCreated'));
    } else await declareWorkerQueues(channel, topologyFor(exchange, queue, CUSTOMER_EVENT_TYPES));
    for (const { eventId, body } of events) {
      const ok = channel.publish(exchange, routingKeyOf('CustomerCreated'), body, {
        persistent: true,
        mandatory: true,
        messageId: eventId,
        type: 'CustomerCreated',
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        appId: 'graphql-outbox',
        correlationId: eventId,
        headers: { correlationId: eventId },
      });
      if (!ok) await new Promise((resolve) => channel.once('drain', resolve));
    }
    await channel.waitForConfirms();
    const { messageCount } = await channel.checkQueue(queue);
    if (messageCount !== events.length)
      throw new Error(`${messageCount} messages in ${queue}, ${events.length} published`);
  } finally {
    await connection.close();
  }
}

/** Events per transaction: a group's history rows share their handled_at. */
async function meanGroup(db: BenchDatabase): Promise<number> {
  const [rows] = await db.pool.query(
    'SELECT COUNT(*) / COUNT(DISTINCT handled_at) AS mean FROM handled_events',
  );
  return round(Number((rows as Array<{ mean: string }>)[0]?.mean), 1);
}

/** Events handled so far: the history's position counter (product and floor both take from it). */
async function handled(db: BenchDatabase): Promise<number> {
  const [rows] = await db.pool.query('SELECT position FROM history_positions WHERE id = 1');
  return Number((rows as Array<{ position: number }>)[0]?.position ?? 0);
}

async function startConsumer(
  target: DrainTarget,
  db: BenchDatabase,
  exchange: string,
  queue: string,
): Promise<ServiceChild> {
  const env = { DATABASE_URL: db.url, OUTBOX_EXCHANGE: exchange, WORKER_QUEUE: queue };
  if (target === 'floor') return spawnFloor(env);
  const main = target === 'baseline' ? process.env.BENCH_DRAIN_BASELINE : undefined;
  return spawnBenchService('worker', env, main);
}

async function drainOnce(target: DrainTarget, count: number): Promise<DrainFigures> {
  const db = await createBenchDatabase(`drain_${target}`);
  const suffix = randomBytes(3).toString('hex');
  const exchange = `bench.drain.${suffix}`;
  const queue = `bench.drain.${suffix}.worker`;
  let consumer: ServiceChild | undefined;
  try {
    await publishBacklog(target, exchange, queue, await seed(db, count));
    const { mariadb, rabbitmq } = servers();
    consumer = await startConsumer(target, db, exchange, queue);
    const pid = consumer.pid;
    const read = () => ({
      at: performance.now(),
      node: cpuSeconds(pid) ?? Number.NaN,
      mariadb: cpuSeconds(mariadb) ?? Number.NaN,
      rabbitmq: cpuSeconds(rabbitmq) ?? Number.NaN,
    });
    const start = { ...read(), done: await handled(db) };
    let half: (ReturnType<typeof read> & { done: number }) | undefined;
    let done = start.done;
    await waitUntil(async () => {
      done = await handled(db);
      if (!half && done >= start.done + (count - start.done) / 2) half = { ...read(), done };
      return done >= count;
    }, 25);
    const end = read();
    const events = count - start.done;
    const perEvent = (from: number, to: number, n: number) => Math.round(((to - from) * 1e6) / n);
    const warm = half ?? start;
    return {
      eventsPerSecond: Math.round(events / ((end.at - start.at) / 1000)),
      nodeUs: perEvent(start.node, end.node, events),
      mariadbUs: perEvent(start.mariadb, end.mariadb, events),
      rabbitmqUs: perEvent(start.rabbitmq, end.rabbitmq, events),
      warmNodeUs: perEvent(warm.node, end.node, count - warm.done),
      warmEventsPerSecond: Math.round((count - warm.done) / ((end.at - warm.at) / 1000)),
      meanGroup: await meanGroup(db),
    };
  } finally {
    await consumer?.stop();
    await db.drop();
    await deleteBrokerObjects(exchange, queue);
  }
}

export async function runDrainBenchmark(count: number, rounds: number): Promise<void> {
  const targets: DrainTarget[] = process.env.BENCH_DRAIN_BASELINE
    ? ['product', 'baseline', 'floor']
    : ['product', 'floor'];
  const figures = new Map<DrainTarget, DrainFigures[]>(targets.map((t) => [t, []]));
  for (let r = 1; r <= rounds; r++) {
    const order = r % 2 === 1 ? targets : [...targets].reverse();
    for (const target of order) {
      const result = await drainOnce(target, count);
      figures.get(target)?.push(result);
      report({
        scenario: 'drain',
        target,
        round: r,
        events: count,
        load: round(loadavg()[0] ?? 0),
        ...result,
      });
    }
  }
  const mid = (target: DrainTarget, pick: (f: DrainFigures) => number) =>
    median((figures.get(target) ?? []).map(pick));
  const versus = (other: DrainTarget) => ({
    eventsPerSecond: round(mid('product', (f) => f.eventsPerSecond) / mid(other, (f) => f.eventsPerSecond)),
    nodeUs: round(mid('product', (f) => f.nodeUs) / mid(other, (f) => f.nodeUs)),
    warmNodeUs: round(mid('product', (f) => f.warmNodeUs) / mid(other, (f) => f.warmNodeUs)),
    mariadbUs: round(mid('product', (f) => f.mariadbUs) / mid(other, (f) => f.mariadbUs)),
  });
  for (const other of targets.filter((t) => t !== 'product')) {
    report({
      scenario: `drain-product-vs-${other}`,
      events: count,
      rounds,
      load: round(loadavg()[0] ?? 0),
      ...versus(other),
    });
  }
}
