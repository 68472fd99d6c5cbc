/**
 * The write path: createCustomer over HTTP with 32 concurrent clients (customer + outbox row
 * in one transaction), against two baselines measured in the same run on the same machine:
 * a trivial GraphQL query through the same HTTP stack (the server's ceiling), and the same
 * two-row transaction sent straight to MySQL with 32 connections (the database's ceiling).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import mysql from 'mysql2/promise';
import { BenchHttpClient } from './http.js';
import { createBenchDatabase, deleteBrokerObjects, report, round, spawnBenchService } from './support.js';

const CONCURRENCY = 32;

async function closedLoop(total: number, run: (n: number) => Promise<void>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < total) await run(next++);
    }),
  );
  return total / ((performance.now() - started) / 1000);
}

export async function runWriteBenchmark(total: number): Promise<void> {
  const db = await createBenchDatabase('write');
  const suffix = randomBytes(3).toString('hex');
  // The app alone: the write path without a relay or worker competing for the two cores.
  const service = await spawnBenchService('app', {
    DATABASE_URL: db.url,
    OUTBOX_EXCHANGE: `bench.write.${suffix}`,
    WORKER_QUEUE: `bench.write.worker.${suffix}`,
    DB_POOL_SIZE: String(CONCURRENCY),
  });
  try {
    const http = new BenchHttpClient(service.url);
    const post = async (body: unknown) => {
      const json = (await http.post(body)).body as { errors?: unknown[] };
      if (json.errors) throw new Error(JSON.stringify(json.errors));
    };
    const create = (n: number | string) =>
      post({
        query: 'mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId } }',
        variables: { input: { email: `bench${n}.${suffix}@example.com`, name: `Bench ${n}` } },
      });
    // Warm-up, not measured: the first requests pay for JIT compilation and cold caches.
    await closedLoop(200, () => post({ query: '{ __typename }' }));
    await closedLoop(200, (n) => create(`warm${n}`));

    const pool = mysql.createPool({ uri: db.url, connectionLimit: CONCURRENCY });
    let rawRound = 0;
    const rawTransactions = (count: number) => {
      rawRound++;
      return closedLoop(count, async (n) => {
        const email = `raw${rawRound}.${n}.${suffix}@example.com`;
        const connection = await pool.getConnection();
        try {
          await connection.beginTransaction();
          const [result] = await connection.query(
            'INSERT INTO customers (email, email_normalized, name, created_at) VALUES (?, ?, ?, NOW(3))',
            [email, email, `Raw ${n}`],
          );
          const id = (result as { insertId: number }).insertId;
          await connection.query(
            `INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, type, payload, headers, occurred_at, next_attempt_at)
             VALUES (?, 'Customer', ?, 1, 'CustomerCreated', ?, ?, NOW(3), NOW(3))`,
            [
              randomUUID(),
              String(id),
              JSON.stringify({ customerId: String(id) }),
              JSON.stringify({ correlationId: randomUUID() }),
            ],
          );
          await connection.commit();
        } finally {
          connection.release();
        }
      });
    };

    const httpCeiling = await closedLoop(total, () => post({ query: '{ __typename }' }));
    // The database's ceiling before and after the creates, since the tables grow and InnoDB's
    // background work (purge, flushing) of one phase runs into the next: the ratio is to their mean.
    await rawTransactions(200); // the pool's connections opened, outside the measurement
    const dbBefore = await rawTransactions(total);
    const creates = await closedLoop(total, (n) => create(n));
    const dbAfter = await rawTransactions(total);
    const dbCeiling = (dbBefore + dbAfter) / 2;
    await pool.end();
    http.close();

    report({
      scenario: 'write-baseline-http',
      concurrency: CONCURRENCY,
      requests: total,
      requestsPerSecond: Math.round(httpCeiling),
    });
    report({
      scenario: 'write-baseline-mysql',
      concurrency: CONCURRENCY,
      transactions: total,
      transactionsPerSecond: Math.round(dbCeiling),
      beforeCreates: Math.round(dbBefore),
      afterCreates: Math.round(dbAfter),
    });
    report({
      scenario: 'write-createCustomer',
      concurrency: CONCURRENCY,
      creates: total,
      createsPerSecond: Math.round(creates),
      ratioToHttpBaseline: round(creates / httpCeiling),
      ratioToMysqlBaseline: round(creates / dbCeiling),
    });
  } finally {
    await service.stop();
    await db.drop();
    await deleteBrokerObjects(`bench.write.${suffix}`, `bench.write.worker.${suffix}`);
  }
}
