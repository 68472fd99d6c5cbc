/**
 * The write path: createCustomer over HTTP with 32 concurrent clients (customer + outbox row
 * in one transaction), against two baselines measured in the same run on the same machine:
 * a trivial GraphQL query through the same HTTP stack (the server's ceiling), and the same
 * two-row transaction sent straight to MySQL with 32 connections (the database's ceiling),
 * all three in alternating slices.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import mysql from 'mysql2/promise';
import { BenchHttpClient } from './http.js';
import {
  closedLoop as closedLoopOf,
  createBenchDatabase,
  deleteBrokerObjects,
  median,
  report,
  round,
  spawnBenchService,
} from './support.js';

const CONCURRENCY = 32;
/** How many alternating slices each figure is measured in. */
const SLICES = 5;
const closedLoop = (total: number, run: (n: number) => Promise<void>) =>
  closedLoopOf(CONCURRENCY, total, run);

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
    const client = new BenchHttpClient(service.url);
    const post = async (body: unknown) => {
      const json = (await client.post(body)).body as { errors?: unknown[] };
      if (json.errors) throw new Error(JSON.stringify(json.errors));
    };
    const create = (n: number | string) =>
      post({
        query: 'mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId } }',
        variables: { input: { email: `bench${n}.${suffix}@example.com`, name: `Bench ${n}` } },
      });

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

    // Each figure in slices, alternated: this machine's speed drifts by a fifth within a minute,
    // so one long phase after another compares two different machines. Each slice of creates is
    // set against the raw slices just before and after it (the tables grow, and InnoDB's
    // background work of one slice runs into the next), and the ratio reported is the median.
    const slice = Math.ceil(total / SLICES);
    // Warm-up, one slice of each, not measured: the first requests pay for JIT compilation, the
    // pool's connections and cold caches (the first slices ran at half the later ones' rate).
    await closedLoop(slice, () => post({ query: '{ __typename }' }));
    await closedLoop(slice, (n) => create(`warm${n}`));
    await rawTransactions(slice);
    const http: number[] = [];
    const raw: number[] = [await rawTransactions(slice)];
    const created: number[] = [];
    for (let n = 0; n < SLICES; n++) {
      http.push(await closedLoop(slice, () => post({ query: '{ __typename }' })));
      created.push(await closedLoop(slice, (i) => create(`${n}.${i}`)));
      raw.push(await rawTransactions(slice));
    }
    const toMysql = created.map((rate, n) => rate / (((raw[n] as number) + (raw[n + 1] as number)) / 2));
    const toHttp = created.map((rate, n) => rate / (http[n] as number));
    const [httpCeiling, dbCeiling, creates] = [median(http), median(raw), median(created)];
    await pool.end();
    client.close();

    report({
      scenario: 'write-baseline-http',
      concurrency: CONCURRENCY,
      requests: slice * SLICES,
      requestsPerSecond: Math.round(httpCeiling),
    });
    report({
      scenario: 'write-baseline-mysql',
      concurrency: CONCURRENCY,
      transactions: slice * (SLICES + 1),
      transactionsPerSecond: Math.round(dbCeiling),
      slices: raw.map(Math.round),
    });
    report({
      scenario: 'write-createCustomer',
      concurrency: CONCURRENCY,
      creates: slice * SLICES,
      createsPerSecond: Math.round(creates),
      slices: created.map(Math.round),
      ratioToHttpBaseline: round(median(toHttp)),
      ratioToMysqlBaseline: round(median(toMysql)),
      ratioToMysqlBaselineSlices: toMysql.map((r) => round(r)),
    });
  } finally {
    await service.stop();
    await db.drop();
    await deleteBrokerObjects(`bench.write.${suffix}`, `bench.write.worker.${suffix}`);
  }
}
