import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/**
 * A process's TCP sockets as Linux's /proc tells them, for the benchmark (which server process
 * listens on a port) and the fault-injection run (which server connections are a relay's).
 * Empty wherever /proc cannot be read: another OS, or a process gone or not ours.
 */

/** Inodes of the sockets a process has open. */
export function socketInodesOf(pid: number): Set<string> {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return inodes;
  }
  for (const fd of fds) {
    try {
      const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (link.startsWith('socket:[')) inodes.add(link.slice('socket:['.length, -1));
    } catch {
      // Closed meanwhile.
    }
  }
  return inodes;
}

export interface TcpSocket {
  readonly localPort: number;
  /** In LISTEN state. */
  readonly listening: boolean;
  readonly inode: string;
}

/** Every IPv4 and IPv6 TCP socket of this network namespace (/proc/net/tcp and tcp6). */
export function tcpSockets(): TcpSocket[] {
  const sockets: TcpSocket[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      const inode = fields[9];
      if (!local || !inode) continue;
      sockets.push({
        localPort: Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16),
        listening: fields[3] === '0A',
        inode,
      });
    }
  }
  return sockets;
}
