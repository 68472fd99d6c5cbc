import { ConfigError } from './error.js';
import { parseRoles } from './roles.js';
import { envSchema, MAX_CLAIM_HOLD_MS, tracingWanted } from './schema.js';
import type { Config } from './types.js';

export { ConfigError } from './error.js';
export type { Role } from './roles.js';
export type {
  AppConfig,
  Config,
  DbConfig,
  HttpConfig,
  LiveConfig,
  RelayConfig,
  RetentionConfig,
  WorkerConfig,
} from './types.js';

export type Env = Readonly<Record<string, string | undefined>>;

/**
 * Parses the environment (and the roles given on the command line, which win over `ROLES`).
 * Throws a ConfigError that names every bad variable and says what is wrong with it.
 */
export function loadConfig(env: Env, argv: readonly string[] = []): Config {
  // An empty variable means "not set", as in most shells' `VAR= cmd`.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? '?');
      const shown = key === 'ADMIN_TOKEN' ? '***' : redact(env[key] ?? '');
      return `  ${key}=${JSON.stringify(shown)}: ${issue.message}`;
    });
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const rolesSource = argv.length > 0 ? argv.join(',') : e.ROLES;
  const roles = parseRoles(rolesSource, argv.length > 0 ? 'command line' : 'ROLES');
  if (e.RELAY_BACKOFF_MAX_MS < e.RELAY_BACKOFF_BASE_MS) {
    throw new ConfigError(
      `Invalid configuration:\n  RELAY_BACKOFF_MAX_MS=${e.RELAY_BACKOFF_MAX_MS}: must not be below RELAY_BACKOFF_BASE_MS (${e.RELAY_BACKOFF_BASE_MS})`,
    );
  }
  // Node refuses a server whose headers may take longer than the whole request.
  if (e.HTTP_HEADERS_TIMEOUT_MS > e.HTTP_REQUEST_TIMEOUT_MS) {
    throw new ConfigError(
      `Invalid configuration:\n  HTTP_HEADERS_TIMEOUT_MS=${e.HTTP_HEADERS_TIMEOUT_MS}: must not be above HTTP_REQUEST_TIMEOUT_MS (${e.HTTP_REQUEST_TIMEOUT_MS})`,
    );
  }
  // A lease must outlive a publish that waits the whole confirm timeout and then settles;
  // otherwise batches are taken over while still in flight and published twice.
  if (e.RELAY_LEASE_MS < 2 * e.RELAY_CONFIRM_TIMEOUT_MS) {
    throw new ConfigError(
      `Invalid configuration:\n  RELAY_LEASE_MS=${e.RELAY_LEASE_MS}: must be at least twice RELAY_CONFIRM_TIMEOUT_MS (${e.RELAY_CONFIRM_TIMEOUT_MS})`,
    );
  }
  // A relay lane holds its claim's row locks across a publish, and a writer appending the next
  // event of a customer in that batch waits for them (its predecessor check): were a frozen
  // relay's claim held past InnoDB's default lock wait (50 s), that writer would fail instead.
  if (e.RELAY_LEASE_MS > MAX_CLAIM_HOLD_MS) {
    throw new ConfigError(
      `Invalid configuration:\n  RELAY_LEASE_MS=${e.RELAY_LEASE_MS}: must not be above ${MAX_CLAIM_HOLD_MS} (a frozen relay's claim is held that long, and writers waiting for it give up after innodb_lock_wait_timeout, 50 s by default)`,
    );
  }
  // The relay's claim stays open, idle, across its publish (a wait for a channel and then for
  // the confirms, each up to the confirm timeout): a server that ended idle transactions sooner
  // would end the claim of a relay that is only waiting for the broker.
  if (e.DB_IDLE_TRANSACTION_TIMEOUT_MS < 2 * e.RELAY_CONFIRM_TIMEOUT_MS) {
    throw new ConfigError(
      `Invalid configuration:\n  DB_IDLE_TRANSACTION_TIMEOUT_MS=${e.DB_IDLE_TRANSACTION_TIMEOUT_MS}: must be at least twice RELAY_CONFIRM_TIMEOUT_MS (${e.RELAY_CONFIRM_TIMEOUT_MS})`,
    );
  }
  // The worker trusts only messages whose event is still in the outbox, and its inbox is what
  // tells a redelivery from a new message: an inbox row must outlive its event's outbox row.
  if (e.INBOX_RETENTION < e.OUTBOX_RETENTION) {
    throw new ConfigError(
      `Invalid configuration:\n  INBOX_RETENTION=${present.INBOX_RETENTION ?? '14d'}: must not be shorter than OUTBOX_RETENTION (${present.OUTBOX_RETENTION ?? '7d'})`,
    );
  }
  return deepFreeze({
    logLevel: e.LOG_LEVEL,
    logRepeatIntervalMs: e.LOG_REPEAT_INTERVAL_MS,
    tracing: tracingWanted(e),
    roles,
    metricsPort: e.METRICS_PORT,
    databaseUrl: e.DATABASE_URL,
    dbPoolSize: e.DB_POOL_SIZE,
    dbComponentPoolSize: e.DB_COMPONENT_POOL_SIZE,
    db: {
      queryTimeoutMs: e.DB_QUERY_TIMEOUT_MS,
      acquireTimeoutMs: e.DB_ACQUIRE_TIMEOUT_MS,
      connectTimeoutMs: e.DB_CONNECT_TIMEOUT_MS,
      idleTransactionTimeoutMs: e.DB_IDLE_TRANSACTION_TIMEOUT_MS,
      durability: e.DB_DURABILITY,
    },
    tcpKeepAliveMs: e.TCP_KEEPALIVE_MS,
    amqp: { heartbeatSeconds: e.AMQP_HEARTBEAT_S, connectTimeoutMs: e.AMQP_CONNECT_TIMEOUT_MS },
    amqpUrl: e.AMQP_URL,
    exchange: e.OUTBOX_EXCHANGE,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    startupTimeoutMs: e.STARTUP_TIMEOUT_MS,
    outboxMaxPayloadBytes: e.OUTBOX_MAX_PAYLOAD_BYTES,
    app: {
      env: e.NODE_ENV,
      host: e.HOST,
      port: e.PORT,
      requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
      http: {
        maxBodyBytes: e.MAX_BODY_BYTES,
        maxDepth: e.GRAPHQL_MAX_DEPTH,
        maxCost: e.GRAPHQL_MAX_COST,
        maxPageSize: e.GRAPHQL_MAX_PAGE_SIZE,
        statsMaxAgeMs: e.OUTBOX_STATS_MAX_AGE_MS,
        maxMutations: e.GRAPHQL_MAX_MUTATIONS,
        introspection: e.GRAPHQL_INTROSPECTION === 'true',
        adminToken: e.ADMIN_TOKEN,
        headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS,
        requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT_MS,
        corsOrigins: e.CORS_ORIGINS,
        maxWsConnections: e.WS_MAX_CONNECTIONS,
        maxSubscriptionsPerConnection: e.WS_MAX_SUBSCRIPTIONS,
      },
      live: {
        pollIntervalMs: e.LIVE_POLL_INTERVAL_MS,
        pageSize: e.LIVE_PAGE_SIZE,
        bufferSize: e.LIVE_BUFFER_SIZE,
        holeTimeoutMs: e.LIVE_HOLE_TIMEOUT_MS,
      },
      confirmTimeoutMs: e.RELAY_CONFIRM_TIMEOUT_MS,
    },
    relay: {
      batchSize: e.RELAY_BATCH_SIZE,
      lanes: e.RELAY_LANES,
      pollIntervalMs: e.RELAY_POLL_INTERVAL_MS,
      leaseMs: e.RELAY_LEASE_MS,
      maxAttempts: e.RELAY_MAX_ATTEMPTS,
      backoffBaseMs: e.RELAY_BACKOFF_BASE_MS,
      backoffMaxMs: e.RELAY_BACKOFF_MAX_MS,
      confirmTimeoutMs: e.RELAY_CONFIRM_TIMEOUT_MS,
    },
    worker: {
      queue: e.WORKER_QUEUE,
      prefetch: e.WORKER_PREFETCH,
      maxAttempts: e.WORKER_MAX_ATTEMPTS,
      retryDelayMs: e.WORKER_RETRY_DELAY_MS,
      orderWaitMs: e.WORKER_ORDER_WAIT_MS,
      maxMessageBytes: e.WORKER_MAX_MESSAGE_BYTES,
      confirmTimeoutMs: e.RELAY_CONFIRM_TIMEOUT_MS,
    },
    retention: {
      outboxMs: e.OUTBOX_RETENTION,
      inboxMs: e.INBOX_RETENTION,
      idempotencyKeysMs: e.IDEMPOTENCY_KEY_RETENTION,
      intervalMs: e.PRUNE_INTERVAL_MS,
      batchSize: e.PRUNE_BATCH_SIZE,
    },
  });
}

/** Hides a password in anything that looks like a URL with credentials, for error messages. */
function redact(value: string): string {
  return value.replace(/(\/\/[^:/@\s]*:)[^@\s]*@/, '$1***@');
}

function deepFreeze<T extends object>(value: T): T {
  for (const child of Object.values(value)) {
    if (child !== null && typeof child === 'object') deepFreeze(child);
  }
  return Object.freeze(value);
}

/**
 * The process's configuration, for an entry point: a bad setting is printed, message only, and
 * the process exits with 2 (a usage error, not a crash).
 */
export function loadConfigOrExit(argv: readonly string[] = []): Config {
  try {
    return loadConfig(process.env, argv);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}
