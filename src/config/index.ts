import { z } from 'zod';
import { ConfigError } from './error.js';
import { parseRoles, type Role } from './roles.js';

export { ConfigError } from './error.js';

export type { Role } from './roles.js';

/**
 * The whole configuration of a process, read once from the environment at start.
 * Nothing else in the code base reads `process.env`: a module that needs a setting takes it
 * from this object, which keeps tests free to run several differently configured services
 * in one process.
 */
export interface Config {
  readonly env: 'development' | 'production' | 'test';
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /**
   * Traces over OTLP: on when the standard variables ask for them (OTEL_TRACES_EXPORTER other
   * than none, or an OTLP endpoint), off when OTEL_SDK_DISABLED=true. The SDK reads the rest of
   * the OTEL_* variables itself.
   */
  readonly tracing: boolean;
  readonly roles: readonly Role[];
  readonly host: string;
  readonly port: number;
  /** /metrics and /healthz of a process without the app role (a standalone relay or worker). */
  readonly metricsPort: number;
  readonly databaseUrl: string;
  readonly dbPoolSize: number;
  /** Connections of the relay (plus its lanes), the worker and the live feed, each (db/client.ts). */
  readonly dbComponentPoolSize: number;
  /** Bounds on every wait for the database (src/db/bounds.ts). */
  readonly db: {
    readonly queryTimeoutMs: number;
    readonly acquireTimeoutMs: number;
    readonly connectTimeoutMs: number;
    readonly idleTransactionTimeoutMs: number;
    /**
     * What a start does when the server's settings let it lose commits it acknowledged
     * (outbox/durability.ts): refuse to start, or warn and run (DB_DURABILITY).
     */
    readonly durability: 'refuse' | 'warn';
  };
  /** Idle time before the first TCP keep-alive probe on database and broker sockets. */
  readonly tcpKeepAliveMs: number;
  /** A GraphQL request still waiting then is answered 503 SERVICE_UNAVAILABLE, its work abandoned. */
  readonly requestTimeoutMs: number;
  readonly amqp: {
    /** The heartbeat asked of the broker: a silent link is noticed after two of them. */
    readonly heartbeatSeconds: number;
    readonly connectTimeoutMs: number;
  };
  readonly amqpUrl: string;
  readonly exchange: string;
  readonly shutdownTimeoutMs: number;
  /** How long a start waits for the database to be reachable before giving up. */
  readonly startupTimeoutMs: number;
  readonly http: {
    readonly maxBodyBytes: number;
    readonly maxDepth: number;
    readonly maxCost: number;
    readonly maxPageSize: number;
    /**
     * outboxStats and its workerDeadLetters are computed at most once per this many ms per
     * process and shared by every request meanwhile (support/shared-figure.ts): counting the
     * published rows reads all of them.
     */
    readonly statsMaxAgeMs: number;
    /** Mutation fields one request may run (aliases and fragments counted). */
    readonly maxMutations: number;
    readonly introspection: boolean;
    /**
     * The operator operations (deadEvents, reviveDeadEvents) require it; without it they are
     * closed to everyone.
     */
    readonly adminToken: string | undefined;
    /** Slow clients: time to send the headers, and the whole request. */
    readonly headersTimeoutMs: number;
    readonly requestTimeoutMs: number;
    /** Origins besides the service's own that browsers may call it from (CORS, WebSocket upgrades). */
    readonly corsOrigins: readonly string[];
    readonly maxWsConnections: number;
    readonly maxSubscriptionsPerConnection: number;
  };
  readonly relay: {
    readonly batchSize: number;
    readonly lanes: number;
    readonly pollIntervalMs: number;
    readonly leaseMs: number;
    readonly maxAttempts: number;
    readonly backoffBaseMs: number;
    readonly backoffMaxMs: number;
    readonly confirmTimeoutMs: number;
  };
  readonly worker: {
    readonly queue: string;
    readonly prefetch: number;
    readonly maxAttempts: number;
    readonly retryDelayMs: number;
    readonly orderWaitMs: number;
    readonly maxMessageBytes: number;
  };
  /** Largest event payload, as JSON, a writer may append. */
  readonly outboxMaxPayloadBytes: number;
  readonly live: {
    readonly pollIntervalMs: number;
    readonly pageSize: number;
    readonly bufferSize: number;
    /** How long the history reader waits at a hole before it calls the hole permanent and skips it. */
    readonly holeTimeoutMs: number;
  };
  readonly retention: {
    readonly outboxMs: number;
    readonly inboxMs: number;
    readonly idempotencyKeysMs: number;
    readonly intervalMs: number;
    readonly batchSize: number;
  };
}

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** `90s`, `30m`, `24h`, `7d` (or plain milliseconds) → milliseconds, within [min, max]. */
const duration = (min: number, max: number) =>
  z
    .string()
    .regex(/^[0-9]+(ms|s|m|h|d)?$/, 'must be a duration such as 90s, 30m, 24h or 7d')
    .transform((value) => {
      const [, amount, unit] = /^([0-9]+)(ms|s|m|h|d)?$/.exec(value) ?? [];
      return Number(amount) * (DURATION_UNITS[unit ?? 'ms'] ?? 1);
    })
    .pipe(z.number().min(min).max(max));

