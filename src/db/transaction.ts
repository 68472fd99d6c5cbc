import type { SQLWrapper } from 'drizzle-orm';
import { drizzle, type MySql2Database } from 'drizzle-orm/mysql2';
import type { PoolConnection, ResultSetHeader } from 'mysql2/promise';
import { type DeferredWrite, deferredOnAwait, drizzleClient } from './deferred-writes.js';
import { constantStatement, renderStatements } from './prepared.js';

/**
 * The Drizzle calls a statement needs (no nested transactions, no relational queries): what the
 * database itself and a Transaction both offer.
 */
export type Executor = Pick<MySql2Database, 'select' | 'insert' | 'update' | 'delete' | 'execute'>;

/** Thrown by a Transaction used after its COMMIT or ROLLBACK. */
export class TransactionEndedError extends Error {
  override readonly name = 'TransactionEndedError';
  constructor() {
    super(
      'this transaction has ended: a statement sent now would run outside it, on a connection ' +
        'another transaction may be using (await everything the transaction runs before it returns)',
    );
  }
}

/** Errors of round trips that carried deferred writes (see failedInDeferredWrite). */
const deferredWriteFailures = new WeakSet<object>();

/**
 * One transaction, and everything that is only true while it runs: its connection, the writes
 * deferred to its COMMIT, whether it has ended. Handlers and stores get this object and use it
 * as a Drizzle database; once the transaction has ended it refuses every call (and a statement
 * built before the end and sent after it), with TransactionEndedError, so a `tx` kept past its
 * transaction can never send a statement into another one on the same pooled connection.
 *
 * The methods below the Drizzle ones are the engine's (db/, outbox/, history/, worker/): a
 * write sent with the COMMIT (writeAtCommit, commitWith), code whose awaited Drizzle writes go
 * with the COMMIT (deferringWrites: a handler's), statements in one round trip (runAll), rows as
 * the driver gives them (readRows). On a transaction of Drizzle's own (a database not made by
 * connectDatabase) nothing is deferred and statements go through Drizzle one by one.
 */
export class Transaction implements Executor {
  private readonly deferred: DeferredWrite[] = [];
  private ended = false;
  /** Inside deferringWrites: insert, update and delete go with the COMMIT when awaited. */
  private deferringDrizzleWrites = false;
  /** Deferred writes failed when sent early: the transaction must not commit without them. */
  private failed: unknown;
  /** Its COMMIT succeeded. */
  private committed = false;
  /** What runs once the COMMIT succeeded (afterCommit), by owner; dropped if it never does. */
  private readonly afterCommitSteps = new Map<object, { items: unknown[]; run: (items: never[]) => void }>();

  /**
   * `connection`: one of the transaction pool's (autocommit off), to which statements go as text
   * and values; `endStatement` goes with the COMMIT or ROLLBACK. Without it, `drizzleTx`.
   */
  constructor(
    private readonly connection: PoolConnection | undefined,
    readonly endStatement?: string,
    private readonly drizzleTx?: Executor,
    setup: readonly string[] = [],
  ) {
    this.setup = setup.length > 0 ? setup.join('; ') : undefined;
    this.setupCount = setup.length;
  }

  /**
   * Session statements the transaction asked for (sessionFor), not sent yet: they go in front of
   * its first round trip rather than in one of their own.
   */
  private setup: string | undefined;
  private readonly setupCount: number;
  private ormOnConnection: Executor | undefined;

  /** Drizzle on the connection, made when the transaction is first used as a Drizzle database. */
  private get orm(): Executor {
    if (this.drizzleTx) return this.drizzleTx;
    this.ormOnConnection ??= drizzle(
      drizzleClient(this.connection as PoolConnection, {
        assertOpen: () => this.assertOpen(),
        takeSetup: () => this.takeSetup(),
        takeBeforeStatement: () => (this.deferred.some((w) => w.readBack) ? this.deferred.splice(0) : []),
        deferredFailed: (error) => this.deferredFailed(error),
      }) as never,
      { mode: 'default' },
    ) as Executor;
    return this.ormOnConnection;
  }

  /** The session setup not sent yet, if any; whoever takes it sends it first. */
  private takeSetup(): string | undefined {
    const setup = this.setup;
    this.setup = undefined;
    return setup;
  }

