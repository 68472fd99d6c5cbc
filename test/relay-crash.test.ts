import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
const exchange = `test.crash.${suffix}`;
const workerQueue = `test.crash.worker.${suffix}`;
let queue: TestQueue | undefined;
let survivor: RunningService | undefined;
let victim: ServiceProcess | undefined;

beforeAll(async () => {
  db = await createTestDatabase('relay_crash');
});

afterAll(async () => {
  victim?.child.kill('SIGKILL');
  await survivor?.stop();
  await queue?.close();
  await db?.drop();
  await deleteBrokerObjects(brokerObjectsOf(exchange, workerQueue));
});

describe('relay crash', () => {
  it('a relay process killed with SIGKILL after claiming: its batch is published by another relay once the lease expires', async () => {
    queue = await bindTestQueue(exchange, '#');
    const ids = await seedEvents(db.db, 3000);
    const env = {
      DATABASE_URL: db.url,
      AMQP_URL: TEST_AMQP_URL,
      OUTBOX_EXCHANGE: exchange,
      WORKER_QUEUE: workerQueue,
      METRICS_PORT: '0',
      RELAY_LEASE_MS: '3000',
      RELAY_CONFIRM_TIMEOUT_MS: '1000',
      RELAY_BATCH_SIZE: '100',
      RELAY_LANES: '1',
    };
    // Freeze a relay mid-stream; when it is frozen holding a batch, kill it. Then wait until no
    // statement it sent is still running on the server (one sent just before the freeze still
    // completes there) and count what it left leased. If it left nothing (it was frozen while
    // its "mark published" was already on its way), the crash proved nothing: try another relay.
    let held = 0;
    for (let attempt = 1; held === 0; attempt++) {
      if (attempt > 5) throw new Error('could not catch a relay holding a lease in 5 attempts');
      const process = spawnService('relay', env);
      victim = process;
      const leased = async () =>
        Number(
          (
            await db.query<{ n: number }>(
              'SELECT COUNT(*) AS n FROM outbox WHERE lease_owner LIKE ? AND published_at IS NULL',
              [`%:${process.pid}:%`],
            )
          )[0]?.n,
        );
      await waitFor('the victim to be publishing', () => queue && queue.received.length > 0, {
        timeoutMs: 30_000,
      });
      await waitFor('the victim frozen while it holds a lease', async () => {
        process.child.kill('SIGSTOP');
        if ((await leased()) > 0) return true;
        process.child.kill('SIGCONT');
        return false;
      });
      process.child.kill('SIGKILL');
      expect(await process.exited).toBe('SIGKILL');
      await waitFor("the killed relay's last statements to finish on the server", async () => {
        const [row] = await db.query<{ n: number }>(
          "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ? AND COMMAND = 'Query' AND ID <> CONNECTION_ID()",
          [db.name],
        );
        return Number(row?.n) === 0;
      });
      held = await leased();
    }

    survivor = await startService(
      testConfig(db.url, { ROLES: 'relay', OUTBOX_EXCHANGE: exchange, WORKER_QUEUE: workerQueue }),
      testLogger(),
    );
    const unpublished = async () =>
      Number(
        (await db.query<{ n: number }>('SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL'))[0]?.n,
      );
    await waitFor('every row marked published', async () => (await unpublished()) === 0, {
      timeoutMs: 60_000,
    });
    await waitFor('every event on the queue', () => queue && queue.counts().size === 3000);
    expect(new Set(queue.counts().keys())).toEqual(new Set(ids));
    // The frozen batch waited for its lease to run out, then the survivor took it over. (Some
    // of it may have reached the broker before the kill: at least once, so duplicates are fine.)
    const takeovers = (await survivor.metrics.leaseTakeovers.get()).values[0]?.value ?? 0;
    expect(takeovers).toBe(held);
  });
});
