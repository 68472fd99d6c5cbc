import { HintListener } from '../broker/hint.js';
import type { AppConfig } from '../config/index.js';
import type { DatabaseHandle } from '../db/client.js';
import { HistoryFeed } from '../history/feed.js';
import type { OutboxWriter } from '../outbox/writer.js';
import type { RoleDeps, RunningRole } from '../roles.js';
import { DeadLetterQueue } from '../worker/dead-letters.js';
import { AppServer, type AppServerOptions } from './server.js';

export interface AppRole extends RunningRole {
  readonly server: AppServer;
  /** Wakes this instance's live feed: the in-process signal from a worker beside it. */
  readonly feed: HistoryFeed;
}

export interface AppRoleDeps extends RoleDeps {
  readonly database: DatabaseHandle;
  readonly writer: OutboxWriter;
  readonly authenticateWebSocket?: AppServerOptions['authenticateWebSocket'];
}

/**
 * The app role: the GraphQL server (HTTP and WebSocket on one port), its live feed of the
 * history with the broker hint that wakes it, and /metrics on the same port.
 */
export async function startAppRole(deps: AppRoleDeps, config: AppConfig): Promise<AppRole> {
  const { db, log, metrics, topology, broker, database, instance } = deps;
  const feed = new HistoryFeed({
    // Its own pools: a feed whose reads are stuck never takes the connections requests need.
    db: database.component('feed').db,
    log,
    metrics,
    pollIntervalMs: config.live.pollIntervalMs,
    pageSize: config.live.pageSize,
    bufferSize: config.live.bufferSize,
    holeTimeoutMs: config.live.holeTimeoutMs,
  });
  feed.start();
  const hints = new HintListener(broker, topology.historyHintExchange, instance, log, () => feed.wake());
  hints.start();
  const deadLetters = new DeadLetterQueue({
    broker,
    queue: topology.workerDeadLetterQueue,
    workerQueue: topology.workerQueue,
    confirmTimeoutMs: config.confirmTimeoutMs,
  });
  metrics.trackDeadLetters(() => deadLetters.count());
  const server = new AppServer({
    config,
    db,
    log,
    readiness: {
      mysql: () => database.ping(),
      rabbitmq: () => broker.answers(),
    },
    writer: deps.writer,
    feed,
    deadLetters,
    authenticateWebSocket: deps.authenticateWebSocket,
    routes: (express) => {
      express.get('/metrics', async (_req, res) => {
        res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
      });
    },
  });
  metrics.trackLive(
    () => feed.subscriptions,
    () => server.webSocketConnections,
  );
  try {
    await server.start();
  } catch (error) {
    await Promise.all([hints.stop(), feed.stop()]);
    throw error;
  }
  return {
    server,
    feed,
    async stop() {
      // The server first: its drain ends the subscriptions, then nothing reads the feed.
      await server.stop();
      await Promise.all([hints.stop(), feed.stop()]);
    },
  };
}