  get select(): Executor['select'] {
    this.assertOpen();
    return this.orm.select.bind(this.orm) as Executor['select'];
  }
  get insert(): Executor['insert'] {
    this.assertOpen();
    return this.deferrable(this.orm.insert.bind(this.orm));
  }
  get update(): Executor['update'] {
    this.assertOpen();
    return this.deferrable(this.orm.update.bind(this.orm));
  }
  get delete(): Executor['delete'] {
    this.assertOpen();
    return this.deferrable(this.orm.delete.bind(this.orm));
  }
  get execute(): Executor['execute'] {
    this.assertOpen();
    return this.orm.execute.bind(this.orm);
  }

  /** Whether writeAtCommit defers writes here (a transaction of the transaction pool). */
  get defersWrites(): boolean {
    return this.connection !== undefined;
  }

  get hasEnded(): boolean {
    return this.ended;
  }

  /**
   * Runs `body` (a handler, for the worker) so that every insert, update and delete it awaits
   * through Drizzle goes with the COMMIT instead of in a round trip of its own; the engine's
   * choice, so that domain code stays plain Drizzle. Order and visibility hold: a statement
   * `body` sends through Drizzle afterwards (a read, `.execute()`, raw SQL) sends them first. A
   * write's result is known after the COMMIT (DeferredResultError before); if one fails, the
   * COMMIT does not run and the transaction fails with its error (failedInDeferredWrite).
   */
  async deferringWrites<T>(body: () => Promise<T>): Promise<T> {
    if (!this.defersWrites) return body();
    this.deferringDrizzleWrites = true;
    try {
      return await body();
    } finally {
      this.deferringDrizzleWrites = false;
    }
  }

  /** Marks the end (transaction() does, as it sends COMMIT or ROLLBACK): nothing more is sent. */
  end(): void {
    this.ended = true;
  }

  /**
   * Runs `run` once this transaction has committed, with every item `owner` gave here, in order
   * (the outbox writer's appended events: handed to the relay together). Never if it rolls back:
   * a body done again after a deadlock runs in a new Transaction, so only the committed attempt's
   * items move.
   */
  afterCommit<T>(owner: object, item: T, run: (items: T[]) => void): void {
    this.assertOpen();
    const step = this.afterCommitSteps.get(owner);
    if (step) step.items.push(item);
    else this.afterCommitSteps.set(owner, { items: [item], run: run as (items: never[]) => void });
  }

  /**
   * transaction()'s, once the transaction has ended: the after-commit steps run if it committed
   * (Drizzle's own transaction: `committed` says so), and are dropped either way.
   */
  settleAfterCommit(committed = this.committed): void {
    if (this.afterCommitSteps.size === 0) return;
    const steps = [...this.afterCommitSteps.values()];
    this.afterCommitSteps.clear();
    if (!committed) return;
    for (const { items, run } of steps) run(items as never[]);
  }

  /**
   * A write whose result the transaction does not need before it commits (an outbox row, say),
   * sent with the COMMIT in the same round trip instead of on its own. Returns a function that
   * gives the statement's result once the transaction has committed. If the write fails, the
   * COMMIT does not run and the transaction fails with its error. Deferred writes are invisible
   * to the transaction's own reads until they are sent (flushDeferredWrites).
   */
  async writeAtCommit(statement: SQLWrapper): Promise<() => ResultSetHeader> {
    this.assertOpen();
    let result: ResultSetHeader | undefined;
    const settle = (r: ResultSetHeader) => {
      result = r;
    };
    if (this.defersWrites) this.deferred.push({ statement, settle, readBack: false });
    else settle(await this.run(statement));
    return () => {
      if (!result) throw new Error('the result of a write deferred to the commit, read before the commit');
      return result;
    };
  }

  /** Sends the writes deferred so far (one round trip), so the transaction's next reads see them. */
  async flushDeferredWrites(): Promise<void> {
    const writes = this.deferred.splice(0);
    if (writes.length === 0) return;
    const results = (await this.sendDeferred(
      writes.map((w) => w.statement),
      writes.length,
    )) as ResultSetHeader[];
    for (const [i, w] of writes.entries()) w.settle(results[i] as ResultSetHeader);
  }

  /** Runs one write and returns its result (not for reads: see readRows). */
  async run(statement: SQLWrapper): Promise<ResultSetHeader> {
    if (this.connection) return (await this.send([statement]))[0] as ResultSetHeader;
    return (await this.execute(statement))[0] as unknown as ResultSetHeader;
  }

