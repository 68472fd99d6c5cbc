import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { type RunningService, startService } from '../src/service.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { appendRows, handledRow } from './support/history.js';
import { startTcpProxy, type TcpProxy } from './support/proxy.js';
import { stopAndClean, testConfig } from './support/service.js';
import {
  connectWs,
  ON_CUSTOMER_EVENT,
  subscribeCustomerEvents,
  type WsClient,
} from './support/subscriptions.js';
import { GET, MULTIPART, POST, SSE_GET, SSE_POST, WEBSOCKET } from './support/transports.js';
import { untilLive, waitFor } from './support/wait.js';

/**
 * A database outage, injected by one fault: the service reaches MariaDB through a TCP proxy
 * that resets every connection. Every transport answers SERVICE_UNAVAILABLE (HTTP: 503 with
 * Retry-After), including a subscription whose source fails after it started, which
 * graphql-ws wraps in an error of its own that once hid the outage behind INTERNAL_SERVER_ERROR.
 */

const QUERY = { query: '{ customers(first: 1) { edges { node { id } } } }' };

let db: TestDatabase;
let proxy: TcpProxy;
let service: RunningService;
let url: string;
let ws: WsClient | undefined;
const logLines: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase('outage_answers');
  const direct = new URL(db.url);
  proxy = await startTcpProxy(direct.hostname, Number(direct.port || 3306));
  const viaProxy = new URL(db.url);
  viaProxy.host = `127.0.0.1:${proxy.port}`;
  const log = createLogger('info', {}, { write: (line: string) => logLines.push(line) });
  service = await startService(testConfig(viaProxy.toString(), { ROLES: 'app' }), log);
  if (!service.app) throw new Error('the app role did not start');
  url = service.app.url;
});

afterAll(async () => {
  proxy?.restore();
  await ws?.dispose();
  await stopAndClean(service);
  await proxy?.close();
  await db?.drop();
});

describe('answers during a database outage', () => {
  it('is SERVICE_UNAVAILABLE on every transport, also mid-subscription, never INTERNAL_SERVER_ERROR', async () => {
    ws = connectWs(url);
    const live = subscribeCustomerEvents(ws);
    let sequence = 0;
    const first = await untilLive(
      'a history row to reach the subscriber',
      async () => {
        const row = handledRow('7', ++sequence);
        await appendRows(db.db, [row]);
        return row;
      },
      (eventId) => live.count(eventId) === 1,
    );
    const cursor = live.events().find((e) => e.eventId === first.eventId)?.cursor;
    // One row after the cursor, so that a resume has a page to read.
    const second = handledRow('7', ++sequence);
    await appendRows(db.db, [second]);
    await waitFor('the second row', () => live.count(second.eventId) === 1);

    proxy.cut();

    // Resumed: the subscription starts, then its first read fails (the wrapped error).
    const resumed = await WEBSOCKET.send(url, { query: ON_CUSTOMER_EVENT, variables: { after: cursor } });
    expect(resumed.code, JSON.stringify(resumed.errors)).toBe('SERVICE_UNAVAILABLE');
    // From now on: refused before it starts.
    const fresh = await WEBSOCKET.send(url, { query: ON_CUSTOMER_EVENT });
    expect(fresh.code, JSON.stringify(fresh.errors)).toBe('SERVICE_UNAVAILABLE');
    // Over HTTP streams alike: a stream that started ends with the error (the client resumes
    // from its last id); one that cannot start is a 503 with Retry-After.
    for (const transport of [SSE_POST, SSE_GET, MULTIPART]) {
      const started = await transport.send(url, { query: ON_CUSTOMER_EVENT, variables: { after: cursor } });
      expect({ status: started.status, code: started.code }, transport.name).toEqual({
        status: 200,
        code: 'SERVICE_UNAVAILABLE',
      });
      const refused = await transport.send(url, { query: ON_CUSTOMER_EVENT });
      expect({ status: refused.status, code: refused.code }, transport.name).toEqual({
        status: 503,
        code: 'SERVICE_UNAVAILABLE',
      });
      expect(refused.headers?.get('retry-after')).toBe('1');
    }
    for (const transport of [POST, GET]) {
      const answer = await transport.send(url, QUERY);
      expect({ status: answer.status, code: answer.code }, transport.name).toEqual({
        status: 503,
        code: 'SERVICE_UNAVAILABLE',
      });
      expect(answer.headers?.get('retry-after')).toBe('1');
    }

    proxy.restore();
    await waitFor('queries to be served again', async () => (await POST.send(url, QUERY)).status === 200);
    const text = logLines.join('');
    expect(text).not.toContain('INTERNAL_SERVER_ERROR');
    expect(text).not.toContain('internal error in a GraphQL operation');
  });
});