/** Plain decimal digits only: `0x1F90`, `8e3` or a blank are mistakes, not numbers. */
const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^[0-9]+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().min(min).max(max));

const url = (protocols: readonly string[]) =>
  z.string().refine(
    (value) => {
      try {
        return protocols.includes(new URL(value).protocol);
      } catch {
        return false;
      }
    },
    { message: `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}` },
  );

/**
 * A comma-separated list of origins (`https://app.example`, `http://localhost:3000`), compared
 * exactly with a browser's `Origin` header, so each must be scheme, host and port only.
 */
const origins = z
  .string()
  .transform((value) =>
    value
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== ''),
  )
  .superRefine((items, ctx) => {
    for (const item of items) {
      let origin: string | undefined;
      try {
        const parsed = new URL(item);
        if (parsed.protocol === 'http:' || parsed.protocol === 'https:') origin = parsed.origin;
      } catch {
        origin = undefined;
      }
      if (origin !== item) {
        ctx.addIssue({
          code: 'custom',
          message: `${JSON.stringify(item)} is not an origin: write scheme://host[:port], no path or trailing slash`,
        });
      }
    }
  });

const name = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9_.:-]+$/, 'may hold only letters, digits and _ . : -');

/** Environment variable → parser. The keys are the documented variable names. */
/** The longest RELAY_LEASE_MS: below InnoDB's default lock wait timeout (see loadConfig). */
const MAX_CLAIM_HOLD_MS = 45_000;

