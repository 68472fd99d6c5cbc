import { ApolloClient, gql, HttpLink, InMemoryCache } from '@apollo/client/core';
import { createClient } from 'graphql-sse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeHistoryCursor } from '../src/customers/cursor.js';
import { type RunningService, startService } from '../src/service.js';
import { createCustomer, customerEvents } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { openMultipart, openSse } from './support/http-streams.js';
import { stopAndClean, testConfig, testLogger } from './support/service.js';
import { type CustomerEventData, connectWs, ON_CUSTOMER_EVENT } from './support/subscriptions.js';
import { waitFor } from './support/wait.js';

const CREATES = 30;

let db: TestDatabase;
let service: RunningService;
let url: string;

beforeAll(async () => {
  db = await createTestDatabase('http_subscriptions');
  service = await startService(testConfig(db.url, { WS_MAX_CONNECTIONS: '50' }), testLogger());
  url = service.app?.url as string;
});

afterAll(async () => {
  await stopAndClean(service);
  await db?.drop();
});

/** The cursor of a new customer's handled event: a point in the history to subscribe after. */
async function cursorNow(): Promise<string> {
  const { customerId } = await createCustomer(url, 'mark');
  const [event] = await waitFor('the mark to be handled', async () => {
    const events = await customerEvents(url, customerId);
    return events.length > 0 ? events : undefined;
  });
  return event?.cursor as string;
}

/** The history's event ids after a cursor, in position order: what a subscriber must receive. */
async function historyAfter(cursor: string, count: number): Promise<string[]> {
  const position = Number(Buffer.from(cursor, 'base64url').toString().split(':')[1]);
  const rows = await db.query<{ event_id: string }>(
    'SELECT event_id FROM handled_events WHERE position > ? ORDER BY position LIMIT ?',
    [position, count],
  );
  return rows.map((r) => r.event_id);
}

async function createMany(n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push((await createCustomer(url, `run${i}`)).eventId);
  return ids;
}

describe('subscriptions over HTTP with real clients', () => {
  it("graphql-sse's client (distinct connections) receives every handled event of a run of creates once, in order", async () => {
    const after = await cursorNow();
    const client = createClient({ url, singleConnection: false, retryAttempts: 0 });
    const received: CustomerEventData[] = [];
    const errors: unknown[] = [];
    const unsubscribe = client.subscribe<{ onCustomerEvent: CustomerEventData }>(
      { query: ON_CUSTOMER_EVENT, variables: { after } },
      {
        next: (result) => {
          if (result.data) received.push(result.data.onCustomerEvent);
          else errors.push(result);
        },
        error: (error) => errors.push(error),
        complete: () => undefined,
      },
    );
    try {
      const created = await createMany(CREATES);
      await waitFor('every event over SSE', () => received.length >= CREATES, { timeoutMs: 30_000 });
      const expected = await historyAfter(after, CREATES);
      expect(new Set(expected)).toEqual(new Set(created));
      expect(received.map((e) => e.eventId)).toEqual(expected);
      expect(errors).toEqual([]);
    } finally {
      unsubscribe();
      client.dispose();
    }
  });

  it("Apollo Client 3's HttpLink (multipart, no WebSocket link) receives every handled event of a run of creates once, in order", async () => {
    const after = await cursorNow();
    const client = new ApolloClient({ link: new HttpLink({ uri: url }), cache: new InMemoryCache() });
    const received: CustomerEventData[] = [];
    const errors: unknown[] = [];
    const subscription = client
      .subscribe<{ onCustomerEvent: CustomerEventData }>({
        query: gql(ON_CUSTOMER_EVENT),
        variables: { after },
        fetchPolicy: 'no-cache',
      })
      .subscribe({
        next: (result) => {
          if (result.data) received.push(result.data.onCustomerEvent);
          if (result.errors) errors.push(result.errors);
        },
        error: (error) => errors.push(error),
      });
    try {
      const created = await createMany(CREATES);
      await waitFor('every event over multipart', () => received.length >= CREATES, { timeoutMs: 30_000 });
      const expected = await historyAfter(after, CREATES);
      expect(new Set(expected)).toEqual(new Set(created));
      expect(received.map((e) => e.eventId)).toEqual(expected);
      expect(errors).toEqual([]);
    } finally {
      subscription.unsubscribe();
      client.stop();
    }
  });
});

