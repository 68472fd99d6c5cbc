import { createServer } from 'node:net';

/**
 * Ports the system's own servers use. A private server must never take one over, even while
 * the system's server is down for a moment and its port looks free.
 */
const RESERVED = new Set([3306, 4369, 5672, 15672, 25672, 4000, 9464]);

/**
 * Below Linux's ephemeral range (32768–60999): a server restarted after kill -9 binds its old
 * port again, and a port from the ephemeral range may meanwhile be the local end of some
 * outgoing connection, which would make the restart fail with EADDRINUSE.
 */
const LOW = 20_000;
const HIGH = 32_000;

/** Hands out free loopback ports, each at most once per run. */
export class PortPool {
  private readonly given = new Set<number>();

  async take(): Promise<number> {
    for (let attempt = 0; attempt < 200; attempt++) {
      const port = LOW + Math.floor(Math.random() * (HIGH - LOW));
      if (RESERVED.has(port) || this.given.has(port)) continue;
      if (await isFree(port)) {
        this.given.add(port);
        return port;
      }
    }
    throw new Error(`could not find a free port on 127.0.0.1 between ${LOW} and ${HIGH}`);
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
