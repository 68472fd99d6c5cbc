import { type Logger, pino } from 'pino';
import type { Config } from './config/index.js';

export type { Logger } from 'pino';

/** Structured JSON lines on stdout, one per event; `err` fields carry the full error and cause. */
export function createLogger(level: Config['logLevel'], bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings }, timestamp: pino.stdTimeFunctions.isoTime });
}
