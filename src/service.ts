import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { LiveEvents } from './app/live.js';
import { AppServer } from './app/server.js';
import type { ConnectionAuthenticator } from './app/ws.js';
import { BrokerConnection } from './broker/connection.js';
import { ConfirmPublisher } from './broker/publisher.js';
import { declareWorkerQueues, type Topology, topologyFor } from './broker/topology.js';
import type { Config } from './config/index.js';
import { CUSTOMER_CREATED } from './customers/events.js';
import { connectDatabase, type DatabaseHandle, ensureDatabase } from './db/client.js';
import { runMigrations } from './db/migrate.js';
import type { Logger } from './log.js';
import { Metrics } from './metrics/index.js';
import { MetricsServer } from './metrics/server.js';
import { Relay } from './relay/relay.js';
import { WakeupListener, WakeupNotifier } from './relay/wakeup.js';
import { Worker, type WorkerOptions } from './worker/worker.js';

/** Something the service started and, on shutdown, stops in reverse order. */
interface Component {
  readonly name: string;
  stop(): Promise<void>;
}

export interface RunningService {
  /** host:pid:random, part of every broker connection name and of the relay's lease owner. */
  readonly instance: string;
  /** The GraphQL server, when the app role runs. */
  readonly app: AppServer | undefined;
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
 * Starts the configured roles in one process: migrations first (every role needs the tables),
 * then relay and worker, then the app last, so it takes requests only when the rest is up.
 */
export interface ServiceOptions {
  /** Replaces the worker's handlers (tests inject a failing one). */
  readonly handlers?: WorkerOptions['handlers'];
  /** Authenticates WebSocket connections; see README, "Authentication". Off by default. */
  readonly authenticateWebSocket?: ConnectionAuthenticator;
}

export async function startService(
  config: Config,
  log: Logger,
  options: ServiceOptions = {},
): Promise<RunningService> {
  const started: Component[] = [];
  // Names this process's broker connections and lease owner, so operators can tell instances apart.
  const instance = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const topology = topologyFor(config.exchange, config.worker.queue, [CUSTOMER_CREATED]);
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      for (const component of [...started].reverse()) {
        try {
          await component.stop();
          log.debug({ component: component.name }, 'stopped');
        } catch (error) {
          log.error({ err: error, component: component.name }, 'stop failed');
        }
      }
    })();
    return stopping;
  };
  const broker = (role: string) => {
    const connection = new BrokerConnection(config.amqpUrl, `${role} ${instance}`, log.child({ role }));
    connection.start();
    started.push({ name: `${role} broker connection`, stop: () => connection.stop() });
    return connection;
  };

  try {
    await ensureDatabase(config.databaseUrl);
    const database: DatabaseHandle = connectDatabase(config.databaseUrl, config.dbPoolSize);
    started.push({ name: 'database', stop: () => database.close() });
    await runMigrations(database);
    const metrics = new Metrics(database.db);

    let relay: Relay | undefined;
    if (config.roles.includes('relay')) {
      const relayLog = log.child({ role: 'relay' });
      const relayBroker = broker('relay');
      const publisher = new ConfirmPublisher({
        broker: relayBroker,
        exchange: topology.exchange,
        confirmTimeoutMs: config.relay.confirmTimeoutMs,
        log: relayLog,
        setup: (channel) => declareWorkerQueues(channel, topology),
      });
      started.push({ name: 'relay publisher', stop: () => publisher.close() });
      const activeRelay = new Relay({
        db: database.db,
        publisher,
        log: relayLog,
        metrics,
        owner: instance,
        batchSize: config.relay.batchSize,
        lanes: config.relay.lanes,
        pollIntervalMs: config.relay.pollIntervalMs,
        leaseMs: config.relay.leaseMs,
        retry: {
          maxAttempts: config.relay.maxAttempts,
          backoffBaseMs: config.relay.backoffBaseMs,
          backoffMaxMs: config.relay.backoffMaxMs,
        },
      });
      activeRelay.start();
      started.push({ name: 'relay', stop: () => activeRelay.stop() });
      const listener = new WakeupListener(relayBroker, topology.wakeupExchange, relayLog, () =>
        activeRelay.wake(),
      );
      listener.start();
      started.push({ name: 'relay wake-up listener', stop: () => listener.stop() });
      relay = activeRelay;
    }

    // What a writer calls after a commit that wrote outbox rows: wake the relay in this
    // process, if any, and hint the standalone relays through the broker.
    const relayWaker = (role: string, connection: BrokerConnection, roleLog: Logger) => {
      const notifier = new WakeupNotifier(connection, topology.wakeupExchange, roleLog);
      notifier.start();
      started.push({ name: `${role} wake-up notifier`, stop: () => notifier.stop() });
      return () => {
        relay?.wake();
        notifier.notify();
      };
    };

    let worker: Worker | undefined;
    if (config.roles.includes('worker')) {
      const workerLog = log.child({ role: 'worker' });
      const workerBroker = broker('worker');
      const activeWorker = new Worker({
        db: database.db,
        broker: workerBroker,
        topology,
        log: workerLog,
        metrics,
        prefetch: config.worker.prefetch,
        maxAttempts: config.worker.maxAttempts,
        retryDelayMs: config.worker.retryDelayMs,
        onEventsWritten: relayWaker('worker', workerBroker, workerLog),
        handoff: relay,
        handlers: options.handlers,
      });
      activeWorker.start();
      started.push({ name: 'worker', stop: () => activeWorker.stop() });
      worker = activeWorker;
    }

    let app: AppServer | undefined;
    let metricsServer: MetricsServer | undefined;
    if (config.roles.includes('app')) {
      const appLog = log.child({ role: 'app' });
      const appBroker = broker('app');
      const live = new LiveEvents(appBroker, topology, database.db, appLog);
      live.start();
      started.push({ name: 'live events', stop: () => live.stop() });
      const server = new AppServer({
        config,
        db: database.db,
        log: appLog,
        readiness: {
          mysql: async () => {
            await database.ping();
            return true;
          },
          rabbitmq: async () => appBroker.isConnected,
        },
        onEventsWritten: relayWaker('app', appBroker, appLog),
        handoff: relay,
        live,
        workerDeadLetters: () => countMessages(appBroker, topology.workerDeadLetterQueue),
        authenticateWebSocket: options.authenticateWebSocket,
        routes: (express) => {
          express.get('/metrics', async (_req, res) => {
            res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
          });
        },
      });
      await server.start();
      started.push({ name: 'app', stop: () => server.stop() });
      app = server;
    } else {
      metricsServer = new MetricsServer(metrics, log);
      await metricsServer.start(config.metricsPort, config.host);
      started.push({ name: 'metrics server', stop: () => metricsServer?.stop() ?? Promise.resolve() });
    }
    log.info({ roles: config.roles }, 'service started');
    return { instance, app, relay, worker, metricsServer, metrics, topology, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Messages waiting in a queue, or null when the broker cannot be asked right now. */
async function countMessages(broker: BrokerConnection, queue: string): Promise<number | null> {
  try {
    const connection = await broker.connection(AbortSignal.timeout(1000));
    const channel = await connection.createChannel();
    // A missing queue closes the channel with an error event; without a listener it would throw.
    channel.on('error', () => {});
    try {
      return (await channel.checkQueue(queue)).messageCount;
    } finally {
      await channel.close().catch(() => {});
    }
  } catch {
    return null;
  }
}
