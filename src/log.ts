import { trace } from '@opentelemetry/api';
import { type DestinationStream, type Logger, pino } from 'pino';
import type { Config } from './config/index.js';
import { attachLimiter, DEFAULT_REPEAT_INTERVAL_MS } from './support/log-limit.js';

export type { Logger } from 'pino';

/**
 * Structured JSON lines on stdout (or `destination`), one per event. Errors under `err` or
 * `error` go through safeError: their codes, stack and cause are kept, personal data is not.
 * A condition that repeats (support/log-limit.ts, Condition) writes one line per
 * `repeatIntervalMs` (LOG_REPEAT_INTERVAL_MS), for this logger and all its children.
 */
export function createLogger(
  level: Config['logLevel'],
  bindings: Record<string, unknown> = {},
  destination?: DestinationStream,
  repeatIntervalMs = DEFAULT_REPEAT_INTERVAL_MS,
): Logger {
  const options = {
    level,
    base: { pid: process.pid, ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    serializers: { err: safeError, error: safeError },
    // A line written inside a span says which, so logs and traces join on trace_id.
    mixin: traceFields,
  };
  const log = destination ? pino(options, destination) : pino(options);
  attachLimiter(log, repeatIntervalMs);
  return log;
}

/** Properties of an error that name a failure, never a customer: kept as they are. */
const SAFE_STRING_PROPERTIES = ['code', 'sqlState', 'syscall', 'address', 'hostname', 'type'] as const;
const MAX_CAUSES = 8;

/**
 * An error as the log may show it. Database errors are the risk: Drizzle's message is
 * "Failed query: <sql>\nparams: <values>", the driver's `sql` has the values inlined, and
 * MySQL's own message quotes them ("Duplicate entry 'ada@example.com' for key …",
 * "Incorrect string value: '\xED\xA0\x80' for column `name`"). So: the statement is kept
 * without its parameters, quoted values are cut out of messages and stacks, and of the other
 * properties only numbers, booleans and a few known codes pass (`sql`, `sqlMessage`,
 * `parameters`, `params`, `query` never do). The cause chain is walked the same way.
 */
export function safeError(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrub(value, false);
  if (value === null || typeof value !== 'object' || depth > MAX_CAUSES) return value;
  const error = value as Record<string, unknown> & { cause?: unknown; errors?: unknown };
  const isError = value instanceof Error;
  // The server's own messages quote values; other errors' quotes (`reading 'x'`) are kept.
  const fromDatabase = typeof error.sqlState === 'string' || typeof error.sqlMessage === 'string';
  const message = typeof error.message === 'string' ? scrub(error.message, fromDatabase) : undefined;
  const out: Record<string, unknown> = {
    type: isError ? value.constructor.name : typeof value,
    message,
  };
  if (isError && typeof value.stack === 'string') {
    // The stack's first line repeats the message; only the frames are taken from it.
    const frames = value.stack.split('\n').filter((line) => /^\s+at /.test(line));
    out.stack = [`${value.name}: ${message ?? ''}`, ...frames].join('\n');
  }
  for (const [key, property] of Object.entries(error)) {
    if (key === 'message' || key === 'stack' || key === 'cause' || key === 'errors') continue;
    if (typeof property === 'number' || typeof property === 'boolean') out[key] = property;
    else if (typeof property === 'string' && (SAFE_STRING_PROPERTIES as readonly string[]).includes(key)) {
      out[key] = property;
    }
  }
  if (error.cause !== undefined) out.cause = safeError(error.cause, depth + 1);
  if (Array.isArray(error.errors)) out.errors = error.errors.slice(0, 10).map((e) => safeError(e, depth + 1));
  return out;
}

/** Drizzle's parameter list, to the end of the message. */
const DRIZZLE_PARAMS = /\nparams: [\s\S]*$/;
/** A single-quoted value in a MySQL message, with '' and \' escapes. */
const QUOTED = /'(?:[^'\\]|\\.|'')*'/g;

function scrub(message: string, fromDatabase: boolean): string {
  const withoutParams = message.replace(DRIZZLE_PARAMS, '\nparams: [withheld]');
  return fromDatabase ? withoutParams.replace(QUOTED, "'…'") : withoutParams;
}

/** trace_id and span_id of the active span, when one is recording. */
function traceFields(): Record<string, string> {
  const span = trace.getActiveSpan();
  if (!span?.isRecording()) return {};
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}
