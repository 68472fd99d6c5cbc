import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../src/service.js';
import { closeBrokerConnections } from './support/broker.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { graphql, stopAndClean, testConfig, testLogger } from './support/service.js';
import { waitFor } from './support/wait.js';

let db: TestDatabase;
let service: RunningService;

beforeAll(async () => {
  db = await createTestDatabase('worker_reconnect');
  service = await startService(testConfig(db.url), testLogger());
});

afterAll(async () => {
  await stopAndClean(service);
  await db?.drop();
});

const count = async (table: string) =>
  Number((await db.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`))[0]?.n);

async function createCustomers(prefix: string, n: number): Promise<void> {
  const url = service.app?.url as string;
  for (let i = 0; i < n; i++) {
    const response = await graphql(
      url,
      'mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId } }',
      {
        input: { email: `${prefix}${i}@example.com`, name: `Customer ${i}` },
      },
    );
    expect(response.errors).toBeUndefined();
  }
}

describe('worker and broker loss', () => {
  it('the worker reconnects after the broker closes its connection and handles what arrives meanwhile', async () => {
    await createCustomers('before', 3);
    await waitFor('the first three handled', async () => (await count('welcome_emails')) === 3);

    expect(await closeBrokerConnections(`worker ${service.instance}`)).toBeGreaterThan(0);
    await createCustomers('after', 5);

    await waitFor('all eight handled', async () => (await count('welcome_emails')) === 8);
    expect(await count('inbox')).toBe(8);
    // One history row per handled event.
    const handled = await db.query<{ n: number }>('SELECT COUNT(*) AS n FROM handled_events');
    expect(Number(handled[0]?.n)).toBe(8);
  });
});
