import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { type AppRole, startAppRole } from './app/role.js';
import type { ConnectionAuthenticator } from './app/ws.js';
import { BrokerConnection } from './broker/connection.js';
import { HintNotifier } from './broker/hint.js';
import { type Topology, topologyFor } from './broker/topology.js';
import type { Config } from './config/index.js';
import { CUSTOMER_HANDLERS } from './customers/handlers.js';
import { boundsOf } from './db/bounds.js';
import {
  type Component,
  connectDatabase,
  databaseName,
  ensureDatabase,
  poolSizes,
  transaction,
} from './db/client.js';
import { isTransientDatabaseError } from './db/errors.js';
import { runMigrations } from './db/migrate.js';
import { pruneKeys } from './idempotency/keys.js';
import type { Logger } from './log.js';
import { Metrics } from './metrics/index.js';
import { MetricsServer } from './metrics/server.js';
import { checkDurability } from './outbox/durability.js';
import type { Handlers } from './outbox/handler.js';
import { prunePublished, RETENTION_TRANSACTION } from './outbox/retention.js';
import { OutboxWriter } from './outbox/writer.js';
import type { Relay } from './relay/relay.js';
import { type RelayRole, startRelayRole } from './relay/role.js';
import { Pruner } from './retention/pruner.js';
import type { RoleDeps } from './roles.js';
import { backoffDelay, sleep } from './support/sleep.js';
import { pruneAttempts } from './worker/attempts.js';
import { startWorkerRole, type WorkerRole } from './worker/role.js';
import { pruneInbox } from './worker/store.js';
import type { Worker } from './worker/worker.js';

export interface RunningService {
  /** host:pid:random, part of every broker connection name and of the relay's lease owner. */
  readonly instance: string;
  /** The GraphQL server, when the app role runs. */
  readonly app: AppRole['server'] | undefined;
  readonly relay: Relay | undefined;
  readonly worker: Worker | undefined;
  /** The standalone /metrics + /healthz server, when the app role does not run. */
  readonly metricsServer: MetricsServer | undefined;
  readonly metrics: Metrics;
  readonly topology: Topology;
  /** Idempotent; stops every role in reverse start order, then closes the pool. */
  stop(): Promise<void>;
}

/**
 * Runs the first database work of a start, waiting for the server while it is unreachable (a
 * deploy that starts the service before its database, a database restarting): logged once per
 * attempt, one line, retried with back-off until `timeoutMs`, after which the start fails with
 * the last error. A refused login or any other error fails at once. An abort (a signal during
 * the start) ends the wait at once, even inside an attempt, with StartAbortedError.
 */
async function untilReachable(
  timeoutMs: number,
  log: Logger,
  signal: AbortSignal | undefined,
  work: () => Promise<void>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const aborted = new Promise<never>((_, reject) => {
    const abort = () => reject(new StartAbortedError('The start was stopped'));
    if (signal?.aborted) abort();
    else signal?.addEventListener('abort', abort, { once: true });
  });
  // Only ever raced, so never unhandled.
  aborted.catch(() => {});
  for (let failures = 1; ; failures++) {
    try {
      await Promise.race([work(), aborted]);
      if (failures > 1) log.info('database reachable; starting');
      return;
    } catch (error) {
      const left = deadline - Date.now();
      if (error instanceof StartAbortedError || !isTransientDatabaseError(error) || left <= 0) throw error;
      const delay = Math.min(left, backoffDelay(failures, 500, 5000));
      log.warn(
        { retryInMs: delay, waitedMs: timeoutMs - left, timeoutMs },
        `waiting for the database: ${error instanceof Error ? error.message : String(error)}`,
      );
      await sleep(delay, signal);
      if (signal?.aborted) throw new StartAbortedError('The start was stopped');
    }
  }
}

export interface ServiceOptions {
  /** Replaces the worker's handlers (tests inject a failing one). */
  readonly handlers?: Handlers;
  /** Authenticates WebSocket connections; see docs/api.md, "WebSocket rules and authentication". Off by default. */
  readonly authenticateWebSocket?: ConnectionAuthenticator;
  /** Aborts the start (a signal): its waits end, what it started is stopped, it rejects. */
  readonly signal?: AbortSignal;
}

/** The start was aborted through ServiceOptions.signal. */
export class StartAbortedError extends Error {
  override readonly name = 'StartAbortedError';
}

/**
 * Composition, and nothing else: picks the configured roles and orders their start and stop.
 * Migrations first (every role needs the tables), then relay, worker and app, so the app takes
 * requests only when the rest is up; stop runs in reverse. Each role lives in its folder's
 * role.ts; what they share (the database, the metrics, the outbox writer, the hints) is made here.
 */
