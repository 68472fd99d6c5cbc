/**
 * Nothing reaches the exchange that the database can still lose.
 *
 * InnoDB makes a commit visible, and frees its locks, before its redo log is written; without a
 * binary log (MariaDB's default) nothing orders the two. A relay's claim can therefore read, and
 * publish, a row whose transaction a crash of the database then rolls back: consumers hear of a
 * customer that never existed. The barrier closes that window once per claimed batch: after the
 * claim has read its rows and before it publishes them, the relay commits one small write of its
 * own. With innodb_flush_log_at_trx_commit=1 that COMMIT returns only once the redo log is on
 * disk up to its own commit record, which lies after the commit record of every transaction the
 * claim saw (InnoDB writes a commit record before it makes the commit visible).
 *
 * Rows handed over in-process need no barrier: the writer's own COMMIT returned, which under the
 * same setting means its redo log was flushed. With a binary log and sync_binlog=1, a commit is
 * visible only after the binary log holds it durably, so the barrier is skipped.
 */
import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { outboxFlushes } from '../db/schema.js';
import type { Logger } from '../log.js';
import { StartupError } from '../support/startup-error.js';

/** The server settings the guarantee rests on. */
export interface DurabilitySettings {
  readonly flushLogAtTrxCommit: number;
  readonly logBin: boolean;
  readonly syncBinlog: number;
  readonly version: string;
}

export interface DurabilityVerdict {
  /** Whether a claimed batch needs the barrier before it is published. */
  readonly barrier: boolean;
  /** Settings under which an acknowledged commit, or a published event, can be lost. */
  readonly problems: readonly string[];
}

export async function readDurabilitySettings(db: Database): Promise<DurabilitySettings> {
  const [rows] = (await db.execute(
    sql`SELECT @@innodb_flush_log_at_trx_commit AS flush, @@log_bin AS log_bin, @@sync_binlog AS sync_binlog, @@version AS version`,
  )) as unknown as [Array<{ flush: unknown; log_bin: unknown; sync_binlog: unknown; version: unknown }>];
  const row = rows[0];
  return {
    flushLogAtTrxCommit: Number(row?.flush),
    logBin: Number(row?.log_bin) === 1,
    syncBinlog: Number(row?.sync_binlog),
    version: String(row?.version),
  };
}

/** What the settings allow: pure, so every combination is tested without a server. */
export function judgeDurability(s: DurabilitySettings): DurabilityVerdict {
  const problems: string[] = [];
  if (s.flushLogAtTrxCommit !== 1) {
    problems.push(
      `innodb_flush_log_at_trx_commit=${s.flushLogAtTrxCommit}: a commit is acknowledged before its redo log is on disk, so a crash of the database can undo a create the client was told of and an event already published; set it to 1`,
    );
  }
  if (s.logBin && s.syncBinlog !== 1) {
    problems.push(
      `log_bin is on with sync_binlog=${s.syncBinlog}: crash recovery keeps only the transactions the binary log holds, and it is not flushed at each commit; set sync_binlog=1`,
    );
  }
  return { barrier: !(s.logBin && s.syncBinlog === 1), problems };
}

/** Slots of outbox_flushes: enough that relays' barriers rarely meet on one row. */
const SLOTS = 64;

/**
 * The barrier itself: one autocommitted write, durable when it returns. `slot` spreads relays
 * and lanes over rows; the counter always changes, so InnoDB always logs and flushes it.
 */
export async function durabilityBarrier(db: Database, slot: number): Promise<void> {
  const s = Math.abs(Math.trunc(slot)) % SLOTS;
  await db
    .insert(outboxFlushes)
    .values({ slot: s, flushes: 1 })
    .onDuplicateKeyUpdate({ set: { flushes: sql`${outboxFlushes.flushes} + 1` } });
}

/**
 * At start: reads the server's settings, and refuses to start (`refuse`, DB_DURABILITY's
 * default) or warns (`warn`) when they let the database lose what it acknowledged.
 */
export async function checkDurability(
  db: Database,
  mode: 'refuse' | 'warn',
  log: Logger,
): Promise<DurabilityVerdict> {
  const settings = await readDurabilitySettings(db);
  const verdict = judgeDurability(settings);
  if (verdict.problems.length > 0) {
    const message = `The database (${settings.version}) can lose commits it acknowledged, and the relay publish events of transactions a crash undoes: ${verdict.problems.join('; ')} (docs/durability.md; DB_DURABILITY=warn starts anyway)`;
    if (mode === 'refuse') throw new StartupError(message);
    log.warn({ settings }, message);
  }
  log.info({ settings, barrier: verdict.barrier }, 'database durability settings checked');
  return verdict;
}
