import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Database } from '../db/client.js';
import { readStats } from '../outbox/store.js';

/**
 * The process's Prometheus metrics, in a registry of its own (not prom-client's global one),
 * so several services in one test process do not collide.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly published = new Counter({
    name: 'outbox_events_published_total',
    help: 'Events the broker confirmed and the relay marked published.',
    registers: [this.registry],
  });
  readonly publishFailures = new Counter({
    name: 'outbox_publish_failures_total',
    help: 'Failed publish attempts (nack, unroutable, confirm timeout, channel closed, encoding).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly deadEvents = new Counter({
    name: 'outbox_events_dead_total',
    help: 'Events parked as dead after their last attempt.',
    registers: [this.registry],
  });
  readonly leaseTakeovers = new Counter({
    name: 'outbox_lease_takeovers_total',
    help: "Events claimed after another relay's lease on them expired.",
    registers: [this.registry],
  });
  readonly fencedOut = new Counter({
    name: 'outbox_fenced_settlements_total',
    help: 'Published events this relay could not mark because its lease had been taken over.',
    registers: [this.registry],
  });
  readonly batchDuration = new Histogram({
    name: 'outbox_relay_batch_duration_seconds',
    help: 'Time from claiming a batch to settling it.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly workerHandled = new Counter({
    name: 'worker_messages_total',
    help: 'Messages the worker finished, by outcome.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  constructor(db: Database) {
    collectDefaultMetrics({ register: this.registry });
    // Backlog figures come from the database at scrape time, so every instance reports the
    // same, true numbers rather than its own view.
    let statsAt = 0;
    let stats: Awaited<ReturnType<typeof readStats>> | undefined;
    const fresh = async () => {
      // Prometheus asks for both gauges in one scrape; one query serves both.
      if (!stats || Date.now() - statsAt > 500) {
        stats = await readStats(db);
        statsAt = Date.now();
      }
      return stats;
    };
    new Gauge({
      name: 'outbox_backlog_events',
      help: 'Events not yet published and not dead.',
      registers: [this.registry],
      async collect() {
        this.set((await fresh()).pending);
      },
    });
    new Gauge({
      name: 'outbox_oldest_pending_age_seconds',
      help: 'Age of the oldest event not yet published (0 when none).',
      registers: [this.registry],
      async collect() {
        this.set((await fresh()).oldestPendingAgeSeconds ?? 0);
      },
    });
    new Gauge({
      name: 'outbox_dead_events',
      help: 'Events currently parked as dead.',
      registers: [this.registry],
      async collect() {
        this.set((await fresh()).dead);
      },
    });
  }
}
