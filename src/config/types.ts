import type { Role } from './roles.js';

/** The GraphQL API's limits and its HTTP server's bounds (the app role's). */
export interface HttpConfig {
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
}

/** The app instance's live feed of the history (history/feed.ts). */
export interface LiveConfig {
  readonly pollIntervalMs: number;
  readonly pageSize: number;
  readonly bufferSize: number;
  /** How long the history reader waits at a hole before it calls the hole permanent and skips it. */
  readonly holeTimeoutMs: number;
}

/** What the app role (app/role.ts) is given. */
export interface AppConfig {
  readonly env: 'development' | 'production' | 'test';
  /** Where every listener of the process binds (the app's port, or the standalone /metrics). */
  readonly host: string;
  readonly port: number;
  /** A GraphQL request still waiting then is answered 503 SERVICE_UNAVAILABLE, its work abandoned. */
  readonly requestTimeoutMs: number;
  readonly http: HttpConfig;
  readonly live: LiveConfig;
  /** Requeueing worker dead letters waits this long for the broker's confirm (RELAY_CONFIRM_TIMEOUT_MS). */
  readonly confirmTimeoutMs: number;
}

/** What the relay role (relay/role.ts) is given. */
export interface RelayConfig {
  readonly batchSize: number;
  readonly lanes: number;
  readonly pollIntervalMs: number;
  readonly leaseMs: number;
  readonly maxAttempts: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly confirmTimeoutMs: number;
}

/** What the worker role (worker/role.ts) is given. */
export interface WorkerConfig {
  readonly queue: string;
  readonly prefetch: number;
  /** Deliveries of one message (first try included) before it is parked. */
  readonly maxAttempts: number;
  readonly retryDelayMs: number;
  /** How long a message whose predecessor is not handled yet waits before it comes back. */
  readonly orderWaitMs: number;
  /** Largest message body accepted; larger ones are parked. */
  readonly maxMessageBytes: number;
  /** Its retry, wait and park copies wait this long for the broker's confirm (RELAY_CONFIRM_TIMEOUT_MS). */
  readonly confirmTimeoutMs: number;
}

/** What the pruner (retention/pruner.ts, started in service.ts) is given. */
export interface RetentionConfig {
  readonly outboxMs: number;
  readonly inboxMs: number;
  readonly idempotencyKeysMs: number;
  readonly intervalMs: number;
  readonly batchSize: number;
}

/** Bounds on every wait for the database (src/db/bounds.ts). */
export interface DbConfig {
  readonly queryTimeoutMs: number;
  readonly acquireTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly idleTransactionTimeoutMs: number;
  /**
   * What a start does when the server's settings let it lose commits it acknowledged
   * (outbox/durability.ts): refuse to start, or warn and run (DB_DURABILITY).
   */
  readonly durability: 'refuse' | 'warn';
}

/**
 * The whole configuration of a process, read once from the environment at start.
 * Nothing else in the code base reads `process.env`: a module that needs a setting takes it
 * from this object, which keeps tests free to run several differently configured services
 * in one process. What the process shares (the database, the broker, its lifecycle) sits at
 * the top; each role gets only its own slice (`app`, `relay`, `worker`, `retention`).
 */
export interface Config {
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** How often a condition that keeps happening (an outage's failures) is logged again. */
  readonly logRepeatIntervalMs: number;
  /**
   * Traces over OTLP: on when the standard variables ask for them (OTEL_TRACES_EXPORTER other
   * than none, or an OTLP endpoint), off when OTEL_SDK_DISABLED=true. The SDK reads the rest of
   * the OTEL_* variables itself.
   */
  readonly tracing: boolean;
  readonly roles: readonly Role[];
  /** /metrics and /healthz of a process without the app role (a standalone relay or worker). */
  readonly metricsPort: number;
  readonly databaseUrl: string;
  readonly dbPoolSize: number;
  /** Connections of the relay (plus its lanes), the worker and the live feed, each (db/client.ts). */
  readonly dbComponentPoolSize: number;
  readonly db: DbConfig;
  /** Idle time before the first TCP keep-alive probe on database and broker sockets. */
  readonly tcpKeepAliveMs: number;
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
  /** Largest event payload, as JSON, a writer (the app's or the worker's) may append. */
  readonly outboxMaxPayloadBytes: number;
  readonly app: AppConfig;
  readonly relay: RelayConfig;
  readonly worker: WorkerConfig;
  readonly retention: RetentionConfig;
}