export async function startService(
  config: Config,
  log: Logger,
  options: ServiceOptions = {},
): Promise<RunningService> {
  // Roles stop one after another in reverse start order; the connections they used (resources:
  // the database, the broker connections) close after them all, side by side, since each may
  // wait a moment for a server behind a dead link that does not answer its goodbye.
  const stack: Array<{ name: string; stop: () => Promise<void>; resource?: boolean }> = [];
  // Names this process's broker connections and lease owner, so operators can tell instances apart.
  const instance = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const handlers = options.handlers ?? CUSTOMER_HANDLERS;
  const topology = topologyFor(config.exchange, config.worker.queue, Object.keys(handlers));
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      const stopOne = async ({ name, stop: stopIt }: (typeof stack)[number]) => {
        try {
          await stopIt();
          log.debug({ component: name }, 'stopped');
        } catch (error) {
          log.error({ err: error, component: name }, 'stop failed');
        }
      };
      const order = stack.reverse();
      for (const item of order.filter((i) => !i.resource)) await stopOne(item);
      await Promise.all(order.filter((i) => i.resource).map(stopOne));
    })();
    return stopping;
  };
  const started = <T extends { stop(): Promise<void> }>(name: string, component: T): T => {
    stack.push({ name, stop: () => component.stop() });
    return component;
  };
  /** Every role's connection, for dependency_up once the metrics exist. */
  const brokerConnections: BrokerConnection[] = [];
  const broker = (role: string) => {
    const connection = new BrokerConnection(config.amqpUrl, `${role} ${instance}`, log.child({ role }), {
      ...config.amqp,
      keepAliveMs: config.tcpKeepAliveMs,
    });
    connection.start();
    brokerConnections.push(connection);
    stack.push({ name: `${role} broker connection`, stop: () => connection.stop(), resource: true });
    return connection;
  };

  try {
    const bounds = boundsOf(config);
    const database = connectDatabase(
      config.databaseUrl,
      poolSizes(config.dbPoolSize, config.dbComponentPoolSize, config.relay.lanes),
      bounds,
    );
    stack.push({ name: 'database', stop: () => database.close(), resource: true });
    await untilReachable(config.startupTimeoutMs, log, options.signal, async () => {
      await ensureDatabase(config.databaseUrl);
      // DDL and the migration lock's wait may take longer than any service statement.
      const migrating = connectDatabase(config.databaseUrl, 2, { ...bounds, queryTimeoutMs: 0 });
      try {
        await runMigrations(migrating);
      } finally {
        await migrating.close();
      }
    });
    const { db } = database;
    const durability = await checkDurability(db, config.db.durability, log);
    // /metrics is served over HTTP: its reads go with the requests'.
    const metrics = new Metrics(db);
    metrics.trackBroker(() => brokerConnections.every((connection) => connection.isConnected));
    // Each role on pools of its own (db/client.ts, Component): HTTP requests the app's.
    const deps = (role: string, component: Component): RoleDeps => ({
      db: database.component(component).db,
      log: log.child({ role }),
      metrics,
      topology,
      broker: broker(role),
      instance,
    });

    const relayRole: RelayRole | undefined = config.roles.includes('relay')
      ? started(
          'relay',
          startRelayRole(deps('relay', 'relay'), config.relay, { barrier: durability.barrier }),
        )
      : undefined;

    // Hints to other processes: "new outbox rows" for relays, "new history rows" for live feeds.
    const needsWriter = config.roles.includes('app') || config.roles.includes('worker');
    const hints = needsWriter ? broker('hints') : undefined;
    const notifier = (exchange: string) => {
      if (!hints) return undefined;
      const n = new HintNotifier(hints, exchange, instance, log.child({ role: 'hints' }));
      n.start();
      return started(`${exchange} notifier`, n);
    };
    const writer = new OutboxWriter({
      handoff: relayRole?.relay,
      relayHint: notifier(topology.relayHintExchange),
      maxPayloadBytes: config.outboxMaxPayloadBytes,
      metrics,
    });

    let appRole: AppRole | undefined;
    let workerRole: WorkerRole | undefined;
    if (config.roles.includes('worker')) {
      const historyHint = notifier(topology.historyHintExchange);
      workerRole = started(
        'worker',
        startWorkerRole(
          {
            ...deps('worker', 'worker'),
            handlers,
            writer,
            // The live feed beside it, if any, at once; app instances elsewhere through the broker.
            onHistory: (rows) => {
              appRole?.feed.deliverCommitted(rows);
              historyHint?.notify();
            },
          },
          config.worker,
        ),
      );
    }

    let metricsServer: MetricsServer | undefined;
    if (config.roles.includes('app')) {
      appRole = started(
        'app',
        await startAppRole(
          {
            ...deps('app', 'requests'),
            database,
            writer,
            authenticateWebSocket: options.authenticateWebSocket,
          },
          config.app,
        ),
      );
    } else {
      metricsServer = new MetricsServer(metrics, log);
      await metricsServer.start(config.metricsPort, config.app.host);
      started('metrics server', metricsServer);
    }

    const { retention } = config;
    const pruning = database.component('retention');
    started(
      'retention',
      new Pruner({
        pool: pruning.pool,
        log: log.child({ role: 'retention' }),
        metrics,
        intervalMs: retention.intervalMs,
        batchSize: retention.batchSize,
        lockName: `graphql-outbox:retention:${databaseName(config.databaseUrl)}`,
        tasks: [
          { table: 'outbox', prune: (n) => prunePublished(pruning.db, retention.outboxMs, n) },
          // In transactions of retention's kind: no gap locks where workers and writers insert.
          {
            table: 'inbox',
            prune: (n) =>
              transaction(pruning.db, (tx) => pruneInbox(tx, retention.inboxMs, n), RETENTION_TRANSACTION),
          },
          {
            table: 'worker_attempts',
            prune: (n) =>
              transaction(pruning.db, (tx) => pruneAttempts(tx, retention.inboxMs, n), RETENTION_TRANSACTION),
          },
          {
            table: 'idempotency_keys',
            prune: (n) =>
              transaction(
                pruning.db,
                (tx) => pruneKeys(tx, retention.idempotencyKeysMs, n),
                RETENTION_TRANSACTION,
              ),
          },
        ],
      }),
    ).start();

    log.info({ roles: config.roles }, 'service started');
    return {
      instance,
      app: appRole?.server,
      relay: relayRole?.relay,
      worker: workerRole?.worker,
      metricsServer,
      metrics,
      topology,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
