import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../src/service.js';
import { CREATE_CUSTOMER, createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { stopAndClean, testConfig, testLogger, uniqueSuffix } from './support/service.js';
import { waitFor } from './support/wait.js';

const REQUEST_TIMEOUT_MS = 1_500;

let db: TestDatabase;
let service: RunningService;
let url: string;

beforeAll(async () => {
  db = await createTestDatabase('request_deadline');
  service = await startService(
    testConfig(db.url, {
      ROLES: 'app',
      REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      // Far longer than the request deadline: only the deadline can answer in time.
      DB_QUERY_TIMEOUT_MS: '60000',
      DB_ACQUIRE_TIMEOUT_MS: '60000',
    }),
    testLogger(),
  );
  if (!service.app) throw new Error('the app role did not start');
  url = service.app.url;
});

afterAll(async () => {
  await stopAndClean(service);
  await db?.drop();
});

describe('the request deadline', () => {
  it('answers SERVICE_UNAVAILABLE with HTTP 503 and Retry-After when the database does not answer in time', async () => {
    // Warm: the first request of a process also pays for compiling its path.
    // (On a loaded machine that first request may itself take longer than the deadline: retried.)
    await waitFor('a warm-up create', () => createCustomer(url, 'warm'), {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    // A session that holds the customers table: every create waits on it, as on a dead link.
    const blocker = await mysql.createConnection({ uri: db.url });
    const lateEmail = `late.${uniqueSuffix()}@example.com`;
    try {
      await blocker.query('LOCK TABLES customers WRITE');
      const started = performance.now();
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': `deadline-${uniqueSuffix()}` },
        body: JSON.stringify({
          query: CREATE_CUSTOMER,
          variables: { input: { email: lateEmail, name: 'Late' } },
        }),
      });
      const elapsed = performance.now() - started;
      const body = (await response.json()) as { errors?: Array<{ extensions?: { code?: string } }> };
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after')).toBe('1');
      expect(body.errors?.[0]?.extensions?.code).toBe('SERVICE_UNAVAILABLE');
      expect(elapsed).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 50);
      expect(elapsed).toBeLessThan(REQUEST_TIMEOUT_MS + 2_500);
    } finally {
      await blocker.query('UNLOCK TABLES');
      await blocker.end();
    }
    // Nothing of the abandoned request holds the service up afterwards.
    await waitFor('a create after the lock', () => createCustomer(url, 'after'), { timeoutMs: 10_000 });
    // The abandoned create's statement was ended at the deadline, not left to finish once the
    // lock went: its transaction never committed.
    expect(await db.query('SELECT id FROM customers WHERE email = ?', [lateEmail])).toEqual([]);
  });

  it('/healthz and /readyz answer as before when nothing hangs', async () => {
    const base = new URL(url).origin;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    await expect.poll(async () => (await fetch(`${base}/readyz`)).status, { timeout: 10_000 }).toBe(200);
  });
});
