/**
 * The outbox does not slow down as it grows (issue 8): the same backlog is claimed and drained
 * on an outbox with no published history and on one with 1,000,000 published rows, and each
 * figure is printed as a ratio of the two (target: within 10 %).
 *
 * Why it should hold: the claim reads `outbox_claim_idx` (published_at, dead_at,
 * next_attempt_at, id) from its `published_at IS NULL` end, so published rows are outside the
 * range it reads however many there are; retention keeps the table from growing anyway, but
 * a deployment that sets a long OUTBOX_RETENTION must not pay for it in relay speed.
 *
 * Rows are seeded with INSERT … SELECT from MariaDB's sequence engine (seq_1_to_N): a million
 * rows in about a minute, with no round trip per row.
 */
import { randomBytes } from 'node:crypto';
import amqp from 'amqplib';
import { escape as escapeLiteral } from 'mysql2';
import { declareWorkerQueues, topologyFor } from '../src/broker/topology.js';
import { CUSTOMER_CREATED } from '../src/customers/events.js';
import { claimAndSettle } from '../src/outbox/claim.js';
import {
  BENCH_AMQP_URL,
  type BenchDatabase,
  benchConfig,
  benchRelayEnv,
  createBenchDatabase,
  dbClock,
  deleteBrokerObjects,
  drainSeconds,
  report,
  round,
  spawnBenchService,
  waitUntil,
} from './support.js';

/** A drain's backlog becomes due this long after its insert began (the insert takes ~1 s). */
const DUE_AFTER_SECONDS = 3;

const query = async (db: BenchDatabase, text: string): Promise<Array<Record<string, unknown>>> => {
  const [rows] = await db.pool.query(text);
  return rows as Array<Record<string, unknown>>;
};

const pendingCount = async (db: BenchDatabase): Promise<number> =>
  Number((await query(db, 'SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL'))[0]?.n);

/**
 * `count` rows from the sequence engine, in chunks (one statement each, so no transaction
 * grows huge): published ones (leased, as a relay leaves them), or a pending backlog due at
 * `due` (a DATETIME(3) text of the database's clock). No statement touches a backlog after its
 * insert: an UPDATE making 20,000 rows due leaves as many delete-marked entries in the claim
 * index for the claims to step over until InnoDB's purge has removed them, which made the
 * figures depend on how busy purge was.
 */
async function insertRows(
  db: BenchDatabase,
  count: number,
  label: string,
  published: boolean,
  due?: string,
): Promise<void> {
  const CHUNK = 100_000;
  for (let from = 0; from < count; from += CHUNK) {
    const n = Math.min(CHUNK, count - from);
    const state = published
      ? // Published over the last day at most: within OUTBOX_RETENTION, as a table in its steady
        // state holds them (older ones would have the relays' pruners deleting 400,000 rows
        // while the drain is measured).
        `NOW(3) - INTERVAL (seq / 20) SECOND, 'bench', UUID(), NOW(3) - INTERVAL (seq / 20) SECOND, NOW(3) - INTERVAL (seq / 20) SECOND`
      : `${escapeLiteral(due ?? '')}, NULL, NULL, NULL, NULL`;
    await db.pool.query(
      `INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, type, payload, headers, occurred_at,
                           next_attempt_at, lease_owner, lease_token, lease_expires_at, published_at)
       SELECT UUID(), 'Customer', CONCAT('${label}-', seq), 1, '${CUSTOMER_CREATED}',
              JSON_OBJECT('customerId', CONCAT('${label}-', seq), 'email', CONCAT('c', seq, '@example.com'), 'name', CONCAT('Customer ', seq)),
              JSON_OBJECT('correlationId', UUID()), NOW(3) - INTERVAL seq SECOND, ${state}
       FROM seq_${from + 1}_to_${from + n}`,
    );
  }
}

/**
 * Claims the whole backlog one batch at a time as a relay lane does, marking each as published
 * (nothing is sent); returns the claims' durations in ms (from the start to the locked batch).
 */
async function claimCosts(db: BenchDatabase, batchSize: number): Promise<number[]> {
  const costs: number[] = [];
  const retry = { maxAttempts: 10, backoffBaseMs: 1000, backoffMaxMs: 60_000 };
  for (;;) {
    const started = performance.now();
    const outcome = await claimAndSettle(
      db.db,
      { limit: batchSize, holdSeconds: 60, retry },
      async (batch) => {
        costs.push(performance.now() - started);
        return { published: batch, failed: new Map() };
      },
    );
    if (outcome === undefined) return costs;
  }
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};

/**
 * Both states at once, in two databases: the same backlog claimed, then drained, on the empty
 * outbox and on the big one in turn, ROUNDS times. Measured one after the other, the two
 * figures would also differ by whatever the machine was doing in between (InnoDB still
 * flushing the seed, another benchmark's dropped database being purged); alternated, that
 * falls on both alike.
 */
const ROUNDS = 3;

