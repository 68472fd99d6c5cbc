import { hostname } from 'node:os';
import { AppServer } from './app/server.js';
import { BrokerConnection } from './broker/connection.js';
import type { Config } from './config/index.js';
import { connectDatabase, ensureDatabase } from './db/client.js';
import { runMigrations } from './db/migrate.js';
import type { Logger } from './log.js';

/** Something the service starts and, on shutdown, stops in reverse order. */
interface Component {
  readonly name: string;
  stop(): Promise<void>;
}

export interface RunningService {
  /** The GraphQL server, when the app role runs. */
  readonly app: AppServer | undefined;
  /** Idempotent; stops every role in reverse start order, then closes the pool. */
  stop(): Promise<void>;
}

/**
 * Starts the configured roles in one process: migrations first (every role needs the tables),
 * then relay and worker, then the app last, so it accepts requests only when the rest is up.
 */
export async function startService(config: Config, log: Logger): Promise<RunningService> {
  const started: Component[] = [];
  const instance = `${hostname()}:${process.pid}`;
  await ensureDatabase(config.databaseUrl);
  const database = connectDatabase(config.databaseUrl, config.dbPoolSize);
  started.push({ name: 'database', stop: () => database.close() });
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      for (const component of started.reverse()) {
        try {
          await component.stop();
          log.info({ component: component.name }, 'stopped');
        } catch (error) {
          log.error({ err: error, component: component.name }, 'stop failed');
        }
      }
    })();
    return stopping;
  };

  try {
    await runMigrations(database);
    let app: AppServer | undefined;
    if (config.roles.includes('app')) {
      const broker = new BrokerConnection(config.amqpUrl, `app ${instance}`, log.child({ role: 'app' }));
      broker.start();
      started.push({ name: 'app broker connection', stop: () => broker.stop() });
      app = new AppServer({
        config,
        db: database.db,
        log: log.child({ role: 'app' }),
        readiness: {
          mysql: async () => {
            await database.ping();
            return true;
          },
          rabbitmq: async () => broker.isConnected,
        },
      });
      await app.start();
      started.push({ name: 'app', stop: () => app?.stop() ?? Promise.resolve() });
    }
    log.info({ roles: config.roles }, 'service started');
    return { app, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
