import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP forwarder in the host: `listen` → `target`. The service processes in their namespaces
 * reach the private MariaDB and RabbitMQ (which listen on loopback only) through one on the
 * bridge address, as through a load balancer; the harness reaches an app in its namespace
 * through one on loopback. A black-holed link between a namespace and the bridge leaves both
 * of a forwarded connection's sockets open and silent, as a real one would.
 */
export class Forwarder {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly listen: { host: string; port: number },
    private readonly target: { host: string; port: number },
  ) {}

  async start(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.target);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
        socket.on('close', () => {
          this.sockets.delete(socket);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.listen.port, this.listen.host, () => resolve());
    });
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
