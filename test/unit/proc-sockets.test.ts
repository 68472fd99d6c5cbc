import { once } from 'node:events';
import { type AddressInfo, connect, createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { socketInodesOf, tcpSockets } from '../../scripts/proc-sockets.js';

describe.runIf(process.platform === 'linux')('proc-sockets', () => {
  it("finds this process's listening socket and a connection's local port by inode", async () => {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await once(client, 'connect');
    try {
      const port = (server.address() as AddressInfo).port;
      const ours = socketInodesOf(process.pid);
      const sockets = tcpSockets().filter((socket) => ours.has(socket.inode));
      expect(sockets).toContainEqual(expect.objectContaining({ localPort: port, listening: true }));
      expect(sockets).toContainEqual(
        expect.objectContaining({ localPort: client.localPort, listening: false }),
      );
    } finally {
      client.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('a process that cannot be read has no sockets', () => {
    expect(socketInodesOf(2 ** 22 + 1).size).toBe(0);
  });
});
