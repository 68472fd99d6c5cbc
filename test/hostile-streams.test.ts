import { connect, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeHistoryCursor } from '../src/customers/cursor.js';
import { type RunningService, startService } from '../src/service.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { bulkSeedHistory } from './support/history.js';
import { MULTIPART_ACCEPT, openMultipart, openSse, SSE_ACCEPT } from './support/http-streams.js';
import { stopAndClean, testConfig, testLogger } from './support/service.js';
import { ON_CUSTOMER_EVENT } from './support/subscriptions.js';
import { waitFor } from './support/wait.js';

// Rows of about 2 kB: a client that reads nothing would make the service buffer the whole
// backlog, 20,000 × 2 kB per stream, if it wrote without waiting for the socket.
const BACKLOG = 20_000;
const PADDING = 2_000;
const NEVER_READERS = 4;
const PAGE_SIZE = 100;
const BUFFER_SIZE = 50;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let db: TestDatabase;
let service: RunningService;
let url: string;

beforeAll(async () => {
  db = await createTestDatabase('hostile_streams');
  service = await startService(
    testConfig(db.url, {
      LIVE_PAGE_SIZE: String(PAGE_SIZE),
      LIVE_BUFFER_SIZE: String(BUFFER_SIZE),
      ROLES: 'app',
    }),
    testLogger(),
  );
  url = service.app?.url as string;
});

afterAll(async () => {
  await stopAndClean(service);
  await db?.drop();
});

/** The heap after a full collection, in MB. */
function heapMb(): number {
  gc();
  return process.memoryUsage().heapUsed / 1e6;
}

/** A client that sends its request and never reads a byte of the answer. */
function neverReader(accept: string, after: string): Promise<Socket> {
  const { port } = new URL(url);
  const body = JSON.stringify({ query: ON_CUSTOMER_EVENT, variables: { after } });
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => {
      socket.pause();
      socket.write(
        `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: ${accept}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      resolve(socket);
    });
    socket.on('error', reject);
  });
}

/** An SSE reader that counts events and keeps none: the test shares the service's heap. */
function countingReader(after: string): { events(): number; close(): void } {
  const controller = new AbortController();
  let events = 0;
  void (async () => {
    const response = await fetch(url, {
      method: 'POST',
      signal: controller.signal,
      headers: { accept: SSE_ACCEPT, 'content-type': 'application/json' },
      body: JSON.stringify({ query: ON_CUSTOMER_EVENT, variables: { after } }),
    });
    const decoder = new TextDecoder();
    let tail = '';
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      const text = tail + decoder.decode(chunk, { stream: true });
      events += text.split('event: next\n').length - 1;
      tail = text.slice(-16);
      if (tail.includes('event: next\n')) tail = tail.slice(tail.lastIndexOf('event: next\n') + 12);
    }
  })().catch(() => undefined);
  return { events: () => events, close: () => controller.abort() };
}

async function queuedRows(): Promise<number> {
  const text = await (await fetch(url.replace('/graphql', '/metrics'))).text();
  return Number(/^live_queued_rows (\d+)$/m.exec(text)?.[1] ?? Number.NaN);
}

describe('hostile clients of the HTTP subscription transports', () => {
  it.each([
    ['SSE', SSE_ACCEPT],
    ['multipart', MULTIPART_ACCEPT],
  ])(
    '%s: a malformed cursor or one ahead of the history is BAD_USER_INPUT with the field that gave it, and no internals',
    async (_, accept) => {
      const sse = accept === SSE_ACCEPT;
      for (const cursor of ['%%%', encodeHistoryCursor(9_999_999), 'aDE6MQ'.repeat(20)]) {
        const stream = await (sse ? openSse : openMultipart)(url, {
          variables: sse ? {} : { after: cursor },
          headers: sse ? { 'last-event-id': cursor } : {},
        });
        await waitFor('the end of the answer', () => stream.ended());
        expect(stream.status).toBe(200);
        const field = sse ? 'Last-Event-ID' : 'after';
        expect(stream.text()).toContain(`"extensions":{"code":"BAD_USER_INPUT","field":"${field}"}`);
        expect(stream.text()).not.toMatch(/at .*\.ts:\d+/);
      }
    },
  );

  it(`${NEVER_READERS} clients that never read a ${BACKLOG}-event backlog of 2 kB events leave memory flat and the feed's queues bounded, while a reader beside them gets everything`, async () => {
    const start = encodeHistoryCursor(0);
    const before = heapMb();
    await bulkSeedHistory(db, BACKLOG, { padding: PADDING });
    const sockets = await Promise.all(
      Array.from({ length: NEVER_READERS }, (_, i) =>
        neverReader(i % 2 ? SSE_ACCEPT : MULTIPART_ACCEPT, start),
      ),
    );
    const reader = countingReader(start);
    try {
      await waitFor('the reader to get the whole backlog', () => reader.events() >= BACKLOG, {
        timeoutMs: 120_000,
        intervalMs: 500,
      });
      // The never-readers had every chance to fill the service: the backlog was streamed beside them.
      const after = heapMb();
      expect(after - before).toBeLessThan(30);
      expect(await queuedRows()).toBeLessThanOrEqual((NEVER_READERS + 1) * Math.max(PAGE_SIZE, BUFFER_SIZE));
      const later = heapMb();
      expect(later - after).toBeLessThan(10);
    } finally {
      reader.close();
      for (const socket of sockets) socket.destroy();
    }
  }, 120_000);
});
