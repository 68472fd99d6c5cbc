import { z } from 'zod';

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

/** The longest RELAY_LEASE_MS: below InnoDB's default lock wait timeout (see loadConfig). */
export const MAX_CLAIM_HOLD_MS = 45_000;

/** Environment variable → parser. The keys are the documented variable names. */
export const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('production'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_REPEAT_INTERVAL_MS: int(100, 3_600_000).default(30_000),
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
  RELAY_BATCH_SIZE: int(1, 10_000).default(1000),
  RELAY_LANES: int(1, 64).default(2),
  RELAY_POLL_INTERVAL_MS: int(10, 3_600_000).default(1_000),
  RELAY_LEASE_MS: int(1000, 3_600_000).default(30_000),
  RELAY_MAX_ATTEMPTS: int(1, 1000).default(10),
  RELAY_BACKOFF_BASE_MS: int(1, 3_600_000).default(1_000),
  RELAY_BACKOFF_MAX_MS: int(1, 86_400_000).default(300_000),
  RELAY_CONFIRM_TIMEOUT_MS: int(100, 600_000).default(10_000),
  METRICS_PORT: int(0, 65535).default(9464),
  WORKER_QUEUE: name.default('outbox.worker'),
  WORKER_PREFETCH: int(1, 65535).default(128),
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

/** Whether the standard OTEL_* variables ask for traces. */
export function tracingWanted(e: {
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
