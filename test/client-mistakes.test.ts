import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createLogger } from '../src/log.js';
import { type RunningService, startService } from '../src/service.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { appendRows, handledRow } from './support/history.js';
import { stopAndClean, testConfig, uniqueSuffix } from './support/service.js';
import {
  connectWs,
  subscribe,
  subscribeCustomerEvents,
  type WsClient,
  wsUrlOf,
} from './support/subscriptions.js';
import { untilLive, waitFor } from './support/wait.js';

/**
 * A client's mistake refuses that client's operation and nothing else, and a client that goes
 * away is not an error of ours: the log stays free of error lines and of the query's text.
 */

const SECRET = `mistake${uniqueSuffix()}`;

let db: TestDatabase;
let service: RunningService;
let url: string;
const clients: WsClient[] = [];
const logLines: string[] = [];
let sequence = 0;

/** Appends one history row of customer 9, as the worker would after handling an event. */
async function appendEvent(): Promise<{ eventId: string }> {
  const row = handledRow('9', ++sequence);
  await appendRows(db.db, [row]);
  return row;
}

const errorLines = () =>
  logLines.map((line) => JSON.parse(line) as { level: number; msg: string }).filter((l) => l.level >= 50);

beforeAll(async () => {
  db = await createTestDatabase('client_mistakes');
  const log = createLogger('debug', {}, { write: (line: string) => logLines.push(line) });
  service = await startService(testConfig(db.url, { ROLES: 'app' }), log);
  if (!service.app) throw new Error('the app role did not start');
  url = service.app.url;
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.dispose()));
  await stopAndClean(service);
  await db?.drop();
});

describe("a client's mistakes and departures", () => {
  it('refuses a document whose validation throws as GRAPHQL_VALIDATION_FAILED, and the socket and its other subscription live on', async () => {
    const ws = connectWs(url);
    clients.push(ws);
    const live = subscribeCustomerEvents(ws);
    await untilLive('the first subscription to be live', appendEvent, (id) => live.count(id) === 1);

    const throwing = subscribe(
      ws,
      `subscription($b: Boolean!) { onCustomerEvent(after: "${SECRET}@example.com") @include(if: $b) { eventId } }`,
      { b: true },
    );
    await waitFor('the refusal', () => throwing.errors.length > 0);
    expect(throwing.errors).toEqual([
      [expect.objectContaining({ extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } })],
    ]);

    const after = await appendEvent();
    await waitFor('the other subscription to get the next event', () => live.count(after.eventId) === 1);
    expect(ws.closes).toEqual([]);
    expect(logLines.join('')).not.toContain(SECRET);
    expect(errorLines()).toEqual([]);
  });

  it('logs no error when a client that stopped reading resets its connection under 50 subscriptions', async () => {
    const socket = new WebSocket(wsUrlOf(url), 'graphql-transport-ws');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('open', () => socket.send('{"type":"connection_init"}'));
      socket.once('message', () => resolve());
    });
    const query = 'subscription { onCustomerEvent { eventId type customerId sequence payload cursor } }';
    for (let id = 1; id <= 50; id++) {
      socket.send(JSON.stringify({ id: String(id), type: 'subscribe', payload: { query } }));
    }
    let received = 0;
    socket.on('message', () => received++);
    const ws = connectWs(url);
    clients.push(ws);
    const watcher = subscribeCustomerEvents(ws);
    await untilLive(
      'the subscriptions to be live',
      appendEvent,
      (id) => received >= 50 && watcher.count(id) === 1,
    );
    // Stop reading, let the server's writes pile up, then reset the connection under them:
    // 50 subscriptions × 100 events of 10 KB, far more than the kernel's buffers hold.
    const raw = (socket as unknown as { _socket: Socket })._socket;
    raw.pause();
    const pad = 'x'.repeat(10_000);
    let last = '';
    for (let i = 0; i < 5; i++) {
      const rows = Array.from({ length: 20 }, () => ({ ...handledRow('9', ++sequence), payload: { pad } }));
      await appendRows(db.db, rows);
      last = rows.at(-1)?.eventId ?? last;
    }
    // Fanned out to every subscriber: the paused client's writes are in flight.
    await waitFor('the events to reach the watcher', () => watcher.count(last) === 1);
    raw.resetAndDestroy();
    await untilLive('the feed to move on', appendEvent, (id) => watcher.count(id) === 1);
    expect(errorLines()).toEqual([]);
    // Nor is a reset client's socket taken for the database going away.
    expect(logLines.join('')).not.toContain('database unavailable');
  });
});
