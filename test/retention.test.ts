import { randomUUID } from 'node:crypto';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../src/service.js';
import { type CreatedCustomer, createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { bulkSeedHistory } from './support/history.js';
import { stopAndClean, testConfig, testLogger, uniqueSuffix } from './support/service.js';
import { waitFor } from './support/wait.js';

const PRUNE_INTERVAL_MS = 100;
const OLD = 600;
const KEPT = 20;

let db: TestDatabase;
/** The test's own connection, which holds the pruners' named lock while the test says so. */
let lockHolder: mysql.Connection;
let lockName: string;
const services: RunningService[] = [];
let historyBefore: Array<Record<string, unknown>>;

/** Outbox rows in one state, written straight into the table (aggregate type Retention). */
async function seedOutbox(state: string, n: number, columns: Record<string, string>): Promise<void> {
  const values = {
    published_at: 'NULL',
    dead_at: 'NULL',
    held: '0',
    next_attempt_at: 'NOW(3) + INTERVAL 1 DAY',
    lease_owner: 'NULL',
    lease_token: 'NULL',
    lease_expires_at: 'NULL',
    ...columns,
  };
  const names = Object.keys(values);
  const tuples = Array.from(
    { length: n },
    () =>
      `(UUID(), 'Retention', UUID(), 1, ?, '{}', '{}', NOW(3) - INTERVAL 2 DAY, ${names.map((k) => values[k as keyof typeof values]).join(', ')})`,
  );
  await db.query(
    `INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, type, payload, headers, occurred_at, ${names.join(', ')}) VALUES ${tuples.join(', ')}`,
    Array.from({ length: n }, () => state),
  );
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const [row] = await db.query<{ n: number | string }>(sql, params);
  return Number(row?.n ?? Number.NaN);
}

/** Seeded outbox rows per state (the `type` column names the state). */
async function outboxByState(): Promise<Record<string, number>> {
  const rows = await db.query<{ type: string; n: number | string }>(
    "SELECT type, COUNT(*) AS n FROM outbox WHERE aggregate_type = 'Retention' GROUP BY type",
  );
  return Object.fromEntries(rows.map((r) => [r.type, Number(r.n)]));
}

async function inboxByAge(): Promise<{ old: number; recent: number }> {
  return {
    old: await count(
      "SELECT COUNT(*) AS n FROM inbox WHERE consumer = 'retention-test' AND handled_at < NOW(3) - INTERVAL 1 HOUR",
    ),
    recent: await count(
      "SELECT COUNT(*) AS n FROM inbox WHERE consumer = 'retention-test' AND handled_at >= NOW(3) - INTERVAL 1 HOUR",
    ),
  };
}

async function deleted(table: string): Promise<number> {
  let total = 0;
  for (const service of services) {
    total += (await service.metrics.pruned.get()).values.find((v) => v.labels.table === table)?.value ?? 0;
  }
  return total;
}

const history = () => db.query('SELECT * FROM handled_events ORDER BY position');

beforeAll(async () => {
  db = await createTestDatabase('retention');
  lockName = `graphql-outbox:retention:${db.name}`;
  lockHolder = await mysql.createConnection({ uri: db.url });
  // Held from before the services start: no pruner may run until the test lets go.
  const [rows] = await lockHolder.query('SELECT GET_LOCK(?, 0) AS got', [lockName]);
  expect((rows as Array<{ got: number }>)[0]?.got).toBe(1);

  await seedOutbox('old published', OLD, {
    published_at: 'NOW(3) - INTERVAL 2 HOUR - INTERVAL FLOOR(RAND() * 3600) SECOND',
    next_attempt_at: 'NOW(3) - INTERVAL 2 DAY',
  });
  await seedOutbox('recently published', KEPT, {
    published_at: 'NOW(3) - INTERVAL 10 SECOND',
    next_attempt_at: 'NOW(3) - INTERVAL 2 DAY',
  });
  // Old, but not published: nothing retention may touch, however old.
  await seedOutbox('pending', KEPT, {});
  await seedOutbox('leased', KEPT, {
    lease_owner: "'retention-test'",
    lease_token: 'UUID()',
    lease_expires_at: 'NOW(3) + INTERVAL 1 DAY',
  });
  await seedOutbox('held', KEPT, { held: '1', next_attempt_at: "'9999-12-31 00:00:00'" });
  await seedOutbox('dead', KEPT, { dead_at: 'NOW(3) - INTERVAL 2 DAY' });
  const inbox = (n: number, age: string) =>
    db.query(
      `INSERT INTO inbox (consumer, message_id, handled_at) VALUES ${Array.from({ length: n }, () => `('retention-test', ?, NOW(3) - INTERVAL ${age})`).join(', ')}`,
      Array.from({ length: n }, () => randomUUID()),
    );
  await inbox(OLD, '2 DAY');
  await inbox(KEPT, '10 SECOND');
  // The history is kept for good, however old.
  await bulkSeedHistory(db, 200);
  await db.query(
    'UPDATE handled_events SET occurred_at = NOW(3) - INTERVAL 400 DAY, handled_at = NOW(3) - INTERVAL 400 DAY',
  );
  historyBefore = await history();

  // Two services on the database, each with its pruner: an app with relay and worker, and a
  // standalone relay.
  const suffix = uniqueSuffix();
  const env = {
    OUTBOX_EXCHANGE: `test.retention.${suffix}`,
    WORKER_QUEUE: `test.retention.worker.${suffix}`,
    OUTBOX_RETENTION: '60s',
    INBOX_RETENTION: '60s',
    IDEMPOTENCY_KEY_RETENTION: '60s',
    PRUNE_INTERVAL_MS: String(PRUNE_INTERVAL_MS),
    PRUNE_BATCH_SIZE: '100',
  };
  services.push(await startService(testConfig(db.url, { ...env, ROLES: 'app,relay,worker' }), testLogger()));
  services.push(await startService(testConfig(db.url, { ...env, ROLES: 'relay' }), testLogger()));
});

afterAll(async () => {
  await lockHolder?.end().catch(() => {});
  await Promise.all(services.slice(1).map((s) => s.stop()));
  await stopAndClean(services[0]);
  await db?.drop();
});

describe('retention', () => {
  it('prunes nothing while another connection holds the named lock: two pruners never run at once', async () => {
    const url = services[0]?.app?.url as string;
    // Load meanwhile: customers flow through relay and worker.
    const created: CreatedCustomer[] = [];
    for (let i = 0; i < 5; i++) created.push(await createCustomer(url, 'locked'));
    // Both pruners try every 100 ms; give them a good many turns.
    const until = Date.now() + 20 * PRUNE_INTERVAL_MS;
    await waitFor('twenty prune intervals to pass', () => Date.now() >= until);
    expect(await outboxByState()).toEqual({
      'old published': OLD,
      'recently published': KEPT,
      pending: KEPT,
      leased: KEPT,
      held: KEPT,
      dead: KEPT,
    });
    expect(await inboxByAge()).toEqual({ old: OLD, recent: KEPT });
    expect(await deleted('outbox')).toBe(0);
    for (const service of services) {
      expect((await service.metrics.pruneLastRun.get()).values[0]?.value ?? 0).toBe(0);
    }
  });

  it('once the lock is free, deletes under load only published outbox rows and inbox rows older than retention: never a pending, leased, held or dead row, and never the history', async () => {
    const startedAt = Date.now() / 1000;
    const url = services[0]?.app?.url as string;
    const created: CreatedCustomer[] = [];
    let loading = true;
    const load = (async () => {
      while (loading) created.push(await createCustomer(url, 'load'));
    })();
    try {
      await waitFor('a few customers to be created under load', () => created.length >= 3);
      await lockHolder.query('SELECT RELEASE_LOCK(?)', [lockName]);
      await waitFor('the old published rows and old inbox rows to be pruned', async () => {
        const state = await outboxByState();
        const inbox = await inboxByAge();
        return state['old published'] === undefined && inbox.old === 0;
      });
      await waitFor('more customers after the pruning', () => created.length >= 10);
    } finally {
      loading = false;
      await load;
    }
    expect(await outboxByState()).toEqual({
      'recently published': KEPT,
      pending: KEPT,
      leased: KEPT,
      held: KEPT,
      dead: KEPT,
    });
    expect(await inboxByAge()).toEqual({ old: 0, recent: KEPT });
    // Every customer's event (written while the pruners ran) is there, and gets handled.
    await waitFor('every created customer to be handled', async () => {
      const ids = created.map((c) => c.eventId);
      const marks = ids.map(() => '?').join(',');
      return (
        (await count(`SELECT COUNT(*) AS n FROM handled_events WHERE event_id IN (${marks})`, ids)) ===
        ids.length
      );
    });
    expect(await count("SELECT COUNT(*) AS n FROM outbox WHERE aggregate_type = 'Customer'")).toBe(
      await count('SELECT COUNT(*) AS n FROM customers'),
    );
    // The worker's own (recent) inbox rows stay.
    expect(
      await count('SELECT COUNT(*) AS n FROM inbox WHERE consumer <> ?', ['retention-test']),
    ).toBeGreaterThanOrEqual(created.length);
    // The history is untouched: the old rows exactly as they were.
    expect((await history()).slice(0, historyBefore.length)).toEqual(historyBefore);
    // Each expired row was deleted once, by whichever pruner held the lock.
    expect(await deleted('outbox')).toBe(OLD);
    expect(await deleted('inbox')).toBe(OLD);
    const lastRuns = await Promise.all(
      services.map(async (s) => (await s.metrics.pruneLastRun.get()).values[0]?.value ?? 0),
    );
    expect(Math.max(...lastRuns)).toBeGreaterThanOrEqual(startedAt);
  });

  it('/metrics of each process shows retention_rows_deleted_total by table and retention_last_run_timestamp_seconds', async () => {
    const [app, relay] = services as [RunningService, RunningService];
    const pages = [
      new URL('/metrics', app.app?.url).href,
      `http://127.0.0.1:${relay.metricsServer?.port}/metrics`,
    ];
    const totals = { outbox: 0, inbox: 0 };
    let lastRun = 0;
    for (const page of pages) {
      const text = await (await fetch(page)).text();
      expect(text).toMatch(/^# TYPE retention_rows_deleted_total counter$/m);
      expect(text).toMatch(/^# TYPE retention_last_run_timestamp_seconds gauge$/m);
      for (const table of ['outbox', 'inbox'] as const) {
        const match = new RegExp(`^retention_rows_deleted_total\\{table="${table}"\\} (\\d+)$`, 'm').exec(
          text,
        );
        totals[table] += Number(match?.[1] ?? 0);
      }
      const run = /^retention_last_run_timestamp_seconds ([0-9.e+]+)$/m.exec(text);
      lastRun = Math.max(lastRun, Number(run?.[1] ?? 0));
    }
    // Between them, the two processes report every row deleted, once.
    expect(totals).toEqual({ outbox: OLD, inbox: OLD });
    expect(lastRun).toBeGreaterThan(Date.now() / 1000 - 120);
  });
});
