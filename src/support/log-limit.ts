import type { Logger } from '../log.js';

/** LOG_REPEAT_INTERVAL_MS's default, for a logger made without one. */
export const DEFAULT_REPEAT_INTERVAL_MS = 30_000;

interface Seen {
  /** When its last "it happens" line was written. */
  at: number;
  /** Occurrences held back since the last line of either kind. */
  held: number;
  /** It happened and has not cleared since. */
  present: boolean;
  /** The last line about it said "it happens" (so a "cleared" line is owed). */
  reported: boolean;
}

const NOT_NOW = Object.freeze({ log: false, suppressed: 0 });

/**
 * One log line per condition per interval: during a long outage every request, message and
 * retry fails the same way, and a line each would bury everything else. `allow(key)` says
 * whether to log an occurrence now, and how many it held back since the last line (to put in
 * the line); `clear(key)` whether to say once that the condition is gone. A condition that
 * flaps still writes at most one line per interval that it happens, and one that it cleared
 * after each (a clearing of occurrences that were only counted is not said again).
 */
export class LogLimiter {
  private readonly seen = new Map<string, Seen>();

  constructor(readonly intervalMs: number) {}

  allow(key: string): { readonly log: boolean; readonly suppressed: number } {
    const now = Date.now();
    const seen = this.seen.get(key);
    if (seen && now - seen.at < this.intervalMs) {
      seen.held += 1;
      seen.present = true;
      return NOT_NOW;
    }
    this.seen.set(key, { at: now, held: 0, present: true, reported: true });
    return { log: true, suppressed: seen?.held ?? 0 };
  }

  /** Cheap when the condition is not present: callers clear on every success. */
  clear(key: string): { readonly log: boolean; readonly suppressed: number } {
    const seen = this.seen.get(key);
    if (!seen?.present) return NOT_NOW;
    seen.present = false;
    if (!seen.reported) return NOT_NOW;
    seen.reported = false;
    const suppressed = seen.held;
    seen.held = 0;
    return { log: true, suppressed };
  }
}

const LIMITER = Symbol('graphql-outbox log limiter');
type WithLimiter = { [LIMITER]?: LogLimiter };

/**
 * Gives a logger the process's one limiter (createLogger does, with LOG_REPEAT_INTERVAL_MS).
 * pino's child loggers are made with Object.create, so every child shares its root's.
 */
export function attachLimiter(log: Logger, intervalMs: number): void {
  Object.defineProperty(log, LIMITER, { value: new LogLimiter(intervalMs) });
}

function limiterOf(log: Logger): LogLimiter {
  const holder = log as unknown as WithLimiter;
  if (!holder[LIMITER]) attachLimiter(log, DEFAULT_REPEAT_INTERVAL_MS);
  return holder[LIMITER] as LogLimiter;
}

/**
 * A repeated condition of one component ("relay lanes failing", "database unavailable for a
 * request"), logged through the process's limiter: `occurred` writes at most one line per
 * interval with `condition` and `suppressed` (the occurrences held back), `cleared` one line
 * with `cleared: true` once it is over. Conditions of the same key and logger bindings (a
 * relay's lanes, say) are one condition.
 */
export class Condition {
  private readonly limiter: LogLimiter;
  private readonly scoped: string;

  constructor(
    private readonly log: Logger,
    readonly key: string,
  ) {
    this.limiter = limiterOf(log);
    this.scoped = `${JSON.stringify(log.bindings())} ${key}`;
  }

  occurred(level: 'warn' | 'error' | 'info', fields: Record<string, unknown>, message: string): void {
    const { log, suppressed } = this.limiter.allow(this.scoped);
    if (log) this.log[level]({ ...fields, condition: this.key, suppressed }, message);
  }

  /** Cheap unless the condition is present: call it on every success. */
  cleared(fields: Record<string, unknown> = {}, message = `${this.key}: cleared`): void {
    const { log, suppressed } = this.limiter.clear(this.scoped);
    if (log) this.log.info({ ...fields, condition: this.key, cleared: true, suppressed }, message);
  }
}
