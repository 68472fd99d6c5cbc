/**
 * Relay throughput: seed N outbox events, drain them with 1, 2 and 4 relays, and compare each
 * with the broker ceiling measured in the same run: raw amqplib publishing the same messages
 * with confirms into the same kind of queue (a durable quorum queue), as fast as it goes.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { sql } from 'drizzle-orm';
import { declareWorkerQueues, topologyFor } from '../src/broker/topology.js';
import { CUSTOMER_CREATED } from '../src/customers/events.js';
import { outbox } from '../src/db/schema.js';
import { claimAndSettle } from '../src/outbox/claim.js';
import { routingKeyOf } from '../src/outbox/event.js';
import { cpuSeconds, servers } from './cpu.js';
import {
  BENCH_AMQP_URL,
  type BenchDatabase,
  benchConfig,
  benchRelayEnv,
  createBenchDatabase,
  dbClock,
  drainSeconds,
  report,
  round,
  spawnBenchService,
  waitUntil,
} from './support.js';

/**
 * CPU per event of each process taking part, read from /proc (Linux; elsewhere left out): what
 * bounds a drain on a machine whose cores the database, the broker and the relays share. `self`
 * is this benchmark's own process (the raw publisher of the ceiling).
 */
function cpuMeter(relayPids: readonly (number | undefined)[] = []) {
  const pids = servers();
  const relays = () =>
    relayPids.reduce<number | undefined>((sum, pid) => {
      const seconds = cpuSeconds(pid);
      return sum === undefined || seconds === undefined ? undefined : sum + seconds;
    }, 0);
  const read = () => ({
    mariadb: cpuSeconds(pids.mariadb),
    rabbitmq: cpuSeconds(pids.rabbitmq),
    relays: relayPids.length > 0 ? relays() : undefined,
    self: process.cpuUsage(),
  });
  const start = read();
  return (events: number): Record<string, number | undefined> => {
    const end = read();
    const us = (a: number | undefined, b: number | undefined) =>
      a === undefined || b === undefined ? undefined : Math.round(((b - a) * 1e6) / events);
    const self = process.cpuUsage(start.self);
    const figures: Record<string, number | undefined> = {
      mariadb: us(start.mariadb, end.mariadb),
      rabbitmq: us(start.rabbitmq, end.rabbitmq),
      ...(relayPids.length > 0
        ? { relays: us(start.relays, end.relays) }
        : { self: Math.round((self.user + self.system) / events) }),
    };
    const values = Object.values(figures);
    figures.total = values.every((v) => v !== undefined)
      ? values.reduce<number>((a, b) => a + (b as number), 0)
      : undefined;
    return figures;
  };
}

/** Seconds between seeding a drain's backlog and its becoming due: seeding and relay start-up fit in it. */
const RELAY_GATE_SECONDS = 25;

function envelope(n: number) {
  const eventId = randomUUID();
  const occurredAt = new Date();
  const payload = {
    customerId: String(n + 1),
    email: `customer${n}@example.com`,
    name: `Customer ${n}`,
    createdAt: occurredAt.toISOString(),
  };
  return { eventId, occurredAt, payload };
}

/**
 * `count` events of `count / perCustomer` customers. A customer's first event is due; the later
 * ones are held behind it, as the writer leaves them when they are appended before the first is
 * published, so draining them exercises the ordering (each is released by its predecessor's mark).
 */
