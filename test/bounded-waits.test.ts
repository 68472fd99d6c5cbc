import { createServer, type Server, type Socket } from 'node:net';
import { sql } from 'drizzle-orm';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readinessHandler } from '../src/app/readiness.js';
import { BrokerConnection } from '../src/broker/connection.js';
import { ChannelSession } from '../src/broker/session.js';
import { DEFAULT_BOUNDS } from '../src/db/bounds.js';
import { connectDatabase, readRows, transaction, withDeadline } from '../src/db/client.js';
import { isTransientDatabaseError } from '../src/db/errors.js';
import { HistoryFeed } from '../src/history/feed.js';
import { Deadline } from '../src/support/deadline.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { TEST_AMQP_URL } from './support/env.js';
import { startTcpProxy } from './support/proxy.js';
import { testLogger } from './support/service.js';

/** A TCP server that accepts connections and never says a word: a dependency that hangs. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const connectionId = async (tx: Parameters<Parameters<typeof transaction>[1]>[0]) =>
  (await readRows<{ id: number }>(tx, sql`SELECT CONNECTION_ID() AS id`))[0]?.id;

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('bounded_waits');
});

afterAll(async () => {
  await db?.drop();
});

describe('database waits are bounded', () => {
  it('a statement that outlives the query timeout fails as an outage and its connection is replaced', async () => {
    const handle = connectDatabase(db.url, 1, { ...DEFAULT_BOUNDS, queryTimeoutMs: 300 });
    try {
      const first = await transaction(handle.db, connectionId);
      const started = performance.now();
      const error = await transaction(handle.db, async (tx) => {
        await readRows(tx, sql`SELECT SLEEP(5)`);
      }).catch((e: unknown) => e);
      expect(performance.now() - started).toBeLessThan(2_000);
      expect(isTransientDatabaseError(error)).toBe(true);
      // The only connection of the pool was destroyed, not handed back still running SLEEP.
      const second = await transaction(handle.db, connectionId);
      expect(second).not.toBe(first);
    } finally {
      await handle.close();
    }
  });

  it('taking a connection from a pool whose connections are all busy fails at the checkout deadline', async () => {
    const handle = connectDatabase(db.url, 1, { ...DEFAULT_BOUNDS, acquireTimeoutMs: 300 });
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      const holder = transaction(handle.db, async () => held);
      const started = performance.now();
      const error = await transaction(handle.db, async () => {}).catch((e: unknown) => e);
      expect(performance.now() - started).toBeLessThan(1_500);
      expect((error as { code?: string }).code).toBe('POOL_ACQUIRE_TIMEOUT');
      expect(isTransientDatabaseError(error)).toBe(true);
      release();
      await holder;
      // The abandoned checkout gave the connection back when it came: the pool still works.
      await expect(transaction(handle.db, connectionId)).resolves.toBeTypeOf('number');
    } finally {
      release();
      await handle.close();
    }
  });

  it('work for a request whose deadline passed while it waited for a connection is never run', async () => {
    await db.query('CREATE TABLE IF NOT EXISTS late_work (id INT PRIMARY KEY)');
    // A checkout bound far beyond the deadline: only the deadline can stop the late work.
    const handle = connectDatabase(db.url, 1, { ...DEFAULT_BOUNDS, acquireTimeoutMs: 60_000 });
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      const holder = transaction(handle.db, async () => held);
      const deadline = new Deadline(Date.now() + 200);
      setTimeout(() => deadline.abort(new Error('deadline')), 200);
      const late = transaction(withDeadline(handle.db, deadline), async (tx) => {
        await tx.execute(sql`INSERT INTO late_work (id) VALUES (1)`);
      });
      await expect(late).rejects.toSatisfy(isTransientDatabaseError);
      release();
      await holder;
      // The pool is free again now; the abandoned insert must not have run on it.
      await transaction(handle.db, async () => {});
      expect(await db.query('SELECT id FROM late_work')).toEqual([]);
    } finally {
      release();
      await handle.close();
    }
  });

  it("a request's own statements wait for a connection no longer than its deadline, and none is sent after it", async () => {
    await db.query('CREATE TABLE IF NOT EXISTS late_statement (id INT PRIMARY KEY)');
    const handle = connectDatabase(db.url, 2, { ...DEFAULT_BOUNDS, acquireTimeoutMs: 60_000 });
    const release: Array<() => void> = [];
    try {
      // Every statement connection busy: a single statement has to wait for one.
      const holders = [1, 2].map(() =>
        handle.pool.getConnection().then((connection) => {
          release.push(() => connection.release());
        }),
      );
      await Promise.all(holders);
      const deadline = new Deadline(Date.now() + 300);
      const request = withDeadline(handle.db, deadline);
      const started = performance.now();
      const waited = await request.execute(sql`INSERT INTO late_statement (id) VALUES (1)`).catch((e) => e);
      expect(performance.now() - started).toBeLessThan(1_500);
      // Drizzle wraps the driver's error: its cause is the checkout's.
      expect((waited as { cause?: { code?: string } }).cause?.code).toBe('POOL_ACQUIRE_TIMEOUT');
      expect(isTransientDatabaseError(waited)).toBe(true);
      for (const r of release.splice(0)) r();
      // With connections free again, an abandoned request still sends nothing.
      deadline.abort(new Error('client went away'));
      await expect(request.execute(sql`INSERT INTO late_statement (id) VALUES (2)`)).rejects.toSatisfy(
        isTransientDatabaseError,
      );
      // The same database without the deadline works, and neither insert ran.
      expect(await readRows(handle.db, sql`SELECT id FROM late_statement`)).toEqual([]);
    } finally {
      for (const r of release) r();
      await handle.close();
    }
  });

  it("a subscriber's first read of the live feed waits for a connection no longer than its request's deadline", async () => {
    const handle = connectDatabase(db.url, 2, { ...DEFAULT_BOUNDS, acquireTimeoutMs: 60_000 });
    const feed = new HistoryFeed({
      db: handle.db,
      log: testLogger(),
      pollIntervalMs: 20,
      pageSize: 50,
      bufferSize: 100,
    });
    feed.start();
    const filter = { aggregateType: 'customer' };
    const release: Array<() => void> = [];
    try {
      // The feed has its head; then every connection of its pool busy.
      await (await feed.subscribe(filter, 'now')).return?.();
      for (const connection of await Promise.all([1, 2].map(() => handle.pool.getConnection()))) {
        release.push(() => connection.release());
      }
      const started = performance.now();
      const subscribing = feed.subscribe(filter, 'now', new Deadline(Date.now() + 300));
      const outcome = await Promise.race([
        subscribing.then(
          () => 'subscribed',
          (error: unknown) => error,
        ),
        new Promise((resolve) => setTimeout(resolve, 2_000, 'still waiting for a connection')),
      ]);
      expect(isTransientDatabaseError(outcome)).toBe(true);
      expect(performance.now() - started).toBeLessThan(1_500);
    } finally {
      for (const r of release) r();
      await feed.stop();
      await handle.close();
    }
  });
});

describe('/readyz with a dependency that hangs', () => {
  it('answers 503 within 2 s naming what is down, and 200 when both answer', async () => {
    const silent = await silentServer();
    const hanging = connectDatabase(`mysql://root@127.0.0.1:${silent.port}/x`, 2, {
      ...DEFAULT_BOUNDS,
      connectTimeoutMs: 60_000,
    });
    const live = connectDatabase(db.url, 2);
    const broker = new BrokerConnection(TEST_AMQP_URL, 'bounded-waits readiness', testLogger());
    broker.start();
    const silentBroker = new BrokerConnection(
      `amqp://guest:guest@127.0.0.1:${silent.port}`,
      'bounded-waits silent',
      testLogger(),
      { heartbeatSeconds: 5, connectTimeoutMs: 60_000, keepAliveMs: 5_000 },
    );
    silentBroker.start();
    const app = express();
    app.get('/hanging', readinessHandler({ mysql: () => hanging.ping(), rabbitmq: () => broker.answers() }));
    app.get(
      '/silent-broker',
      readinessHandler({ mysql: () => live.ping(), rabbitmq: () => silentBroker.answers() }),
    );
    app.get('/up', readinessHandler({ mysql: () => live.ping(), rabbitmq: () => broker.answers() }));
    // A check that never settles (a round trip lost in a dead link) is down at the deadline.
    app.get('/stuck', readinessHandler({ mysql: () => live.ping(), rabbitmq: () => new Promise(() => {}) }));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const probe = async (path: string) => {
      const started = performance.now();
      const response = await fetch(`${base}${path}`);
      const body = (await response.json()) as { checks: Record<string, string> };
      return { status: response.status, body, ms: performance.now() - started };
    };
    try {
      await expect.poll(async () => (await probe('/up')).status, { timeout: 10_000 }).toBe(200);
      const hung = await probe('/hanging');
      expect(hung.ms).toBeLessThan(2_000);
      expect(hung.status).toBe(503);
      expect(hung.body.checks).toEqual({ mysql: 'down', rabbitmq: 'up' });
      const quiet = await probe('/silent-broker');
      expect(quiet.ms).toBeLessThan(2_000);
      expect(quiet.body.checks).toEqual({ mysql: 'up', rabbitmq: 'down' });
      const stuck = await probe('/stuck');
      expect(stuck.ms).toBeLessThan(2_000);
      expect(stuck.status).toBe(503);
      expect(stuck.body.checks).toEqual({ mysql: 'up', rabbitmq: 'down' });
    } finally {
      server.close();
      await Promise.all([broker.stop(), silentBroker.stop(), live.close(), silent.close()]);
      await hanging.close().catch(() => {});
    }
  });
});

describe('a stop while the broker link drops every packet', () => {
  it('closes a channel session and its connection within 2 s, not when the heartbeat gives up', async () => {
    const target = new URL(TEST_AMQP_URL);
    const proxy = await startTcpProxy(target.hostname, Number(target.port || 5672));
    const url = new URL(TEST_AMQP_URL);
    url.host = `127.0.0.1:${proxy.port}`;
    // The heartbeat alone would end the wait only after two silent intervals (10 s here).
    const broker = new BrokerConnection(url.toString(), 'bounded-waits stop', testLogger(), {
      heartbeatSeconds: 5,
      connectTimeoutMs: 3_000,
      keepAliveMs: 5_000,
    });
    const session = new ChannelSession(broker, 'bounded-waits stop', testLogger(), async (channel) => {
      await channel.checkExchange('amq.fanout');
    });
    try {
      broker.start();
      session.start();
      await expect.poll(() => session.current !== undefined, { timeout: 10_000 }).toBe(true);
      proxy.silence();
      const started = performance.now();
      await session.stop();
      await broker.stop();
      expect(performance.now() - started).toBeLessThan(2_500);
      expect(broker.isConnected).toBe(false);
    } finally {
      await Promise.all([session.stop(), broker.stop()]);
      await proxy.close();
    }
  });
});
