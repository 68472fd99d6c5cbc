import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { loadConfig } from '../src/config/index.js';
import { connectDatabase, type DatabaseHandle, ensureDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';

export const BENCH_MYSQL_URL = process.env.BENCH_DATABASE_URL ?? 'mysql://root@127.0.0.1:3306';
export const BENCH_AMQP_URL = process.env.BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
/** How often a benchmark's relays look for due rows (RELAY_POLL_INTERVAL_MS), unless set. */
const BENCH_POLL_INTERVAL_MS = 50;

/**
 * The environment of a benchmark's standalone relay. A backlog that becomes due wakes no relay
 * (no writer sends a hint): lanes find it at their next poll, and at the default second that
 * wait would be part of the drain's time.
 */
export function benchRelayEnv(
  databaseUrl: string,
  exchange: string,
  workerQueue: string,
): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    OUTBOX_EXCHANGE: exchange,
    WORKER_QUEUE: workerQueue,
    RELAY_POLL_INTERVAL_MS: process.env.RELAY_POLL_INTERVAL_MS ?? String(BENCH_POLL_INTERVAL_MS),
  };
}

/** The database's clock `seconds` from now, as DATETIME(3) text: when a backlog becomes due. */
export async function dbClock(db: Pick<BenchDatabase, 'pool'>, seconds: number): Promise<string> {
  const [rows] = await db.pool.query(
    `SELECT DATE_FORMAT(NOW(3) + INTERVAL ${Math.round(seconds * 1e6)} MICROSECOND, '%Y-%m-%d %H:%i:%s.%f') AS t`,
  );
  return String((rows as Array<{ t: string }>)[0]?.t);
}

/** Seconds from `due` to the last publish, by the database's clock: a drain's time. */
export async function drainSeconds(db: Pick<BenchDatabase, 'pool'>, due: string): Promise<number> {
  const [rows] = await db.pool.query(
    'SELECT TIMESTAMPDIFF(MICROSECOND, ?, MAX(published_at)) AS us FROM outbox',
    [due],
  );
  return Number((rows as Array<{ us: number | string }>)[0]?.us) / 1e6;
}

/** One JSON line per figure on stdout: machine-readable, and readable enough by eye. */
export function report(figure: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(figure)}\n`);
}

export const round = (value: number, digits = 2): number => Number(value.toFixed(digits));

export interface BenchDatabase extends DatabaseHandle {
  readonly url: string;
  drop(): Promise<void>;
}

export async function createBenchDatabase(label: string): Promise<BenchDatabase> {
  const name = `outbox_bench_${label}_${randomBytes(3).toString('hex')}`;
  const url = new URL(BENCH_MYSQL_URL);
  url.pathname = `/${name}`;
  await ensureDatabase(url.toString());
  const handle = connectDatabase(url.toString(), 20);
  await runMigrations(handle);
  return {
    ...handle,
    url: url.toString(),
    async drop() {
      await handle.close();
      const admin = await mysql.createConnection({ uri: BENCH_MYSQL_URL });
      await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
      await admin.end();
    },
  };
}

/**
 * The service configuration for a benchmark run: the defaults, any RELAY_* / WORKER_* tunables
 * set in the environment (to try other settings), plus the bench's own names.
 */
export function benchConfig(databaseUrl: string, env: Record<string, string>) {
  const tunables = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => key.startsWith('RELAY_') || key.startsWith('WORKER_')),
  );
  return loadConfig({
    ...tunables,
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
    PORT: '0',
    METRICS_PORT: '0',
    DATABASE_URL: databaseUrl,
    AMQP_URL: BENCH_AMQP_URL,
    ...env,
  });
}

export async function waitUntil(
  check: () => Promise<boolean>,
  intervalMs = 20,
  timeoutMs = 600_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('benchmark timed out');
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export interface ServiceChild {
  readonly url: string;
  /** The service process, for its CPU time. */
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

let built = false;

/**
 * The service as `npm start` runs it (`node --enable-source-maps dist/main.js <roles>`, built
 * first if dist/ is older than src/), ready to serve; `main`, another build's (an A/B). Not from the sources through tsx: its
 * loader and the name-keeping wrappers it puts around every function were 2–3 % of a create's
 * CPU in profiles, a cost production never pays.
 */
export async function spawnBenchService(
  roles: string,
  env: Record<string, string>,
  main = 'dist/main.js',
): Promise<ServiceChild> {
  const { spawn, spawnSync } = await import('node:child_process');
  if (!built) {
    const build = spawnSync(process.execPath, ['scripts/build.mjs', '--if-stale'], { stdio: 'inherit' });
    if (build.status !== 0) throw new Error('building dist/ for the benchmark failed');
    built = true;
  }
  const port = await freePort();
  const metricsPort = await freePort();
  const child = spawn(process.execPath, [...benchNodeArgs(), '--enable-source-maps', main, roles], {
    env: {
      ...process.env,
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      PORT: String(port),
      METRICS_PORT: String(metricsPort),
      ...env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  // The app role answers /readyz; a standalone relay or worker only /healthz, on its metrics port.
  const healthUrl = roles.split(',').includes('app')
    ? `${base}/readyz`
    : `http://127.0.0.1:${metricsPort}/healthz`;
  return servedChild(child, base, healthUrl);
}

/**
 * BENCH_NODE_ARGS: extra flags for the service process, product or floor, e.g. "--cpu-prof
 * --cpu-prof-dir=/tmp/prof".
 */
export function benchNodeArgs(): string[] {
  return (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');
}

/** A spawned service once `healthUrl` answers: its GraphQL URL, its pid, and a graceful stop. */
export async function servedChild(
  child: ChildProcess,
  base: string,
  healthUrl: string,
): Promise<ServiceChild> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitUntil(
    async () => {
      try {
        return (await fetch(healthUrl)).ok;
      } catch {
        return false;
      }
    },
    100,
    60_000,
  );
  return {
    url: `${base}/graphql`,
    pid: child.pid,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

export const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/** `total` calls of `run` by `concurrency` clients, each starting the next when one returns: calls per second. */
export async function closedLoop(
  concurrency: number,
  total: number,
  run: (n: number) => Promise<void>,
): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await run(next++);
    }),
  );
  return total / ((performance.now() - started) / 1000);
}

/** p-th percentile (0–100) of already sorted numbers. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

/** Deletes what a benchmark's service declared on the broker, so runs leave nothing behind. */
export async function deleteBrokerObjects(exchange: string, workerQueue: string): Promise<void> {
  const { default: amqp } = await import('amqplib');
  const connection = await amqp.connect(BENCH_AMQP_URL);
  try {
    for (const queue of [workerQueue, `${workerQueue}.retry`, `${workerQueue}.wait`, `${workerQueue}.dead`]) {
      const channel = await connection.createChannel();
      await channel.deleteQueue(queue).catch(() => {});
      await channel.close().catch(() => {});
    }
    for (const name of [exchange, `${exchange}.wakeup`, `${exchange}.history`]) {
      const channel = await connection.createChannel();
      await channel.deleteExchange(name).catch(() => {});
      await channel.close().catch(() => {});
    }
  } finally {
    await connection.close();
  }
}
