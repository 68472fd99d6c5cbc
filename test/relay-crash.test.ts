import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../src/service.js';
import { bindTestQueue, brokerObjectsOf, deleteBrokerObjects, type TestQueue } from './support/broker.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { TEST_AMQP_URL } from './support/env.js';
import { type ServiceProcess, spawnService } from './support/process.js';
import { seedEvents } from './support/seed.js';
import { testConfig, testLogger, uniqueSuffix } from './support/service.js';
import { waitFor } from './support/wait.js';

let db: TestDatabase;
const suffix = uniqueSuffix();
let exchange = '';
let workerQueue = '';
let queue: TestQueue | undefined;
let survivor: RunningService | undefined;
let victim: ServiceProcess | undefined;
let run = 0;

/** A relay's claim is held this long when it stops answering (the session's wait_timeout). */
const LEASE_MS = 3000;
/** Enough that the victim is still at work (one claim of 50 after another) when it is caught. */
const EVENTS = 10_000;

beforeAll(async () => {
  db = await createTestDatabase('relay_crash');
});

afterEach(async () => {
  victim?.child.kill('SIGKILL');
  victim = undefined;
  await survivor?.stop();
  survivor = undefined;
  await queue?.close();
  queue = undefined;
  await db.query('DELETE FROM outbox');
  await deleteBrokerObjects(brokerObjectsOf(exchange, workerQueue));
});

afterAll(async () => {
  await db?.drop();
});

/** Fresh broker names per test, so a late publish of one cannot count in the next. */
function names() {
  run++;
  exchange = `test.crash.${suffix}.${run}`;
  workerQueue = `test.crash.worker.${suffix}.${run}`;
}

const env = () => ({
  DATABASE_URL: db.url,
  AMQP_URL: TEST_AMQP_URL,
  OUTBOX_EXCHANGE: exchange,
  WORKER_QUEUE: workerQueue,
  METRICS_PORT: '0',
  RELAY_LEASE_MS: String(LEASE_MS),
  RELAY_CONFIRM_TIMEOUT_MS: '1000',
  RELAY_BATCH_SIZE: '50',
  RELAY_LANES: '1',
});

/**
 * Rows locked by open transactions of other sessions on the test database: a relay's claim.
 * `idle`: only sessions running no statement, so a claim whose settlement and COMMIT left just
 * before its relay froze (and still run on the server) does not count as held.
 */
async function rowsLockedByOthers({ idle = false } = {}): Promise<number> {
  const [row] = await db.query<{ n: number | null }>(
    `SELECT SUM(t.trx_rows_locked) AS n FROM information_schema.INNODB_TRX t
       JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
     WHERE p.DB = ? AND p.ID <> CONNECTION_ID() AND (? = 0 OR p.COMMAND = 'Sleep')`,
    [db.name, idle ? 1 : 0],
  );
  return Number(row?.n ?? 0);
}

const unpublished = async () =>
  Number(
    (await db.query<{ n: number }>('SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL'))[0]?.n,
  );

/**
 * Starts a standalone relay process and freezes it at a moment it holds a claimed batch. Any
 * events it seeds meanwhile to keep the relay at work are added to `extra`.
 */
async function frozenWhileClaiming(extra: string[]): Promise<ServiceProcess> {
  const process = spawnService('relay', env());
  victim = process;
  await waitFor('the victim to be publishing', () => queue !== undefined && queue.received.length > 0, {
    timeoutMs: 30_000,
  });
  await waitFor(
    'the victim frozen while it holds a claim',
    async () => {
      process.child.kill('SIGSTOP');
      if ((await rowsLockedByOthers({ idle: true })) > 0) return true;
      process.child.kill('SIGCONT');
      // A busy machine may let it finish before it is caught: keep it at work.
      if ((await unpublished()) < 1000) extra.push(...(await seedEvents(db.db, 2000)));
      return false;
    },
    { timeoutMs: 60_000 },
  );
  return process;
}

async function startSurvivor(): Promise<RunningService> {
  survivor = await startService(
    testConfig(db.url, { ROLES: 'relay', OUTBOX_EXCHANGE: exchange, WORKER_QUEUE: workerQueue }),
    testLogger(),
  );
  return survivor;
}

describe('relay crash', () => {
  it('a relay process killed with SIGKILL while it holds a claimed batch: the server rolls its claim back at once and another relay publishes every event', async () => {
    names();
    queue = await bindTestQueue(exchange, '#');
    const ids = await seedEvents(db.db, EVENTS);
    const process = await frozenWhileClaiming(ids);
    process.child.kill('SIGKILL');
    expect(await process.exited).toBe('SIGKILL');
    // The connection closed with the process: nothing stays locked, without waiting for a timeout.
    await waitFor('the claim to be rolled back', async () => (await rowsLockedByOthers()) === 0, {
      timeoutMs: LEASE_MS - 1000,
    });

    await startSurvivor();
    await waitFor('every row marked published', async () => (await unpublished()) === 0, {
      timeoutMs: 60_000,
    });
    await waitFor(
      'every event on the queue',
      () => queue !== undefined && queue.counts().size === ids.length,
    );
    // Some of the killed relay's batch may have reached the broker before the kill: at least
    // once, so duplicates are fine; a loss is not.
    expect(new Set(queue.counts().keys())).toEqual(new Set(ids));
  });

  it('a relay frozen while it holds a claimed batch: the server ends its claim after RELAY_LEASE_MS, another relay publishes the batch, and the thawed relay writes nothing over it', async () => {
    names();
    queue = await bindTestQueue(exchange, '#');
    const ids = await seedEvents(db.db, EVENTS);
    const process = await frozenWhileClaiming(ids);
    const frozenAt = Date.now();
    await startSurvivor();
    // The survivor publishes everything else, then waits for the frozen claim to be let go.
    await waitFor('every row marked published', async () => (await unpublished()) === 0, {
      timeoutMs: 60_000,
    });
    expect(Date.now() - frozenAt).toBeGreaterThanOrEqual(LEASE_MS - 500);
    await waitFor(
      'every event on the queue',
      () => queue !== undefined && queue.counts().size === ids.length,
    );
    expect(new Set(queue.counts().keys())).toEqual(new Set(ids));

    // Thawed, the old relay finds its connection closed: its settlement fails and writes nothing,
    // it backs off, and it carries on (and stops) like any relay.
    const published = await db.query<{ id: number; published_at: string }>(
      'SELECT id, published_at FROM outbox ORDER BY id',
    );
    process.child.kill('SIGCONT');
    const extra = await seedEvents(db.db, 10);
    await waitFor(
      'the new events on the queue',
      () => extra.every((id) => (queue?.counts().get(id) ?? 0) > 0),
      {
        timeoutMs: 30_000,
      },
    );
    expect(
      await db.query<{ id: number; published_at: string }>(
        'SELECT id, published_at FROM outbox WHERE id <= ? ORDER BY id',
        [published.at(-1)?.id ?? 0],
      ),
    ).toEqual(published);
    process.child.kill('SIGTERM');
    expect(await process.exited).toBe(0);
    victim = undefined;
  });
});
