import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TEST_AMQP_URL } from './support/env.js';
import { type ServiceProcess, spawnService } from './support/process.js';
import { waitFor } from './support/wait.js';

let child: ServiceProcess | undefined;
let server: Server | undefined;
const sockets = new Set<Socket>();

afterEach(async () => {
  child?.child.kill('SIGKILL');
  child = undefined;
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

/** A TCP server that takes connections and never says a word: a database that hangs. */
async function silentServer(): Promise<number> {
  server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** A port on which nothing listens: taken from the kernel, then given back. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

function start(databasePort: number): ServiceProcess {
  return spawnService('relay', {
    DATABASE_URL: `mysql://root@127.0.0.1:${databasePort}/outbox_startup_signal`,
    AMQP_URL: TEST_AMQP_URL,
    METRICS_PORT: '0',
    // Far beyond the test: only the signal can end the wait.
    STARTUP_TIMEOUT_MS: '120000',
  });
}

/** Sends SIGTERM and resolves with the exit code and how long the process took to end. */
async function terminate(service: ServiceProcess): Promise<{ code: number | string; ms: number }> {
  const sentAt = Date.now();
  service.child.kill('SIGTERM');
  const code = await Promise.race([
    service.exited,
    new Promise<string>((resolve) => setTimeout(() => resolve('still running after 10 s'), 10_000)),
  ]);
  return { code, ms: Date.now() - sentAt };
}

describe('a signal during the start', () => {
  it('SIGTERM while the start waits for a database nobody listens for ends the wait and exits 0 promptly', async () => {
    child = start(await closedPort());
    await waitFor(
      'the start to wait for the database',
      () => child?.output().includes('waiting for the database'),
      {
        timeoutMs: 30_000,
      },
    );
    const { code, ms } = await terminate(child);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(3_000);
    expect(child.output()).toContain('"stopped"');
  });

  it('SIGTERM while a connection attempt hangs on a database that never answers exits 0 without waiting for the attempt', async () => {
    child = start(await silentServer());
    await waitFor('the service to connect to the silent database', () => sockets.size > 0, {
      timeoutMs: 30_000,
    });
    const { code, ms } = await terminate(child);
    expect(code).toBe(0);
    // The connection attempt alone would last its connect bound (3 s) before the back-off.
    expect(ms).toBeLessThan(2_500);
  });
});