async function seed(db: BenchDatabase, count: number, perCustomer = 1, due = sql`NOW(3)`): Promise<void> {
  // TRUNCATE, not DELETE: a mass delete leaves delete-marked index entries for InnoDB's purge.
  await db.pool.query('TRUNCATE TABLE outbox');
  for (let start = 0; start < count; start += 1000) {
    const rows = Array.from({ length: Math.min(1000, count - start) }, (_, i) => {
      const n = start + i;
      const e = envelope(Math.floor(n / perCustomer));
      const sequence = (n % perCustomer) + 1;
      return {
        eventId: e.eventId,
        aggregateType: 'Customer',
        aggregateId: e.payload.customerId,
        sequence,
        type: CUSTOMER_CREATED,
        payload: e.payload,
        headers: { correlationId: randomUUID() },
        occurredAt: e.occurredAt,
        nextAttemptAt: sequence === 1 ? due : sql`'9999-12-31'`,
        held: sequence > 1,
      };
    });
    await db.db.insert(outbox).values(rows);
  }
}

/** Raw amqplib: publish `count` envelopes with confirms, keeping the socket full. */
async function brokerCeiling(exchange: string, count: number): Promise<number> {
  const connection = await amqp.connect(BENCH_AMQP_URL);
  const channel = await connection.createConfirmChannel();
  const routingKey = routingKeyOf(CUSTOMER_CREATED);
  const started = performance.now();
  for (let n = 0; n < count; n++) {
    const e = envelope(n);
    const body = Buffer.from(
      JSON.stringify({
        ...e,
        type: CUSTOMER_CREATED,
        aggregateType: 'Customer',
        aggregateId: e.payload.customerId,
        sequence: 1,
        occurredAt: e.occurredAt.toISOString(),
      }),
    );
    const ok = channel.publish(exchange, routingKey, body, {
      persistent: true,
      mandatory: true,
      messageId: e.eventId,
      type: CUSTOMER_CREATED,
      contentType: 'application/json',
      headers: { correlationId: e.eventId },
    });
    if (!ok) await new Promise((resolve) => channel.once('drain', resolve));
  }
  await channel.waitForConfirms();
  const seconds = (performance.now() - started) / 1000;
  await connection.close();
  return count / seconds;
}

/** Claims and marks every event the way a relay lane does, publishing nothing. */
async function claimAndMarkOnly(
  db: BenchDatabase,
  count: number,
  batchSize: number,
  lanes: number,
): Promise<number> {
  const retry = { maxAttempts: 10, backoffBaseMs: 1000, backoffMaxMs: 60_000 };
  const started = performance.now();
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      for (;;) {
        const outcome = await claimAndSettle(
          db.db,
          { limit: batchSize, holdSeconds: 60, retry },
          async (batch) => ({
            published: batch,
            failed: new Map(),
          }),
        );
        if (outcome === undefined) return;
      }
    }),
  );
  return count / ((performance.now() - started) / 1000);
}

/**
 * The relay as a first version usually has it, for comparison: read unpublished rows in id
 * order, publish each, mark each. With `confirms`, each publish waits for its confirm before the
 * row is marked (safe, one round trip to the broker per event); without, rows are marked as soon
 * as the message is written to the socket (fast, and loses events when the broker drops them:
 * shown for reference only).
 */
