import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { listen } from '../src/support/listen.js';
import { StartupError } from '../src/support/startup-error.js';

const servers: Server[] = [];
const server = () => {
  const created = createServer();
  servers.push(created);
  return created;
};

afterEach(async () => {
  await Promise.all(
    servers
      .splice(0)
      .map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()))),
  );
});

describe('listen', () => {
  it('reports a taken port once, as a StartupError naming the setting, and not to the other error listeners', async () => {
    const first = server();
    await listen(first, 0, '127.0.0.1', 'unused');
    const { port } = first.address() as AddressInfo;

    // Stands in for the WebSocket server, which re-emits its HTTP server's errors.
    const second = server();
    const reportedElsewhere: Error[] = [];
    second.on('error', (error) => reportedElsewhere.push(error));
    const failure = await listen(second, port, '127.0.0.1', `PORT ${port} is in use`).catch(
      (e: unknown) => e,
    );

    expect(failure).toBeInstanceOf(StartupError);
    expect((failure as Error).message).toBe(`PORT ${port} is in use`);
    expect(((failure as Error).cause as NodeJS.ErrnoException).code).toBe('EADDRINUSE');
    expect(reportedElsewhere).toEqual([]);

    // The other listeners are back for the errors of a running server.
    const later = new Error('later');
    second.emit('error', later);
    expect(reportedElsewhere).toEqual([later]);
  });

  it('hands the error listeners back once listening', async () => {
    const s = server();
    const seen: Error[] = [];
    s.on('error', (error) => seen.push(error));
    await listen(s, 0, '127.0.0.1', 'unused');
    expect(s.listenerCount('error')).toBe(1);
    s.emit('error', new Error('runtime'));
    expect(seen).toHaveLength(1);
  });
});