describe('GraphQL over SSE: event ids and Last-Event-ID', () => {
  it('sends each event with its cursor as the SSE id, after the start position as an id with no event', async () => {
    const after = await cursorNow();
    const stream = await openSse(url, { method: 'GET', variables: { after } });
    try {
      expect(stream.status).toBe(200);
      expect(stream.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
      expect(stream.headers.get('x-accel-buffering')).toBe('no');
      expect(stream.headers.get('cache-control')).toBe('no-cache, no-transform');
      expect(stream.headers.get('content-encoding')).toBeNull();
      await waitFor('the start id', () => stream.lastEventId() === after);
      await createMany(3);
      await waitFor('three events', () => stream.messages().length >= 3);
      for (const message of stream.messages()) {
        expect(message.event).toBe('next');
        const event = JSON.parse(message.data).data.onCustomerEvent as CustomerEventData;
        expect(message.id).toBe(event.cursor);
      }
    } finally {
      stream.close();
    }
  });

  it('resumes after Last-Event-ID, and after the later of it and `after` when both are given', async () => {
    const start = await cursorNow();
    const ids = await createMany(4);
    const first = await openSse(url, { variables: { after: start } });
    await waitFor('four events', () => first.messages().length >= 4);
    first.close();
    const history = await historyAfter(start, 4);
    expect(new Set(history)).toEqual(new Set(ids));
    const secondId = first.messages()[1]?.id as string;
    const eventsOf = (s: Awaited<ReturnType<typeof openSse>>) =>
      s.messages().map((m) => JSON.parse(m.data).data.onCustomerEvent.eventId as string);

    // The header is later than `after`: it wins, as when a browser reconnects.
    const resumed = await openSse(url, {
      method: 'GET',
      variables: { after: start },
      headers: { 'last-event-id': secondId },
    });
    // `after` is later than the header: it wins.
    const later = await openSse(url, {
      variables: { after: secondId },
      headers: { 'last-event-id': start },
    });
    try {
      await waitFor(
        'the rest after the id',
        () => resumed.messages().length >= 2 && later.messages().length >= 2,
      );
      expect(eventsOf(resumed)).toEqual(history.slice(2));
      expect(eventsOf(later)).toEqual(history.slice(2));
    } finally {
      resumed.close();
      later.close();
    }
  });

  it('refuses a malformed Last-Event-ID or a cursor ahead of the history with BAD_USER_INPUT and ends the stream', async () => {
    for (const lastEventId of ['not a cursor', encodeHistoryCursor(9_999_999)]) {
      const stream = await openSse(url, { headers: { 'last-event-id': lastEventId } });
      await waitFor('the end of the stream', () => stream.ended());
      const [message, end] = stream.messages();
      expect(JSON.parse(message?.data as string).errors).toEqual([
        expect.objectContaining({ extensions: { code: 'BAD_USER_INPUT', field: 'Last-Event-ID' } }),
      ]);
      expect(end?.event).toBe('complete');
    }
  });
});

describe('both transports at the edge', () => {
  it('count against the connection cap shared with WebSocket, and are refused past it with 503', async () => {
    const capped = await startService(
      testConfig(db.url, { WS_MAX_CONNECTIONS: '2', ROLES: 'app' }),
      testLogger(),
    );
    const cappedUrl = capped.app?.url as string;
    const sse = await openSse(cappedUrl);
    const ws = connectWs(cappedUrl);
    try {
      await waitFor('the WebSocket to connect', () => ws.connected() || ws.connectionErrors.length > 0);
      expect(ws.connected()).toBe(true);
      const refused = await openMultipart(cappedUrl);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(
        JSON.parse(refused.text() || (await waitFor('body', () => refused.text()))).errors[0].extensions.code,
      ).toBe('SERVICE_UNAVAILABLE');
      sse.close();
      await waitFor('a slot to be free again', async () => {
        const again = await openMultipart(cappedUrl);
        again.close();
        return again.status === 200;
      });
    } finally {
      sse.close();
      await ws.dispose();
      await capped.stop();
    }
  });

  it('refuse a foreign Origin, a POST that is not JSON (CSRF), and queries, each with a code', async () => {
    const foreign = await openSse(url, { headers: { origin: 'https://evil.example' } });
    expect(foreign.status).toBe(403);
    const form = await fetch(url, {
      method: 'POST',
      headers: { accept: 'text/event-stream', 'content-type': 'text/plain' },
      body: JSON.stringify({ query: ON_CUSTOMER_EVENT }),
    });
    expect(form.status).toBe(415);
    const query = await openMultipart(url, { query: '{ outboxStats { pending } }' });
    expect(query.status).toBe(400);
    await waitFor('the body', () => query.ended());
    expect(JSON.parse(query.text()).errors[0].extensions.code).toBe('BAD_REQUEST');
  });

  it('end streams at a graceful stop: SSE with no `complete` (EventSource reconnects), multipart with SERVICE_UNAVAILABLE', async () => {
    const stopping = await startService(testConfig(db.url, { ROLES: 'app' }), testLogger());
    const stoppingUrl = stopping.app?.url as string;
    const sse = await openSse(stoppingUrl);
    const multipart = await openMultipart(stoppingUrl);
    await waitFor('both streams open', () => sse.text().length > 0 && multipart.text().length > 0);
    const started = Date.now();
    await stopping.stop();
    expect(Date.now() - started).toBeLessThan(5_000);
    await waitFor('both streams ended', () => sse.ended() && multipart.ended());
    expect(sse.messages()).toEqual([]);
    expect(multipart.parts().at(-1)).toEqual({
      payload: null,
      errors: [expect.objectContaining({ extensions: { code: 'SERVICE_UNAVAILABLE' } })],
    });
    expect(multipart.text().endsWith('--graphql--\r\n')).toBe(true);
  });
});
