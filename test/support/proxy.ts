import { connect, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  /** The proxy's port on 127.0.0.1. */
  readonly port: number;
  /** A database outage: every open connection is reset and new ones are reset on arrival. */
  cut(): void;
  /**
   * A black-holed link: every byte either way is dropped and nothing is closed, so both ends
   * wait, as behind a NAT that forgot the flow. restore() lets bytes pass again.
   */
  silence(): void;
  /** The database is back: new connections pass again. */
  restore(): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy in front of a shared server, so that one test's service can lose its database
 * (connections reset, new ones refused) while the shared server and every other test keep theirs.
 */
export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let down = false;
  let silent = false;
  const server = createServer((client) => {
    if (down) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(targetPort, targetHost);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk: Buffer) => {
      if (!silent) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!silent) client.write(chunk);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no port');
  return {
    port: address.port,
    cut() {
      down = true;
      for (const socket of sockets) socket.resetAndDestroy();
    },
    silence() {
      silent = true;
    },
    restore() {
      down = false;
      silent = false;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
