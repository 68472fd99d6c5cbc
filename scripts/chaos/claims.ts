import type { RowDataPacket } from 'mysql2/promise';
import { socketInodesOf, tcpSockets } from '../proc-sockets.js';
import type { HarnessDb } from './harness-db.js';

/**
 * What a frozen relay held. A relay lane's claim is an open transaction holding row locks
 * (claimAndSettle in src/outbox/claim.ts), so it is read from the server: the transactions of
 * the relay's own connections, found by their client ports, which /proc tells for a pid.
 */
export interface Claim {
  /** Rows its open transactions hold locks on. */
  readonly rows: number;
  /** Its connections holding them (server thread ids). */
  readonly threads: readonly number[];
}

/** Local TCP ports of a process's sockets (Linux /proc); empty when it cannot be read. */
function localPortsOf(pid: number): Set<number> {
  const inodes = socketInodesOf(pid);
  return new Set(tcpSockets().flatMap((socket) => (inodes.has(socket.inode) ? [socket.localPort] : [])));
}

export async function claimOf(db: HarnessDb, pid: number): Promise<Claim> {
  const ports = [...localPortsOf(pid)];
  if (ports.length === 0) return { rows: 0, threads: [] };
  return db.with(async (c) => {
    const [rows] = await c.query<RowDataPacket[]>(
      `SELECT t.trx_mysql_thread_id AS thread, t.trx_rows_locked AS locked
         FROM information_schema.INNODB_TRX t
         JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
        WHERE CAST(SUBSTRING_INDEX(p.HOST, ':', -1) AS UNSIGNED) IN (?) AND t.trx_rows_locked > 0
          -- Idle: a settlement and COMMIT sent just before the freeze may still be running.
          AND p.COMMAND = 'Sleep'`,
      [ports],
    );
    return {
      rows: rows.reduce((sum, r) => sum + Number(r.locked), 0),
      threads: rows.map((r) => Number(r.thread)),
    };
  });
}

/** Of these server threads, how many are still connected. */
export async function stillConnected(db: HarnessDb, threads: readonly number[]): Promise<number> {
  if (threads.length === 0) return 0;
  return db.with(async (c) => {
    const [rows] = await c.query<RowDataPacket[]>(
      'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID IN (?)',
      [threads],
    );
    return Number(rows[0]?.n ?? 0);
  });
}
