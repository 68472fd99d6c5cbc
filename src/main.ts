/**
 * The process entry point and the one owner of process signals.
 *
 *   npm start                 all roles: app, relay, worker
 *   npm start -- relay        one standalone relay
 *   npm start -- app,worker   (or ROLES=app,worker)
 *
 * The first SIGTERM/SIGINT stops gracefully and exits 0, during the start as well (the start is
 * aborted); a second one, or the shutdown deadline passing, exits at once with 1.
 */
// First: it sets what the libraries imported below read when they load.
import './support/node-env.js';
import { connect } from 'node:net';
import { loadConfigOrExit } from './config/index.js';
import { createLogger, type Logger } from './log.js';
import { type RunningService, startService } from './service.js';
import { StartupError } from './support/startup-error.js';
import { startTracing } from './telemetry/sdk.js';

const config = loadConfigOrExit(process.argv.slice(2));

const log = createLogger(config.logLevel, {}, undefined, config.logRepeatIntervalMs);
let shutdownAt: number | undefined;
// `npm start` under a terminal delivers one Ctrl-C twice (the terminal signals the whole process
// group, and npm forwards its own copy), so repeats this close together are the same request.
const SAME_SIGNAL_WINDOW_MS = 1000;

/**
 * The service starts without RabbitMQ and connects once it is there (the outbox keeps every
 * event meanwhile), so a missing broker does not stop the start; it only shows as a retry
 * warning. A newcomer who never started one gets this one line with the way to do it.
 */
async function warnIfBrokerAway(amqpUrl: string, log: Logger): Promise<void> {
  const url = new URL(amqpUrl);
  const port = Number(url.port || (url.protocol === 'amqps:' ? 5671 : 5672));
  const reachable = await new Promise<boolean>((resolve) => {
    const socket = connect({ host: url.hostname, port, timeout: 3000 });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('timeout', () => done(false));
    socket.once('error', () => done(false));
  });
  if (!reachable) {
    log.warn(
      `RabbitMQ is not reachable at ${url.hostname}:${port} (AMQP_URL): events wait in the outbox and ` +
        'the service keeps retrying. Start it, e.g. `rabbitmq-server -detached`, or ' +
        '`docker compose up -d rabbitmq` and AMQP_URL=amqp://outbox:outbox@127.0.0.1:5672',
    );
  }
}

const starting = new AbortController();
let started: Promise<{ service: RunningService; stopTracing: () => Promise<void> } | undefined> | undefined;

/**
 * Installed before anything that can wait (main's first line): a SIGTERM while the start waits
 * for the database must stop it, not meet Node's default. The start is aborted; whatever it
 * already started is stopped, then the process exits 0.
 */
function shutdown(signal: NodeJS.Signals): void {
  if (shutdownAt !== undefined) {
    if (Date.now() - shutdownAt < SAME_SIGNAL_WINDOW_MS) return;
    log.warn({ signal }, 'second signal: exiting now');
    process.exit(1);
  }
  shutdownAt = Date.now();
  log.info({ signal, timeoutMs: config.shutdownTimeoutMs }, 'shutting down');
  const deadline = setTimeout(() => {
    log.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown deadline passed: exiting now');
    process.exit(1);
  }, config.shutdownTimeoutMs);
  deadline.unref();
  starting.abort();
  // An aborted or failed start has stopped what it started already.
  const running = started?.catch(() => undefined) ?? Promise.resolve(undefined);
  running
    .then(async (up) => {
      await up?.service.stop();
      await up?.stopTracing();
    })
    .then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
}

async function main(): Promise<void> {
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  void warnIfBrokerAway(config.amqpUrl, log);
  started = (async () => {
    const stopTracing = await startTracing(config.tracing, log);
    try {
      return { service: await startService(config, log, { signal: starting.signal }), stopTracing };
    } catch (error) {
      await stopTracing();
      throw error;
    }
  })();
  await started;
}

main().catch((error: unknown) => {
  // Stopped by a signal during the start: shutdown() exits.
  if (starting.signal.aborted) return;
  // A server not running or a port taken: the message says what to do; a stack would bury it.
  if (error instanceof StartupError) log.fatal(error.message);
  else log.fatal({ err: error }, 'start failed');
  process.exit(1);
});
