import type { Pool, PoolConnection } from 'mysql2/promise';
import { namedLock } from '../db/dialect.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/index.js';
import { Loop } from '../support/loop.js';

/** One table's retention: a statement that deletes one batch of what has expired. */
export interface PruneTask {
  readonly table: string;
  /** Deletes at most `limit` expired rows; returns how many it deleted. */
  prune(limit: number): Promise<number>;
}

export interface PrunerOptions {
  readonly pool: Pool;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly tasks: readonly PruneTask[];
  readonly intervalMs: number;
  readonly batchSize: number;
  /** Names the server-wide lock: one per database. */
  readonly lockName: string;
}

/** Pause between two batches, so claims and workers get the table between them. */
const BATCH_PAUSE_MS = 10;

/**
 * Deletes what retention allows (published outbox rows, old inbox rows, old idempotency keys)
 * in small batches, in one process at a time however many run it.
 *
 * One at a time by a MySQL named lock (GET_LOCK with no wait) on a connection held for the
 * run: every process runs the loop, the first to take the lock prunes, the others skip the
 * turn, and if the holder dies its connection closes and the lock is free again. No
 * configuration decides which process prunes, so no deployment can end up with none or two.
 *
 * Small batches (PRUNE_BATCH_SIZE rows, oldest first, each its own statement and commit) keep
 * every lock short: the delete statements read only expired rows by an index on their age, so
 * they never touch a pending or leased outbox row or an inbox row still in use.
 */
export class Pruner {
  private readonly loop: Loop;

  constructor(private readonly options: PrunerOptions) {
    this.loop = new Loop(
      {
        name: 'retention',
        log: options.log,
        idleMs: options.intervalMs,
        backoffBaseMs: 1000,
        backoffMaxMs: options.intervalMs,
      },
      ({ signal }) => this.runOnce(signal),
    );
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** One run: take the lock or skip; then each task until it has nothing left. */
  async runOnce(signal?: AbortSignal): Promise<'idle'> {
    const { pool, log, metrics, tasks, batchSize, lockName } = this.options;
    let connection: PoolConnection | undefined;
    try {
      connection = await pool.getConnection();
      const [rows] = await connection.query(namedLock.take, [lockName, 0]);
      if ((rows as Array<{ got: number | null }>)[0]?.got !== 1) return 'idle';
      try {
        for (const task of tasks) {
          let total = 0;
          for (;;) {
            if (signal?.aborted) return 'idle';
            const deleted = await task.prune(batchSize);
            total += deleted;
            if (deleted > 0) metrics.pruned.inc({ table: task.table }, deleted);
            if (deleted < batchSize) break;
            await new Promise((resolve) => setTimeout(resolve, BATCH_PAUSE_MS));
          }
          if (total > 0) log.info({ table: task.table, deleted: total }, 'retention deleted expired rows');
        }
        metrics.pruneLastRun.set(Date.now() / 1000);
      } finally {
        await connection.query(namedLock.release, [lockName]).catch(() => {});
      }
    } finally {
      connection?.release();
    }
    return 'idle';
  }
}
