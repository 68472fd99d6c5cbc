import type { SQLWrapper } from 'drizzle-orm';
import type { PoolConnection, QueryOptions, ResultSetHeader } from 'mysql2/promise';
import { renderStatements } from './prepared.js';

/**
 * A write queued to go with its transaction's COMMIT; `readBack` when the code that wrote it may
 * read it back through Drizzle (a handler's own write), so such a read sends it first.
 */
export interface DeferredWrite {
  readonly statement: SQLWrapper;
  readonly settle: (result: ResultSetHeader) => void;
  readonly readBack: boolean;
}

/** Thrown when the result of a write sent with the COMMIT is read before the COMMIT. */
export class DeferredResultError extends Error {
  override readonly name = 'DeferredResultError';
  constructor() {
    super(
      "a write's result (affectedRows, insertId) read before its transaction committed: the write " +
        'goes with the COMMIT; call .execute() on the statement to send it at once',
    );
  }
}

/**
 * What `await` on a deferred Drizzle write gives: Drizzle's own shape, `[header, fields]`, with a
 * header that answers once the COMMIT has sent the write and throws DeferredResultError before.
 */
function deferredResult(result: () => ResultSetHeader | undefined): [ResultSetHeader, []] {
  const header = new Proxy({} as ResultSetHeader, {
    get(_, prop) {
      const known = result();
      // Not a thenable, and not readable before the COMMIT.
      if (prop === 'then') return undefined;
      if (known === undefined) throw new DeferredResultError();
      return Reflect.get(known, prop);
    },
  });
  return [header, []];
}

/** A Drizzle query builder that renders a statement and runs when awaited (QueryPromise). */
function isAwaitedStatement(value: object): value is SQLWrapper & PromiseLike<unknown> {
  const v = value as { getSQL?: unknown; then?: unknown; config?: { returning?: unknown } };
  // `$returningId()` needs the id at once to map it; such an insert is sent when awaited.
  return typeof v.getSQL === 'function' && typeof v.then === 'function' && v.config?.returning === undefined;
}

/**
 * `builder` (what Transaction.insert/update/delete return) as it is, except that awaiting the
 * statement its chain ends in queues it with `defer` instead of sending it. Every method of the
 * chain works as Drizzle's; `.execute()` still sends at once and gives the real result.
 */
export function deferredOnAwait<T extends object>(
  builder: T,
  defer: (statement: SQLWrapper) => () => ResultSetHeader | undefined,
): T {
  const proxy: T = new Proxy(builder, {
    get(target, prop) {
      if (prop === 'then' && isAwaitedStatement(target)) {
        return (onFulfilled?: (value: unknown) => unknown, onRejected?: (reason: unknown) => unknown) => {
          let queued: Promise<[ResultSetHeader, []]>;
          try {
            queued = Promise.resolve(deferredResult(defer(target)));
          } catch (error) {
            queued = Promise.reject(error);
          }
          return queued.then(onFulfilled, onRejected);
        };
      }
      const value = Reflect.get(target, prop, proxy);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const result = value.apply(proxy, args);
        if (result === target) return proxy;
        // The next builder of the chain (values() after insert(), set() after update()).
        return result !== null && typeof result === 'object' && !(result instanceof Promise)
          ? deferredOnAwait(result, defer)
          : result;
      };
    },
  });
  return proxy;
}

/** What Drizzle's client asks of the transaction it runs in. */
export interface ClientGuard {
  /** Throws once the transaction has ended. */
  assertOpen(): void;
  /**
   * The deferred writes to send ahead of a Drizzle statement, taken off the queue: all of them,
   * in order, when one may be read back; none otherwise.
   */
  takeBeforeStatement(): DeferredWrite[];
  /** The transaction's session setup not sent yet (sessionFor), sent before the statement. */
  takeSetup(): string | undefined;
  /** A round trip that carried deferred writes failed with `error`. */
  deferredFailed(error: unknown): void;
}

/**
 * `connection` as Drizzle's client: it refuses a statement once the transaction has ended, and
 * sends the deferred writes a statement may read in the same round trip, ahead of it (a
 * multi-statement query, whose last result is the statement's).
 */
export function drizzleClient(
  connection: PoolConnection,
  guard: ClientGuard,
): Pick<PoolConnection, 'query' | 'execute'> {
  const sendWrites = async <R>(
    writes: DeferredWrite[],
    send: (text: string, values: unknown[]) => Promise<R>,
  ) => {
    const { text, values } = renderStatements(writes.map((w) => w.statement));
    try {
      return await send(text, values);
    } catch (error) {
      guard.deferredFailed(error);
      throw error;
    }
  };
  const sendSetup = async () => {
    const setup = guard.takeSetup();
    if (setup) await connection.query(setup);
    guard.assertOpen();
  };
  const query = async (options: string | QueryOptions, values?: unknown) => {
    guard.assertOpen();
    await sendSetup();
    const writes = guard.takeBeforeStatement();
    if (writes.length === 0) return connection.query(options as never, values as never);
    const own = typeof options === 'string' ? { sql: options } : options;
    const [results, fields] = (await sendWrites(writes, (text, writeValues) =>
      connection.query({ ...own, sql: `${text}; ${own.sql}` }, [
        ...writeValues,
        ...((values as unknown[] | undefined) ?? []),
      ]),
    )) as unknown as [unknown[], unknown[] | undefined];
    for (const [i, w] of writes.entries()) w.settle(results[i] as ResultSetHeader);
    return [results.at(-1), fields?.at(-1)];
  };
  const execute = async (...args: Parameters<PoolConnection['execute']>) => {
    guard.assertOpen();
    await sendSetup();
    // A prepared statement cannot share its round trip: the writes go just before it.
    const writes = guard.takeBeforeStatement();
    if (writes.length > 0) {
      const [results] = (await sendWrites(writes, (text, values) =>
        connection.query(text, values),
      )) as unknown as [unknown];
      const list = writes.length === 1 ? [results] : (results as unknown[]);
      for (const [i, w] of writes.entries()) w.settle(list[i] as ResultSetHeader);
    }
    return connection.execute(...args);
  };
  return { query: query as PoolConnection['query'], execute: execute as PoolConnection['execute'] };
}