const schema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('production'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  ROLES: z.string().default('app,relay,worker'),
  OTEL_SDK_DISABLED: z.string().optional(),
  OTEL_TRACES_EXPORTER: z.string().optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.string().optional(),
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: int(0, 65535).default(4000),
  DATABASE_URL: url(['mysql:']).default('mysql://root@127.0.0.1:3306/outbox'),
  // Two at least: migrations hold a lock on one connection while the migrator uses another.
  DB_POOL_SIZE: int(2, 1000).default(20),
  DB_COMPONENT_POOL_SIZE: int(1, 1000).default(4),
  DB_QUERY_TIMEOUT_MS: int(100, 600_000).default(5_000),
  DB_ACQUIRE_TIMEOUT_MS: int(100, 600_000).default(3_000),
  DB_CONNECT_TIMEOUT_MS: int(100, 600_000).default(3_000),
  DB_IDLE_TRANSACTION_TIMEOUT_MS: int(1000, 3_600_000).default(30_000),
  DB_DURABILITY: z.enum(['refuse', 'warn'], { message: 'must be refuse or warn' }).default('refuse'),
  TCP_KEEPALIVE_MS: int(1000, 7_200_000).default(5_000),
  REQUEST_TIMEOUT_MS: int(100, 600_000).default(10_000),
  AMQP_HEARTBEAT_S: int(1, 600).default(5),
  AMQP_CONNECT_TIMEOUT_MS: int(100, 600_000).default(3_000),
  AMQP_URL: url(['amqp:', 'amqps:']).default('amqp://guest:guest@127.0.0.1:5672'),
  OUTBOX_EXCHANGE: name.default('outbox.events'),
  SHUTDOWN_TIMEOUT_MS: int(1000, 600_000).default(10_000),
  STARTUP_TIMEOUT_MS: int(0, 3_600_000).default(120_000),
  MAX_BODY_BYTES: int(1024, 64 * 1024 * 1024).default(102_400),
  GRAPHQL_MAX_DEPTH: int(1, 100).default(8),
  GRAPHQL_MAX_COST: int(1, 1_000_000).default(5_000),
  GRAPHQL_MAX_PAGE_SIZE: int(1, 10_000).default(100),
  OUTBOX_STATS_MAX_AGE_MS: int(0, 3_600_000).default(1_000),
  GRAPHQL_MAX_MUTATIONS: int(1, 100).default(1),
  HTTP_HEADERS_TIMEOUT_MS: int(1000, 600_000).default(10_000),
  HTTP_REQUEST_TIMEOUT_MS: int(1000, 3_600_000).default(30_000),
  CORS_ORIGINS: origins.default([]),
  WS_MAX_CONNECTIONS: int(1, 1_000_000).default(1000),
  WS_MAX_SUBSCRIPTIONS: int(1, 100_000).default(100),
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  GRAPHQL_INTROSPECTION: z.enum(['true', 'false'], { message: 'must be true or false' }).default('true'),
  RELAY_BATCH_SIZE: int(1, 10_000).default(500),
  RELAY_LANES: int(1, 64).default(2),
  RELAY_POLL_INTERVAL_MS: int(10, 3_600_000).default(1_000),
  RELAY_LEASE_MS: int(1000, 3_600_000).default(30_000),
  RELAY_MAX_ATTEMPTS: int(1, 1000).default(10),
  RELAY_BACKOFF_BASE_MS: int(1, 3_600_000).default(1_000),
  RELAY_BACKOFF_MAX_MS: int(1, 86_400_000).default(300_000),
  RELAY_CONFIRM_TIMEOUT_MS: int(100, 600_000).default(10_000),
  METRICS_PORT: int(0, 65535).default(9464),
  WORKER_QUEUE: name.default('outbox.worker'),
  WORKER_PREFETCH: int(1, 65535).default(32),
  WORKER_MAX_ATTEMPTS: int(1, 1000).default(5),
  WORKER_RETRY_DELAY_MS: int(100, 86_400_000).default(5_000),
  WORKER_ORDER_WAIT_MS: int(10, 60_000).default(100),
  WORKER_MAX_MESSAGE_BYTES: int(1024, 64 * 1024 * 1024).default(256 * 1024),
  OUTBOX_MAX_PAYLOAD_BYTES: int(256, 16 * 1024 * 1024).default(64 * 1024),
  LIVE_POLL_INTERVAL_MS: int(10, 60_000).default(1_000),
  LIVE_PAGE_SIZE: int(10, 10_000).default(500),
  LIVE_BUFFER_SIZE: int(10, 1_000_000).default(1_000),
  LIVE_HOLE_TIMEOUT_MS: int(100, 600_000).default(5_000),
  OUTBOX_RETENTION: duration(60_000, 3650 * 86_400_000).default(7 * 86_400_000),
  INBOX_RETENTION: duration(60_000, 3650 * 86_400_000).default(14 * 86_400_000),
  IDEMPOTENCY_KEY_RETENTION: duration(60_000, 3650 * 86_400_000).default(86_400_000),
  PRUNE_INTERVAL_MS: int(100, 86_400_000).default(60_000),
  PRUNE_BATCH_SIZE: int(1, 100_000).default(1_000),
});

export type Env = Readonly<Record<string, string | undefined>>;

/**
 * Parses the environment (and the roles given on the command line, which win over `ROLES`).
 * Throws a ConfigError that names every bad variable and says what is wrong with it.
 */
function tracingWanted(e: {
  OTEL_SDK_DISABLED?: string;
  OTEL_TRACES_EXPORTER?: string;
  OTEL_EXPORTER_OTLP_ENDPOINT?: string;
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?: string;
}): boolean {
  if (e.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporters = e.OTEL_TRACES_EXPORTER?.trim().toLowerCase();
  if (exporters !== undefined && exporters !== '') return exporters !== 'none';
  return Boolean(e.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim());
}

export function loadConfig(env: Env, argv: readonly string[] = []): Config {
  // An empty variable means "not set", as in most shells' `VAR= cmd`.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = schema.safeParse(present);
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
    env: e.NODE_ENV,
    logLevel: e.LOG_LEVEL,
    tracing: tracingWanted(e),
    roles,
    host: e.HOST,
    port: e.PORT,
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
    requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
    amqp: { heartbeatSeconds: e.AMQP_HEARTBEAT_S, connectTimeoutMs: e.AMQP_CONNECT_TIMEOUT_MS },
    amqpUrl: e.AMQP_URL,
    exchange: e.OUTBOX_EXCHANGE,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    startupTimeoutMs: e.STARTUP_TIMEOUT_MS,
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
    },
    outboxMaxPayloadBytes: e.OUTBOX_MAX_PAYLOAD_BYTES,
    live: {
      pollIntervalMs: e.LIVE_POLL_INTERVAL_MS,
      pageSize: e.LIVE_PAGE_SIZE,
      bufferSize: e.LIVE_BUFFER_SIZE,
      holeTimeoutMs: e.LIVE_HOLE_TIMEOUT_MS,
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
