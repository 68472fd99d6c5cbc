import { failSpan, SpanKind, tracer, within } from './tracer.js';

const DB = { 'db.system.name': 'mysql' } as const;

const TRANSACTION = { ...DB, 'db.operation.name': 'transaction' } as const;
const transactionAttributes = () => TRANSACTION;

/** A database transaction as a CLIENT span (semantic conventions for databases). */
export function traceTransaction<T>(run: () => Promise<T>): Promise<T> {
  return traced('transaction', transactionAttributes, run);
}

/** The history write (the handled events' rows, then the COMMIT) inside the worker's transaction. */
export function traceHistoryWrite<T>(rows: number, run: () => Promise<T>): Promise<T> {
  return traced(
    'INSERT handled_events',
    () => ({
      ...DB,
      'db.operation.name': 'INSERT',
      'db.collection.name': 'handled_events',
      'db.operation.batch.size': rows,
    }),
    run,
  );
}

const CLIENT = { kind: SpanKind.CLIENT } as const;

/** `run` in a CLIENT span; its attributes are worked out only when it records. */
async function traced<T>(
  name: string,
  attributes: () => Record<string, string | number>,
  run: () => Promise<T>,
): Promise<T> {
  const span = tracer.startSpan(name, CLIENT);
  if (span.isRecording()) span.setAttributes(attributes());
  try {
    return await within(span, run);
  } catch (error) {
    // The error's name and code only: a database message quotes the values (src/log.ts says more).
    if (span.isRecording()) failSpan(span, errorName(error), errorName(error));
    throw error;
  } finally {
    span.end();
  }
}

function errorName(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  const name = error instanceof Error ? error.name : typeof error;
  return typeof code === 'string' ? `${name} ${code}` : name;
}
