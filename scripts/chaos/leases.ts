import type { RowDataPacket } from 'mysql2/promise';
import type { HarnessDb } from './harness-db.js';

/**
 * What a frozen relay held, read from the outbox. A relay's lease owner is
 * `host:pid:random` (src/service.ts), so the pid the supervisor knows finds its rows. Published
 * rows keep their lease columns as a record of who published them, which is what tells a
 * takeover afterwards.
 */
export async function liveLeasesOf(db: HarnessDb, pid: number): Promise<string[]> {
  return db.with(async (c) => {
    const [rows] = await c.query<RowDataPacket[]>(
      `SELECT event_id FROM outbox
        WHERE published_at IS NULL AND lease_expires_at > NOW(3) AND lease_owner LIKE ?`,
      [`%:${pid}:%`],
    );
    return rows.map((r) => String(r.event_id));
  });
}

/** Of these events, how many were since leased (and published) by another owner. */
export async function takenOver(db: HarnessDb, pid: number, eventIds: readonly string[]): Promise<number> {
  if (eventIds.length === 0) return 0;
  return db.with(async (c) => {
    const [rows] = await c.query<RowDataPacket[]>(
      'SELECT COUNT(*) AS n FROM outbox WHERE event_id IN (?) AND lease_owner NOT LIKE ?',
      [eventIds, `%:${pid}:%`],
    );
    return Number(rows[0]?.n ?? 0);
  });
}
