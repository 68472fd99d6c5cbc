import { createServer } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeHistoryCursor } from '../src/customers/cursor.js';
import { type RunningService, startService } from '../src/service.js';
import { waitForLog } from './support/children.js';
import { launchChromium } from './support/chromium.js';
import { createCustomer, customerEvents } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { TEST_AMQP_URL } from './support/env.js';
import { type ServiceProcess, spawnService } from './support/process.js';
import { stopAndClean, testConfig, testLogger } from './support/service.js';
import { ON_CUSTOMER_EVENT } from './support/subscriptions.js';
import { waitFor } from './support/wait.js';

let db: TestDatabase;
/** Relay, worker and an app for the creates: up for the whole test. */
let core: RunningService;
let coreUrl: string;
let browser: Browser;
let app: ServiceProcess | undefined;

/** A port that was free a moment ago: the killed instance comes back on it. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** The app instance the browser subscribes to, as a process of its own on `port`. */
async function startApp(port: number): Promise<ServiceProcess> {
  const proc = spawnService('app', {
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: db.url,
    AMQP_URL: TEST_AMQP_URL,
    OUTBOX_EXCHANGE: core.topology.exchange,
    WORKER_QUEUE: core.topology.workerQueue,
  });
  await waitForLog(proc, 'GraphQL server listening', 60_000);
  return proc;
}

beforeAll(async () => {
  db = await createTestDatabase('eventsource');
  core = await startService(testConfig(db.url), testLogger());
  coreUrl = core.app?.url as string;
  browser = await launchChromium('The EventSource test');
});

afterAll(async () => {
  app?.child.kill('SIGKILL');
  await app?.exited;
  await browser?.close();
  await stopAndClean(core);
  await db?.drop();
});

interface Received {
  readonly id: string;
  readonly eventId: string;
  readonly cursor: string;
}

/**
 * The page's script, plain JavaScript (the tests compile without the DOM's types): the
 * browser's own EventSource and nothing else; it records what arrives and counts the errors
 * it reports when the connection drops.
 */
const pageScript = (source: string) => `
  window.received = [];
  window.problems = [];
  window.errors = 0;
  const events = new EventSource(${JSON.stringify(source)});
  events.addEventListener('next', (message) => {
    const result = JSON.parse(message.data);
    if (result.data) window.received.push({ id: message.lastEventId, ...result.data.onCustomerEvent });
    else window.problems.push(result);
  });
  events.addEventListener('complete', () => {
    window.problems.push('complete');
    events.close();
  });
  events.addEventListener('error', () => {
    window.errors++;
  });
`;

/** What the page has received so far, and how often its EventSource reported an error. */
const pageState = (page: Page) =>
  page.evaluate(
    '({ received: window.received, problems: window.problems, errors: window.errors })',
  ) as Promise<{
    received: Received[];
    problems: unknown[];
    errors: number;
  }>;

describe("a browser's own EventSource", () => {
  it('reconnects by itself with Last-Event-ID across a SIGKILL and restart of its instance, and ends with every event once, in position order, no gap', async () => {
    const port = await freePort();
    app = await startApp(port);
    // A point in the history to start after, so that every later event is owed to the page.
    const mark = await createCustomer(coreUrl, 'mark');
    const [marked] = await waitFor('the mark to be handled', async () => {
      const events = await customerEvents(coreUrl, mark.customerId);
      return events.length > 0 ? events : undefined;
    });
    const start = marked?.cursor as string;

    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/healthz`);
    // The URL keeps `after` on every reconnect: without Last-Event-ID winning, the page would
    // receive everything again from the start.
    const source = `/graphql?query=${encodeURIComponent(ON_CUSTOMER_EVENT)}&variables=${encodeURIComponent(JSON.stringify({ after: start }))}`;
    await page.addScriptTag({ content: pageScript(source) });

    let creating = true;
    const created: string[] = [];
    const creates = (async () => {
      while (creating) {
        created.push((await createCustomer(coreUrl, 'live')).eventId);
        await new Promise((resolve) => setTimeout(resolve, 40));
      }
    })().catch((error: unknown) => {
      creating = false;
      throw error;
    });
    try {
      await waitFor('events before the kill', async () => (await pageState(page)).received.length >= 10);
      app.child.kill('SIGKILL');
      await app.exited;
      const atKill = created.length;
      await waitFor('creates while the instance is down', () => created.length >= atKill + 10);
      app = await startApp(port);
      const atRestart = created.length;
      await waitFor('creates after the restart', () => created.length >= atRestart + 10, {
        timeoutMs: 30_000,
      });
    } finally {
      creating = false;
      await creates;
    }

    const expected = await waitFor(
      'every create to be handled',
      async () => {
        const rows = await db.query<{ event_id: string }>(
          'SELECT event_id FROM handled_events WHERE position > ? ORDER BY position',
          [decodeHistoryCursor(start, 'after')],
        );
        return rows.length >= created.length ? rows.map((r) => r.event_id) : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(new Set(expected)).toEqual(new Set(created));
    await waitFor(
      'the page to receive every event',
      async () => (await pageState(page)).received.length >= expected.length,
      {
        timeoutMs: 30_000,
      },
    );
    const { received, problems, errors } = await pageState(page);
    expect(problems).toEqual([]);
    // Once each, in position order, no gap: exactly the history after the start.
    expect(received.map((r) => r.eventId)).toEqual(expected);
    for (const r of received) expect(r.id).toBe(r.cursor);
    // The EventSource saw the connection drop (and reconnected by itself: nothing reopened it).
    expect(errors).toBeGreaterThanOrEqual(1);
  }, 120_000);
});
