import { randomBytes } from 'node:crypto';
import { type Config, loadConfig } from '../../src/config/index.js';
import { createLogger, type Logger } from '../../src/log.js';
import type { RunningService } from '../../src/service.js';
import { brokerObjectsOf, deleteBrokerObjects } from './broker.js';
import { TEST_AMQP_URL } from './env.js';

/** A suffix that keeps this file's exchange and queue names apart from every other run. */
export const uniqueSuffix = (): string => randomBytes(4).toString('hex');

/**
 * The service's configuration for a test: this file's database, its own exchange and worker
 * queue, a free port, quiet logs. `env` uses the documented variable names.
 */
export function testConfig(databaseUrl: string, env: Record<string, string> = {}): Config {
  const suffix = uniqueSuffix();
  return loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    HOST: '127.0.0.1',
    PORT: '0',
    METRICS_PORT: '0',
    DATABASE_URL: databaseUrl,
    AMQP_URL: TEST_AMQP_URL,
    OUTBOX_EXCHANGE: `test.events.${suffix}`,
    WORKER_QUEUE: `test.worker.${suffix}`,
    // Tests read outboxStats right after changing the outbox; a shared figure up to a second
    // old would be stale there. hostile-trust.test.ts covers the default.
    OUTBOX_STATS_MAX_AGE_MS: '0',
    ...env,
  });
}

export const testLogger = (): Logger =>
  createLogger((process.env.TEST_LOG_LEVEL ?? 'silent') as Config['logLevel']);

export interface GraphQLResponse<T = Record<string, unknown>> {
  readonly status: number;
  readonly data?: T | null;
  readonly errors?: Array<{ message: string; extensions?: Record<string, unknown> }>;
}

/** POSTs one GraphQL operation the way a browser or curl would. */
export async function graphql<T = Record<string, unknown>>(
  url: string,
  query: string,
  variables?: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<GraphQLResponse<T>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as Omit<GraphQLResponse<T>, 'status'>;
  return { status: response.status, ...body };
}

/**
 * Stops a service and deletes what it declared on the broker (its exchange, the relay and
 * history hint exchanges and the worker's queues), so that test runs leave the broker as they
 * found it.
 */
export async function stopAndClean(service: RunningService | undefined): Promise<void> {
  if (!service) return;
  await service.stop();
  await deleteBrokerObjects(brokerObjectsOf(service.topology.exchange, service.topology.workerQueue));
}