export async function runBigTableBenchmark(publishedRows: number, backlog: number): Promise<void> {
  const empty = await createBenchDatabase('bigtable_empty');
  const big = await createBenchDatabase('bigtable_big');
  const suffix = randomBytes(3).toString('hex');
  const topology = topologyFor(`bench.events.${suffix}`, `bench.worker.${suffix}`, [CUSTOMER_CREATED]);
  const admin = await amqp.connect(BENCH_AMQP_URL);
  const channel = await admin.createChannel();
  const batchSize = benchConfig(empty.url, {}).relay.batchSize;
  let label = 0;
  const relays: Array<{ stop(): Promise<void> }> = [];
  try {
    await declareWorkerQueues(channel, topology);

    const seedStarted = performance.now();
    await insertRows(big, publishedRows, 'published', true);
    // As the server would have by itself after so many inserts: statistics that know the table.
    await big.pool.query('ANALYZE TABLE outbox');
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    const total = Number((await query(big, 'SELECT COUNT(*) AS n FROM outbox'))[0]?.n);
    report({ scenario: 'big-table-seed', publishedRows, seconds: round(seedSeconds), rowsInOutbox: total });
    // The seed leaves InnoDB flushing hundreds of megabytes of dirty pages for a while: wait (up
    // to two minutes) until that has settled, as a long-lived table would be.
    const settled = await settleDirtyPages(big, 120_000);
    report({
      scenario: 'big-table-flush',
      secondsWaited: round(settled.seconds),
      dirtyPagesLeft: settled.dirty,
    });

    const states = [
      { db: empty, rowsInOutbox: 0, claims: [] as number[], drains: [] as number[] },
      { db: big, rowsInOutbox: total, claims: [] as number[], drains: [] as number[] },
    ];
    // The claim alone: one lane, the whole backlog (due at once), batch by batch.
    for (let i = 0; i < ROUNDS; i++) {
      for (const state of states) {
        await insertRows(state.db, backlog, `r${label++}`, false, await dbClock(state.db, 0));
        state.claims.push(...(await claimCosts(state.db, batchSize)).slice(0, -1)); // the last found nothing
      }
    }
    // The relay: one standalone process per database, ready before the clocks start.
    for (const state of states) {
      relays.push(
        await spawnBenchService(
          'relay',
          benchRelayEnv(state.db.url, topology.exchange, topology.workerQueue),
        ),
      );
    }
    for (let i = 0; i < ROUNDS; i++) {
      for (const state of states) {
        // Due a moment after the insert has committed; timed from then to the last publish.
        const due = await dbClock(state.db, DUE_AFTER_SECONDS);
        await insertRows(state.db, backlog, `r${label++}`, false, due);
        await waitUntil(async () => (await pendingCount(state.db)) === 0, 20);
        state.drains.push(Math.round(backlog / (await drainSeconds(state.db, due))));
        await channel.purgeQueue(topology.workerQueue);
      }
    }

    const measured = states.map((state) => {
      const figures = {
        claimMsMedian: round(median(state.claims)),
        claimMsMean: round(state.claims.reduce((a, b) => a + b, 0) / state.claims.length),
        drainEventsPerSecond: median(state.drains),
      };
      report({
        scenario: 'big-table',
        rowsInOutbox: state.rowsInOutbox,
        backlog,
        batchSize,
        claims: state.claims.length,
        ...figures,
        drainSamples: state.drains,
      });
      return figures;
    });
    const [onEmpty, onBig] = measured as [(typeof measured)[0], (typeof measured)[0]];
    report({
      scenario: 'big-table-ratio',
      rowsInOutbox: total,
      backlog,
      // 1.00 = no difference; the target is 0.90–1.10.
      claimCostRatio: round(onBig.claimMsMedian / onEmpty.claimMsMedian),
      drainRateRatio: round(onBig.drainEventsPerSecond / onEmpty.drainEventsPerSecond),
    });
    const plan = await query(
      big,
      'EXPLAIN SELECT id FROM outbox WHERE published_at IS NULL AND dead_at IS NULL AND next_attempt_at <= NOW(3) ORDER BY next_attempt_at, id LIMIT 500',
    );
    report({
      scenario: 'big-table-claim-plan',
      key: plan[0]?.key,
      rows: plan[0]?.rows,
      extra: plan[0]?.Extra,
    });
  } finally {
    await Promise.all(relays.map((relay) => relay.stop()));
    await admin.close().catch(() => {});
    await deleteBrokerObjects(topology.exchange, topology.workerQueue);
    await Promise.all([empty.drop(), big.drop()]);
  }
}

/** Waits until InnoDB's dirty pages are under 10 % of the buffer pool, or `timeoutMs` passed. */
async function settleDirtyPages(
  db: BenchDatabase,
  timeoutMs: number,
): Promise<{ seconds: number; dirty: number }> {
  const started = performance.now();
  for (;;) {
    const rows = await query(
      db,
      "SHOW GLOBAL STATUS WHERE Variable_name IN ('Innodb_buffer_pool_pages_dirty', 'Innodb_buffer_pool_pages_total')",
    );
    const value = (name: string) =>
      Number(
        (rows as Array<{ Variable_name: string; Value: string }>).find((r) => r.Variable_name === name)
          ?.Value ?? 0,
      );
    const dirty = value('Innodb_buffer_pool_pages_dirty');
    const seconds = (performance.now() - started) / 1000;
    if (dirty < value('Innodb_buffer_pool_pages_total') / 10 || seconds * 1000 > timeoutMs)
      return { seconds, dirty };
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
