import { connect, createServer, type Server, type Socket } from 'node:net';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type GroupChild, signalGroup, spawnGroup } from '../process-group.js';
import { delay } from '../wait.js';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface Route {
  readonly listen: Endpoint;
  readonly target: Endpoint;
}

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
    private readonly listen: Endpoint,
    private readonly target: Endpoint,
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

/** Above the service processes and the harness: the network the run plays is not short of CPU. */
const PRIORITY = -10;

/**
 * Every forwarder of the run in one process of its own (forward-process.ts), so the harness's
 * own work (thousands of client retries, the subscriber, the probes) cannot delay the traffic
 * it forwards for the service, and the longest request measured is the service's, not the
 * harness's. Run at a higher priority than the service: a real network is not short of CPU.
 */
export class ForwardingProcess {
  private child: GroupChild | undefined;

  constructor(
    private readonly routes: readonly Route[],
    private readonly logDir: string,
  ) {}

  async start(signal: AbortSignal): Promise<void> {
    const script = fileURLToPath(new URL('./forward-process.ts', import.meta.url));
    const child = spawnGroup(process.execPath, ['--import', 'tsx', script, JSON.stringify(this.routes)], {
      logFile: join(this.logDir, 'forwarders.log'),
      env: process.env,
    });
    this.child = child;
    try {
      setPriority(child.pid, PRIORITY);
    } catch {
      // Not allowed (not root): the forwarders still run, at the harness's priority.
    }
    const limit = Date.now() + 30_000;
    while (!child.tail().includes('listening')) {
      if (child.hasExited() || Date.now() > limit) {
        throw new Error(`the forwarders did not start: ${child.tail()}`);
      }
      await delay(50, signal);
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.hasExited()) return;
    signalGroup(child.pid, 'SIGTERM');
    const killed = delay(5_000).then(() => signalGroup(child.pid, 'SIGKILL'));
    await Promise.race([child.exited, killed]);
    await child.exited;
  }

  killNow(): void {
    if (this.child && !this.child.hasExited()) signalGroup(this.child.pid, 'SIGKILL');
  }
}
