import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Database } from '../db/client.js';
import { readStats } from '../outbox/stats.js';

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

/** Seconds from `occurredAt` to `now`; 0 when the writer's clock ran ahead of this one. */
export function secondsSince(occurredAt: Date | string, now = Date.now()): number {
  const at = typeof occurredAt === 'string' ? Date.parse(occurredAt) : occurredAt.getTime();
  return Number.isFinite(at) ? Math.max(0, (now - at) / 1000) : 0;
}

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
  readonly written = new Counter({
    name: 'outbox_events_written_total',
    help: 'Events committed to the outbox by this process, by type (CustomerCreated counts creates).',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly deadEvents = new Counter({
    name: 'outbox_events_dead_total',
    help: 'Events parked as dead after their last attempt.',
    registers: [this.registry],
  });
  readonly leaseTakeovers = new Counter({
    name: 'outbox_lease_takeovers_total',
    help: 'Events a relay claimed after the hand-off lease another relay held on them expired.',
    registers: [this.registry],
  });
  readonly fencedOut = new Counter({
    name: 'outbox_fenced_settlements_total',
    help: 'Handed-over events this relay published but could not mark: its lease had been taken over.',
    registers: [this.registry],
  });
  readonly batchDuration = new Histogram({
    name: 'outbox_relay_batch_duration_seconds',
    help: 'Time from claiming a batch to settling it.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  // The delays a user feels, each from the event's occurredAt (its writer's clock at the
  // commit) to a step: every figure includes the time waited in the outbox and the queues, which
  // the batch durations above do not. Buckets reach an hour: an outage's backlog shows as such.
  readonly publishLatency = new Histogram({
    name: 'outbox_event_publish_latency_seconds',
    help: "Time from an event's occurrence to the broker's confirm of its publish.",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly handleLatency = new Histogram({
    name: 'worker_event_handle_latency_seconds',
    help: "Time from an event's occurrence to the commit of the worker's handling (effect and history row).",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly deliveryLatency = new Histogram({
    name: 'live_event_delivery_latency_seconds',
    help: "Time from an event's occurrence to its delivery to a live subscriber (events handled before the subscription started, replayed from the history, are not counted).",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly workerHandled = new Counter({
    name: 'worker_messages_total',
    help: 'Messages the worker finished, by outcome (handled, duplicate, waiting for an earlier event of their aggregate, retried, parked, requeued).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly pruned = new Counter({
    name: 'retention_rows_deleted_total',
    help: 'Rows deleted by retention, by table.',
    labelNames: ['table'] as const,
    registers: [this.registry],
  });
  readonly pruneLastRun = new Gauge({
    name: 'retention_last_run_timestamp_seconds',
    help: 'When this process last completed a retention run (0: never).',
    registers: [this.registry],
  });

  readonly historyReads = new Counter({
    name: 'live_history_reads_total',
    help: "Reads of the history for live subscriptions: by the instance's one reader (feed) and by subscribers catching up in pages (catch_up).",
    labelNames: ['reader'] as const,
    registers: [this.registry],
  });
  readonly historyRowsRead = new Counter({
    name: 'live_history_rows_read_total',
    help: 'Rows those reads returned, by reader.',
    labelNames: ['reader'] as const,
    registers: [this.registry],
  });
  readonly historyHoles = new Counter({
    name: 'live_history_holes_total',
    help: "Holes the instance's history reader met: a read showed a position without an earlier one, whose commit was not yet visible to it. The reader waits and reads again; it never hands out the later position first.",
    registers: [this.registry],
  });
  readonly historyHoleWait = new Histogram({
    name: 'live_history_hole_wait_seconds',
    help: 'How long the history reader waited at a hole until it filled.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly historyHolesSkipped = new Counter({
    name: 'live_history_holes_skipped_total',
    help: 'Positions the history reader skipped after waiting LIVE_HOLE_TIMEOUT_MS: missing rows (deleted by hand, a partial restore), never a commit on its way. Alert on any.',
    registers: [this.registry],
  });
  /** What live_queued_rows reports; the app role points it at its feed. */
  private queuedRows: () => number = () => 0;

  /** Whether each of this process's broker connections is open (dependency_up{dependency="broker"}). */
  private readonly brokers: Array<() => boolean> = [];
  /** What worker_dead_letter_messages reports; the app role points it at the dead-letter queue. */
  private deadLetters: (() => Promise<number | null>) | undefined;

  private subscriptions: () => number = () => 0;
  private connections: () => number = () => 0;

  /** Makes live_subscriptions and graphql_ws_connections report these at every scrape. */
  trackLive(subscriptions: () => number, connections: () => number): void {
    this.subscriptions = subscriptions;
    this.connections = connections;
  }

  trackBroker(connected: () => boolean): void {
    this.brokers.push(connected);
  }

  trackDeadLetters(count: () => Promise<number | null>): void {
    this.deadLetters = count;
  }

  /** Makes live_queued_rows report `source()` at every scrape. */
  trackQueuedRows(source: () => number): void {
    this.queuedRows = source;
  }

  constructor(db: Database) {
    collectDefaultMetrics({ register: this.registry });
    const queued = () => this.queuedRows();
    const subscriptions = () => this.subscriptions();
    const connections = () => this.connections();
    new Gauge({
      name: 'live_subscriptions',
      help: 'onCustomerEvent subscriptions open on this instance, over every transport.',
      registers: [this.registry],
      collect() {
        this.set(subscriptions());
      },
    });
    new Gauge({
      name: 'graphql_ws_connections',
      help: 'WebSocket (graphql-ws) connections open on this instance.',
      registers: [this.registry],
      collect() {
        this.set(connections());
      },
    });
    new Gauge({
      name: 'live_queued_rows',
      help: 'Rows read from the history and not yet sent, over all live subscriptions of this instance: bounded by LIVE_PAGE_SIZE and LIVE_BUFFER_SIZE per subscription.',
      registers: [this.registry],
      collect() {
        this.set(queued());
      },
    });
    // Backlog figures come from the database at scrape time, so every instance reports the
    // same, true numbers rather than its own view.
    let statsAt = 0;
    let stats: Awaited<ReturnType<typeof readStats>> | undefined;
    const statsUp = new Gauge({
      name: 'outbox_stats_up',
      help: '1 when the backlog figures below could be read from the database at this scrape, 0 when they are the last known ones.',
      registers: [this.registry],
    });
    let databaseUp = false;
    const brokers = this.brokers;
    new Gauge({
      name: 'dependency_up',
      help: 'Whether this process reaches a dependency: database (a query at this scrape), broker (every broker connection of its roles open).',
      labelNames: ['dependency'] as const,
      registers: [this.registry],
      async collect() {
        await fresh();
        this.set({ dependency: 'database' }, databaseUp ? 1 : 0);
        if (brokers.length > 0) this.set({ dependency: 'broker' }, brokers.every((up) => up()) ? 1 : 0);
      },
    });
    const deadLetters = () => this.deadLetters?.() ?? Promise.resolve(null);
    new Gauge({
      name: 'worker_dead_letter_messages',
      help: 'Messages the worker parked in its dead-letter queue (reported by app instances; the last known figure while the broker is away).',
      registers: [this.registry],
      async collect() {
        const count = await deadLetters();
        if (count !== null) this.set(count);
      },
    });
    const fresh = async () => {
      // Prometheus asks for several gauges in one scrape; one query serves them all. With the
      // database away, the last figures stay (and outbox_stats_up says so): /metrics keeps
      // answering, with every counter of this process, exactly when it matters.
      if (!stats || Date.now() - statsAt > 500) {
        try {
          stats = await readStats(db);
          statsAt = Date.now();
          databaseUp = true;
          statsUp.set(1);
        } catch {
          databaseUp = false;
          statsUp.set(0);
          statsAt = Date.now();
        }
      }
      return (
        stats ?? { pending: 0, oldestPendingAgeSeconds: null, dead: 0, held: 0, leased: 0, published: 0 }
      );
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
      name: 'outbox_held_events',
      help: 'Pending events held back until an earlier event of their aggregate is published.',
      registers: [this.registry],
      async collect() {
        this.set((await fresh()).held);
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