async function seedStyleRelay(
  db: BenchDatabase,
  exchange: string,
  count: number,
  confirms: boolean,
): Promise<number> {
  const connection = await amqp.connect(BENCH_AMQP_URL);
  const channel = confirms ? await connection.createConfirmChannel() : await connection.createChannel();
  const routingKey = routingKeyOf(CUSTOMER_CREATED);
  const started = performance.now();
  let published = 0;
  while (published < count) {
    const [rows] = await db.pool.query(
      'SELECT id, event_id, aggregate_id, sequence, occurred_at, payload FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 100',
    );
    const batch = rows as Array<{
      id: number;
      event_id: string;
      aggregate_id: string;
      sequence: number;
      occurred_at: Date;
      payload: string;
    }>;
    if (batch.length === 0) break;
    for (const row of batch) {
      const body = Buffer.from(
        JSON.stringify({
          eventId: row.event_id,
          type: CUSTOMER_CREATED,
          aggregateType: 'Customer',
          aggregateId: row.aggregate_id,
          sequence: row.sequence,
          occurredAt: row.occurred_at,
          payload: typeof row.payload === 'string' ? JSON.parse(row.payload) : row.payload,
        }),
      );
      const options = {
        persistent: true,
        messageId: row.event_id,
        type: CUSTOMER_CREATED,
        contentType: 'application/json',
      };
      if (confirms) {
        await new Promise<void>((resolve, reject) =>
          (channel as amqp.ConfirmChannel).publish(exchange, routingKey, body, options, (error) =>
            error ? reject(error) : resolve(),
          ),
        );
      } else {
        channel.publish(exchange, routingKey, body, options);
      }
      await db.pool.query('UPDATE outbox SET published_at = NOW(3) WHERE id = ?', [row.id]);
      published++;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  await connection.close();
  return published / seconds;
}

export async function runRelayBenchmark(events: number): Promise<void> {
  const db = await createBenchDatabase('relay');
  const suffix = randomBytes(3).toString('hex');
  const topology = topologyFor(`bench.events.${suffix}`, `bench.worker.${suffix}`, [CUSTOMER_CREATED]);
  const admin = await amqp.connect(BENCH_AMQP_URL);
  const channel = await admin.createChannel();
  try {
    await declareWorkerQueues(channel, topology);

    let meter = cpuMeter();
    const ceiling = await brokerCeiling(topology.exchange, events);
    const ceilingCpu = meter(events);
    report({
      scenario: 'broker-ceiling',
      events,
      eventsPerSecond: Math.round(ceiling),
      cpuUsPerEvent: ceilingCpu,
    });
    await channel.purgeQueue(topology.workerQueue);

    // A second reference: the relay's database work alone (claim and mark, nothing published),
    // run in this process, from the sources through tsx: its `self` CPU holds tsx's few percent.
    // Both ceilings are measured with the machine to themselves; a relay needs both at once.
    await seed(db, events);
    const config = benchConfig(db.url, {});
    meter = cpuMeter();
    const databaseCeiling = await claimAndMarkOnly(db, events, config.relay.batchSize, config.relay.lanes);
    const databaseCpu = meter(events);
    // If the two shares of work could not overlap at all, the rate would be this harmonic bound.
    const serialBound = 1 / (1 / ceiling + 1 / databaseCeiling);
    report({
      scenario: 'database-ceiling',
      events,
      eventsPerSecond: Math.round(databaseCeiling),
      serialBoundEventsPerSecond: Math.round(serialBound),
      cpuUsPerEvent: databaseCpu,
    });

    // Two more references: the relay as a first version usually has it (one event at a time).
    // On a share of the events: one confirm at a time is slow.
    const seedStyleEvents = Math.min(events, 5000);
    for (const confirms of [true, false]) {
      await seed(db, seedStyleEvents);
      const rate = await seedStyleRelay(db, topology.exchange, seedStyleEvents, confirms);
      await channel.purgeQueue(topology.workerQueue);
      report({
        scenario: confirms ? 'seed-style-relay-confirm-each' : 'seed-style-relay-no-confirms-unsafe',
        events: seedStyleEvents,
        eventsPerSecond: Math.round(rate),
        ratioToCeiling: round(rate / ceiling),
      });
    }

    let oneRelay = 0;
    // Ordering's cost: the same number of events, one relay, as 1, 2 and 5 events per customer
    // (with more than one, every later event is held until its predecessor is marked).
    for (const [relays, perCustomer] of [
      [1, 1],
      [2, 1],
      [4, 1],
      [1, 2],
      [1, 5],
    ] as const) {
      // The backlog is seeded before the relays start, in commits of 1,000 rows, as a backlog
      // builds up during an outage, and becomes due at one instant chosen ahead (`due`), by
      // which every relay is up: no statement touches it afterwards. Two other starts were
      // dropped: a mass UPDATE making the rows due, and one INSERT … SELECT of the whole
      // backlog. Each is one transaction over 100,000 rows, and the relays' claims (locking
      // reads, SKIP LOCKED) stepped over its rows while it ran or until InnoDB's purge caught
      // up; with 8 lanes per relay that filled MariaDB's default 128 MB buffer pool with lock
      // memory, and MariaDB aborted ("Over 95 percent of the buffer pool is occupied by lock
      // heaps"). README, Operating it.
      const due = await dbClock(db, RELAY_GATE_SECONDS);
      await seed(db, events, perCustomer, sql`${due}`);
      const env = benchRelayEnv(db.url, topology.exchange, topology.workerQueue);
      // Each relay is a standalone process (`npm start -- relay`), as in a scaled deployment.
      const services = await Promise.all(
        Array.from({ length: relays }, () => spawnBenchService('relay', env)),
      );
      const [[{ early }]] = (await db.pool.query('SELECT NOW(3) < ? AS early', [due])) as unknown as [
        [{ early: number }],
      ];
      // CPU from the instant the backlog is due: the relays' idle polling and the seeding before
      // it are left out. It still holds a relay's start-up if that came after the instant
      // (allRelaysReadyBeforeDue false), and up to one check (50 ms) after the last publish.
      await waitUntil(async () => {
        const [[{ started }]] = (await db.pool.query('SELECT NOW(3) >= ? AS started', [due])) as unknown as [
          [{ started: number }],
        ];
        return Number(started) === 1;
      }, 5);
      meter = cpuMeter(services.map((s) => s.pid));
      // Done when no row is unpublished: one index entry read, not a count of the backlog every
      // 50 ms, which would take a share of the database's CPU from the relays being measured.
      await waitUntil(async () => {
        const [rows] = await db.pool.query('SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT 1');
        return (rows as unknown[]).length === 0;
      }, 50);
      // The drain's time by the database's clock, from the instant the backlog became due to
      // the last publish.
      const drainCpu = meter(events);
      const seconds = await drainSeconds(db, due);
      await Promise.all(services.map((s) => s.stop()));
      const { messageCount } = await channel.checkQueue(topology.workerQueue);
      await channel.purgeQueue(topology.workerQueue);
      const rate = events / seconds;
      if (relays === 1 && perCustomer === 1) oneRelay = rate;
      report({
        scenario: perCustomer === 1 ? 'relay-drain' : 'relay-drain-ordered',
        relays,
        eventsPerCustomer: perCustomer,
        events,
        batchSize: config.relay.batchSize,
        lanesPerRelay: config.relay.lanes,
        seconds: round(seconds),
        eventsPerSecond: Math.round(rate),
        ratioToCeiling: round(rate / ceiling),
        ratioToSerialBound: round(rate / serialBound),
        ratioToOneRelayOneEventPerCustomer: round(rate / oneRelay),
        cpuUsPerEvent: drainCpu,
        // The ratio to the ceiling if both used the machine's cores to the full: the ceiling's
        // CPU per event over the drain's. A drain near it is bound by CPU, not by waiting.
        cpuBoundRatioToCeiling:
          ceilingCpu.total && drainCpu.total ? round(ceilingCpu.total / drainCpu.total) : undefined,
        messagesOnQueue: messageCount,
        // False when a relay came up after the backlog was due: its figure is then pessimistic.
        allRelaysReadyBeforeDue: Number(early) === 1,
      });
    }
  } finally {
    await channel.deleteQueue(topology.workerQueue).catch(() => {});
    await channel.deleteQueue(topology.workerRetryQueue).catch(() => {});
    await channel.deleteQueue(topology.workerWaitQueue).catch(() => {});
    await channel.deleteQueue(topology.workerDeadLetterQueue).catch(() => {});
    await channel.deleteExchange(topology.exchange).catch(() => {});
    await channel.deleteExchange(topology.relayHintExchange).catch(() => {});
    await channel.deleteExchange(topology.historyHintExchange).catch(() => {});
    await admin.close();
    await db.drop();
  }
}
