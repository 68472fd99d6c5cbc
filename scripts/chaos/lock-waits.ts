import type { RowDataPacket } from 'mysql2/promise';
import type { HarnessDb } from './harness-db.js';
import type { Row } from './report.js';

/** How often InnoDB's lock waits are sampled: a wait shorter than this may go unseen. */
const SAMPLE_EVERY_MS = 200;
/** The longest a writer may wait for a lock, whatever a relay or retention does. */
const WRITER_LIMIT_MS = 1_000;

/**
 * A writer's statement: the service's creates and updates (customers, their outbox rows, the
 * predecessor read, idempotency keys). The relay's, the worker's and retention's are not.
 */
function isWriter(query: string): boolean {
  const q = query.toLowerCase();
  if (q.includes('skip locked')) return false;
  return (
    q.includes('`customers`') ||
    q.includes('`idempotency_keys`') ||
    q.startsWith('insert into `outbox`') ||
    (q.includes('from `outbox`') && q.includes('for update') && q.includes('`sequence`'))
  );
}

interface Wait {
  readonly ms: number;
  readonly query: string;
  readonly blocker: string;
}

/**
 * Samples information_schema.INNODB_TRX (and INNODB_LOCK_WAITS for the blocker) through the
 * whole run, on a connection of its own, and keeps the longest wait of a writer. Database kills
 * only pause it.
 */
export class LockWaitSampler {
  private timer: NodeJS.Timeout | undefined;
  private sampling: Promise<void> | undefined;
  private longest: Wait | undefined;
  private longestAny: Wait | undefined;
  samples = 0;
  waits = 0;

  constructor(private readonly db: HarnessDb) {}

  start(): void {
    this.timer = setInterval(() => {
      this.sampling ??= this.sample().finally(() => {
        this.sampling = undefined;
      });
    }, SAMPLE_EVERY_MS);
  }

  private async sample(): Promise<void> {
    try {
      const rows = await this.db.with(async (c) => {
        const [r] = await c.query<RowDataPacket[]>(
          `SELECT r.trx_id, r.trx_query AS query,
                  TIMESTAMPDIFF(MICROSECOND, r.trx_wait_started, NOW(6)) / 1000 AS ms,
                  (SELECT GROUP_CONCAT(LEFT(COALESCE(b.trx_query, CONCAT('idle: ', b.trx_operation_state, '')), 120) SEPARATOR ' | ')
                     FROM information_schema.INNODB_LOCK_WAITS w
                     JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id
                    WHERE w.requesting_trx_id = r.trx_id) AS blocker
             FROM information_schema.INNODB_TRX r
            WHERE r.trx_state = 'LOCK WAIT'`,
        );
        return r;
      });
      this.samples++;
      for (const r of rows) {
        this.waits++;
        const wait = {
          ms: Number(r.ms),
          query: String(r.query ?? ''),
          blocker: String(r.blocker ?? 'idle transaction'),
        };
        if (!this.longestAny || wait.ms > this.longestAny.ms) this.longestAny = wait;
        if (isWriter(wait.query) && (!this.longest || wait.ms > this.longest.ms)) this.longest = wait;
      }
    } catch {
      // The database is down (a fault of the run): the next sample tries again.
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.sampling;
  }

  check(): Row {
    const w = this.longest;
    const any = this.longestAny;
    return {
      name: "a writer's longest lock wait",
      expected: `≤ ${WRITER_LIMIT_MS / 1000} s (InnoDB's lock waits sampled every ${SAMPLE_EVERY_MS} ms)`,
      observed: `${w ? `${(w.ms / 1000).toFixed(2)} s: ${w.query.slice(0, 80)} behind ${w.blocker.slice(0, 120)}` : 'no writer waited'}; ${this.samples} samples, ${this.waits} waits seen; longest of any: ${any ? `${(any.ms / 1000).toFixed(2)} s` : '-'}`,
      ok: this.samples > 0 && (w === undefined || w.ms <= WRITER_LIMIT_MS),
    };
  }
}
