import { BrokerConnection } from '../../src/broker/connection.js';
import {
  ConfirmPublisher,
  type OutgoingMessage,
  type Publisher,
  type PublishOutcome,
} from '../../src/broker/publisher.js';
import { declareWorkerQueues, topologyFor } from '../../src/broker/topology.js';
import { CUSTOMER_EVENT_TYPES } from '../../src/customers/events.js';
import type { Database } from '../../src/db/client.js';
import { Metrics } from '../../src/metrics/index.js';
import { Relay } from '../../src/relay/relay.js';
import { TEST_AMQP_URL } from './env.js';
import { testLogger } from './service.js';

/**
 * What happens to one message: published normally; refused before it reaches the broker
 * (`nacked`, `unroutable`: not sent); or sent and then reported as unconfirmed (`timeout`: the
 * broker has it but the relay thinks it failed, so a retry publishes a duplicate).
 */
export type Fault = 'ok' | 'nacked' | 'unroutable' | 'timeout';

/**
 * A real confirm publisher with faults injected per message: the only mock in the tests that
 * use it, and only to decide which publish fails and how.
 */
export class FaultyPublisher implements Publisher {
  /** How many of each fault were injected. */
  readonly injected: Record<Exclude<Fault, 'ok'>, number> = { nacked: 0, unroutable: 0, timeout: 0 };

  constructor(
    private readonly inner: Publisher,
    private readonly decide: (message: OutgoingMessage) => Fault,
  ) {}

  get isReady(): boolean {
    return this.inner.isReady;
  }

  ready(signal?: AbortSignal): Promise<void> {
    return this.inner.ready(signal);
  }

  async publishAll(messages: readonly OutgoingMessage[], signal?: AbortSignal): Promise<PublishOutcome[]> {
    const faults = messages.map((m) => this.decide(m));
    const sent = messages.filter((_, i) => faults[i] === 'ok' || faults[i] === 'timeout');
    const real = await this.inner.publishAll(sent, signal);
    let next = 0;
    return faults.map((fault): PublishOutcome => {
      if (fault === 'nacked' || fault === 'unroutable') {
        this.injected[fault]++;
        return { ok: false, reason: fault, error: `injected: ${fault}` };
      }
      const outcome = real[next++] as PublishOutcome;
      if (fault === 'timeout' && outcome.ok) {
        this.injected.timeout++;
        return { ok: false, reason: 'timeout', error: 'injected: no confirm in time' };
      }
      return outcome;
    });
  }
}

export interface TestRelay {
  readonly relay: Relay;
  readonly publisher: FaultyPublisher;
  readonly metrics: Metrics;
  stop(): Promise<void>;
}

export interface TestRelayOptions {
  readonly db: Database;
  readonly exchange: string;
  readonly workerQueue: string;
  readonly decide: (message: OutgoingMessage) => Fault;
  readonly owner: string;
  readonly maxAttempts?: number;
  readonly batchSize?: number;
  readonly lanes?: number;
  readonly pollIntervalMs?: number;
  readonly leaseMs?: number;
  readonly confirmTimeoutMs?: number;
  readonly backoffBaseMs?: number;
  readonly backoffMaxMs?: number;
}

/** A relay in the test process, on its own broker connection, publishing through a FaultyPublisher. */
export function startTestRelay(options: TestRelayOptions): TestRelay {
  const log = testLogger();
  const topology = topologyFor(options.exchange, options.workerQueue, CUSTOMER_EVENT_TYPES);
  const broker = new BrokerConnection(TEST_AMQP_URL, `test relay ${options.owner}`, log);
  broker.start();
  const confirm = new ConfirmPublisher({
    broker,
    exchange: options.exchange,
    confirmTimeoutMs: options.confirmTimeoutMs ?? 2000,
    log,
    setup: (channel) => declareWorkerQueues(channel, topology),
  });
  const publisher = new FaultyPublisher(confirm, options.decide);
  const metrics = new Metrics(options.db);
  const relay = new Relay({
    db: options.db,
    publisher,
    log,
    metrics,
    owner: options.owner,
    batchSize: options.batchSize ?? 20,
    lanes: options.lanes ?? 2,
    pollIntervalMs: options.pollIntervalMs ?? 50,
    leaseMs: options.leaseMs ?? 5000,
    retry: {
      maxAttempts: options.maxAttempts ?? 50,
      backoffBaseMs: options.backoffBaseMs ?? 20,
      backoffMaxMs: options.backoffMaxMs ?? 200,
    },
  });
  relay.start();
  let stopping: Promise<void> | undefined;
  return {
    relay,
    publisher,
    metrics,
    stop() {
      stopping ??= (async () => {
        await relay.stop();
        await confirm.close();
        await broker.stop();
      })();
      return stopping;
    },
  };
}

/** mulberry32: a small seeded PRNG, so a failing random run can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
