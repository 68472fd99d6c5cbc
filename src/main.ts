/**
 * The process entry point and the one owner of process signals.
 *
 *   npm start                 all roles: app, relay, worker
 *   npm start -- relay        one standalone relay
 *   npm start -- app,worker   (or ROLES=app,worker)
 *
 * The first SIGTERM/SIGINT stops gracefully and exits 0; a second one, or the shutdown
 * deadline passing, exits at once with 1.
 */
import { ConfigError, loadConfig } from './config/index.js';
import { createLogger } from './log.js';
import { startService } from './service.js';

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig(process.env, process.argv.slice(2));
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
  throw error;
}

const log = createLogger(config.logLevel);
let shutdownAt: number | undefined;
// `npm start` under a terminal delivers one Ctrl-C twice (the terminal signals the whole process
// group, and npm forwards its own copy), so repeats this close together are the same request.
const SAME_SIGNAL_WINDOW_MS = 1000;

async function main(): Promise<void> {
  const service = await startService(config, log);
  const shutdown = (signal: NodeJS.Signals) => {
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
    service.stop().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((error: unknown) => {
  log.fatal({ err: error }, 'start failed');
  process.exit(1);
});