  /**
   * Runs statements in one round trip (a multi-statement query) and returns each one's result.
   * If one fails, the ones after it do not run, and the error does not say which failed.
   */
  async runAll(statements: readonly SQLWrapper[]): Promise<ResultSetHeader[]> {
    if (this.connection) return (await this.send(statements)) as ResultSetHeader[];
    const results: ResultSetHeader[] = [];
    for (const statement of statements) results.push(await this.run(statement));
    return results;
  }

  /** One read's rows as the driver gives them (see readRows in client.ts). */
  async readRows<Row>(statement: SQLWrapper): Promise<Row[]> {
    if (this.connection) return (await this.send([statement]))[0] as Row[];
    return (await this.execute(statement))[0] as unknown as Row[];
  }

  /** Several reads in one round trip: each one's rows as the driver gives them, in order. */
  async readAll(statements: readonly SQLWrapper[]): Promise<unknown[][]> {
    if (this.connection) return (await this.send(statements)) as unknown[][];
    const results: unknown[][] = [];
    for (const statement of statements)
      results.push((await this.execute(statement))[0] as unknown as unknown[]);
    return results;
  }

  /**
   * Runs the transaction's last statements and its COMMIT in one round trip, with the deferred
   * writes before them, and returns each statement's result; the transaction has ended then. If
   * a statement fails, the ones after it and the COMMIT do not run, and transaction() rolls back.
   * On Drizzle's own transaction, runs them one by one and leaves the COMMIT to it.
   */
  async commitWith(
    statements: readonly SQLWrapper[],
    options?: { readonly isolationLevel: 'read committed' },
  ): Promise<ResultSetHeader[]> {
    if (!this.connection) return this.runAll(statements);
    if (this.failed !== undefined) throw this.failed;
    const head = options ? [READ_COMMITTED] : [];
    const writes = this.deferred.splice(0);
    const tail = this.endStatement ? [constantStatement(this.endStatement), COMMIT] : [COMMIT];
    const all = [...head, ...writes.map((w) => w.statement), ...statements, ...tail];
    const results = ((await this.sendDeferred(all, writes.length)) as ResultSetHeader[]).slice(head.length);
    this.end();
    this.committed = true;
    for (const [i, w] of writes.entries()) w.settle(results[i] as ResultSetHeader);
    return results.slice(writes.length, writes.length + statements.length);
  }

  private assertOpen(): void {
    if (this.ended) throw new TransactionEndedError();
  }

  /** Drizzle's builder `start`, its awaited statement deferred while deferringWrites runs. */
  private deferrable<F extends (...args: never[]) => object>(start: F): F {
    if (!this.deferringDrizzleWrites) return start;
    return ((...args: Parameters<F>) =>
      deferredOnAwait(start(...args), (statement) => {
        this.assertOpen();
        let result: ResultSetHeader | undefined;
        this.deferred.push({
          statement,
          settle: (r) => {
            result = r;
          },
          readBack: true,
        });
        return () => result;
      })) as F;
  }

  /** send(), remembering a failure of a round trip that carried `deferredCount` deferred writes. */
  private async sendDeferred(statements: readonly SQLWrapper[], deferredCount: number): Promise<unknown[]> {
    try {
      return await this.send(statements);
    } catch (error) {
      if (deferredCount > 0) this.deferredFailed(error);
      throw error;
    }
  }

  /** Deferred writes failed: the transaction must not commit, and the error says so. */
  private deferredFailed(error: unknown): void {
    this.failed ??= error;
    if (error !== null && typeof error === 'object') deferredWriteFailures.add(error);
  }

  /**
   * Sends statements as one query (a multi-statement one if more than one) on the connection,
   * and returns each one's result: Drizzle's execute without a query object per call.
   */
  private async send(statements: readonly SQLWrapper[]): Promise<unknown[]> {
    this.assertOpen();
    const { text, values } = renderStatements(statements);
    const setup = this.takeSetup();
    const [results] = await (this.connection as PoolConnection).query(
      setup ? `${setup}; ${text}` : text,
      values,
    );
    // One statement answers with its result, several with a list of them.
    if (setup) return (results as unknown[]).slice(this.setupCount);
    return statements.length === 1 ? [results] : (results as unknown[]);
  }
}

const COMMIT = constantStatement('COMMIT');
const READ_COMMITTED = constantStatement('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');

/**
 * Whether `error` (or one of its causes) failed a round trip that carried writes deferred with
 * writeAtCommit: whoever deferred them may then do the transaction again without deferring, to
 * learn which write failed and why.
 */
export function failedInDeferredWrite(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e !== null && typeof e === 'object' && depth < 8; depth++) {
    if (deferredWriteFailures.has(e)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
