import { mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runInNewContext } from 'node:vm';
import { buildSchema, parse, validate } from 'graphql';
import type { Browser, Page, Request } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../src/service.js';
import { launchChromium } from './support/chromium.js';
import { createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { stopAndClean, testConfig, testLogger } from './support/service.js';
import { waitFor } from './support/wait.js';

const SCREENSHOT = fileURLToPath(new URL('../docs/playground.png', import.meta.url));

let db: TestDatabase;
let service: RunningService;
let browser: Browser;

beforeAll(async () => {
  db = await createTestDatabase('playground');
  service = await startService(testConfig(db.url), testLogger());
  browser = await launchChromium('The playground test');
});

afterAll(async () => {
  await browser?.close();
  await stopAndClean(service);
  await db?.drop();
});

/** A fresh browser context (own storage) on the playground; records every request it makes. */
async function openPlayground(path: string): Promise<{ page: Page; requests: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 850 } });
  const page = await context.newPage();
  const requests: string[] = [];
  page.on('request', (request) => requests.push(request.url()));
  page.on('websocket', (socket) => requests.push(socket.url()));
  await page.goto(new URL(path, service.app?.url).href);
  await page.locator('.graphiql-execute-button').waitFor({ timeout: 20_000 });
  return { page, requests };
}

/** The playground script's default tabs, read by running it against a stub of the page's globals. */
function defaultTabs(): Array<{ query: string }> {
  let props: { defaultTabs?: Array<{ query: string }> } = {};
  const window = {
    location: { href: 'http://localhost/graphql', search: '' },
    graphqlWs: { createClient: () => ({}) },
    GraphiQL: { createFetcher: () => () => undefined },
    React: { createElement: (_: unknown, p: typeof props) => (props = p) },
    ReactDOM: { createRoot: () => ({ render: () => undefined }) },
  };
  const document = { getElementById: () => ({ addEventListener: () => undefined }) };
  const source = readFileSync(fileURLToPath(new URL('../public/playground.js', import.meta.url)), 'utf8');
  runInNewContext(source, { window, document, URL, URLSearchParams, JSON });
  return props.defaultTabs ?? [];
}

// biome-ignore lint/performance/useDomNodeTextContent: Playwright's innerText, the text as shown, is what a user reads.
const resultText = (page: Page) => page.locator('.result-window').innerText();

describe('playground', () => {
  it('serves a GraphiQL page that loads nothing from outside, runs the subscription and a createCustomer, and shows the handled event', async () => {
    const origin = new URL(service.app?.url as string).host;

    // Page A: the default tabs; the first one is the onCustomerEvent subscription.
    const live = await openPlayground('/graphql');
    await live.page.locator('.graphiql-execute-button').click();
    // The subscription is up when its WebSocket is open.
    await expect.poll(() => live.requests.some((u) => u.startsWith('ws://')), { timeout: 10_000 }).toBe(true);

    // Page B: the mutation, run from the playground as a user would.
    const mutation =
      'mutation Create($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId customer { id email } } }';
    const variables = JSON.stringify({ input: { email: 'grace@example.com', name: 'Grace Hopper' } });
    const create = await openPlayground(
      `/graphql?query=${encodeURIComponent(mutation)}&variables=${encodeURIComponent(variables)}`,
    );
    await create.page.locator('.graphiql-execute-button').click();
    await expect.poll(() => resultText(create.page), { timeout: 10_000 }).toContain('eventId');
    // The result pane is an editor, not plain JSON text (gutters, folding): read the fields.
    const createdText = await resultText(create.page);
    const eventId = /"eventId": "([0-9a-f-]{36})"/.exec(createdText)?.[1] as string;
    const customerId = /"id": "(\d+)"/.exec(createdText)?.[1] as string;
    expect(eventId).toBeTruthy();
    expect(customerId).toBeTruthy();

    // Page A shows the worker-handled event for that customer.
    await expect.poll(() => resultText(live.page), { timeout: 15_000 }).toContain(eventId);
    const shown = await resultText(live.page);
    expect(shown).toContain('CustomerCreated');
    expect(shown).toContain(`"customerId": "${customerId}"`);
    expect(shown).toContain('handledAt');
    // The default subscription asks for the cursor a client resumes from.
    expect(shown).toMatch(/"cursor": "[A-Za-z0-9_-]+"/);
    expect(shown).toContain('"sequence": 1');

    // Nothing but this service was contacted (no CDN, no fonts, no telemetry).
    for (const url of [...live.requests, ...create.requests]) {
      if (url.startsWith('data:')) continue;
      expect(new URL(url).host).toBe(origin);
    }

    // UPDATE_SCREENSHOT=1 npx vitest run test/playground.test.ts refreshes the README's picture.
    if (process.env.UPDATE_SCREENSHOT) {
      mkdirSync(fileURLToPath(new URL('../docs/', import.meta.url)), { recursive: true });
      await live.page.screenshot({ path: SCREENSHOT });
    }
  });

  it.each([
    ['sse', (r: Request) => r.resourceType() === 'eventsource'],
    ['multipart', (r: Request) => (r.headers().accept ?? '').includes('subscriptionSpec="1.0"')],
  ])(
    'runs the subscription over %s when that transport is chosen, with no WebSocket',
    async (transport, isStream) => {
      const live = await openPlayground(`/graphql?transport=${transport}`);
      expect(await live.page.locator('#transport').inputValue()).toBe(transport);
      const streams: Request[] = [];
      live.page.on('request', (request) => {
        if (isStream(request)) streams.push(request);
      });
      await live.page.locator('.graphiql-execute-button').click();
      await expect.poll(() => streams.length, { timeout: 10_000 }).toBeGreaterThan(0);
      // The subscription starts at "now" when the server takes it, which it does not acknowledge:
      // a customer is created every few seconds until one is shown.
      const url = service.app?.url as string;
      const made: string[] = [];
      let lastMade = 0;
      await waitFor(
        `an event shown over ${transport}`,
        async () => {
          const text = await resultText(live.page);
          if (made.some((eventId) => text.includes(eventId))) return true;
          if (Date.now() - lastMade > 3_000) {
            made.push((await createCustomer(url, transport)).eventId);
            lastMade = Date.now();
          }
          return false;
        },
        { timeoutMs: 30_000, intervalMs: 200 },
      );
      expect(live.requests.some((u) => u.startsWith('ws://'))).toBe(false);
    },
  );

  it('offers default tabs that are all valid operations against schema.graphql', () => {
    const tabs = defaultTabs();
    expect(tabs.length).toBeGreaterThanOrEqual(3);
    const schema = buildSchema(
      readFileSync(fileURLToPath(new URL('../schema.graphql', import.meta.url)), 'utf8'),
    );
    for (const tab of tabs) {
      expect(validate(schema, parse(tab.query)).map((e) => e.message)).toEqual([]);
    }
    expect(tabs[0]?.query).toMatch(/onCustomerEvent[\s\S]*cursor/);
  });

  it('leads / to the playground, and answers an unknown path with a JSON NOT_FOUND', async () => {
    const origin = new URL(service.app?.url as string).origin;
    const root = await fetch(`${origin}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/graphql');

    const { page } = await openPlayground('/');
    expect(new URL(page.url()).pathname).toBe('/graphql');

    for (const method of ['GET', 'POST']) {
      const missing = await fetch(`${origin}/no-such-page`, { method });
      expect(missing.status).toBe(404);
      expect(missing.headers.get('content-type')).toContain('application/json');
      expect(await missing.json()).toEqual({
        errors: [{ message: 'Not found', extensions: { code: 'NOT_FOUND' } }],
      });
    }
  });
});
