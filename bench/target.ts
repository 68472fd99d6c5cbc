/**
 * What an end-to-end benchmark drives: a service (the product, or the floor in bench/floor/)
 * with a fresh database and its own broker names, an HTTP client for its mutations, and one
 * graphql-ws subscriber to every customer's events that records when each event arrived.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { BenchHttpClient } from './http.js';
import {
  BENCH_AMQP_URL,
  benchNodeArgs,
  createBenchDatabase,
  deleteBrokerObjects,
  freePort,
  servedChild,
  spawnBenchService,
} from './support.js';

export type TargetKind = 'product' | 'floor';

export interface Target {
  readonly kind: TargetKind;
  /** The service process, for its CPU time. */
  readonly pid: number | undefined;
  /** Arrival time (performance.now()) of each event id the subscriber received. */
  readonly received: Map<string, number>;
  /** Events received more than once. */
  readonly duplicates: () => number;
  create(email: string): Promise<string | undefined>;
  /** A trivial request: the HTTP round trip every answer stands on. */
  ping(): Promise<void>;
  stop(): Promise<void>;
}

const CREATE = 'mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId } }';

export async function startTarget(kind: TargetKind): Promise<Target> {
  const db = await createBenchDatabase(kind);
  const suffix = randomBytes(3).toString('hex');
  const exchange = `bench.${kind}.${suffix}`;
  const workerQueue = `bench.${kind}.worker.${suffix}`;
  const env = { DATABASE_URL: db.url, OUTBOX_EXCHANGE: exchange, WORKER_QUEUE: workerQueue };
  const service =
    kind === 'product' ? await spawnBenchService('app,relay,worker', env) : await spawnFloor(env);
  const client = createClient({
    url: service.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    lazy: false,
  });
  const http = new BenchHttpClient(service.url);
  const received = new Map<string, number>();
  let duplicates = 0;
  await new Promise<void>((resolve, reject) => {
    client.on('connected', () => resolve());
    client.on('error', reject);
  });
  const unsubscribe = client.subscribe<{ onCustomerEvent: { eventId: string } }>(
    { query: 'subscription { onCustomerEvent { eventId customerId handledAt } }' },
    {
      next: (result) => {
        const id = result.data?.onCustomerEvent.eventId;
        if (!id) return;
        if (received.has(id)) duplicates++;
        else received.set(id, performance.now());
      },
      error: (error) => process.stderr.write(`subscription error: ${JSON.stringify(error)}\n`),
      complete: () => {},
    },
  );
  return {
    kind,
    pid: service.pid,
    received,
    duplicates: () => duplicates,
    async create(email) {
      const { body } = await http.post({ query: CREATE, variables: { input: { email, name: 'Bench' } } });
      return (body as { data?: { createCustomer?: { eventId: string } } }).data?.createCustomer?.eventId;
    },
    async ping() {
      await http.post({ query: '{ __typename }' });
    },
    async stop() {
      unsubscribe();
      http.close();
      await client.dispose();
      await service.stop();
      await db.drop();
      await deleteBrokerObjects(exchange, workerQueue);
    },
  };
}

/** The floor (bench/floor/service.mjs) as a process of its own, ready to serve. */
export async function spawnFloor(env: Record<string, string>) {
  const port = await freePort();
  const child = spawn(process.execPath, [...benchNodeArgs(), 'bench/floor/service.mjs'], {
    env: { ...process.env, ...env, AMQP_URL: BENCH_AMQP_URL, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return servedChild(child, `http://127.0.0.1:${port}`, `http://127.0.0.1:${port}/readyz`);
}
