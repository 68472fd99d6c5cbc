import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../src/service.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { appendRows, handledRow } from './support/history.js';
import { countRows } from './support/rows.js';
import {
  type GraphQLResponse,
  graphql,
  stopAndClean,
  testConfig,
  testLogger,
  uniqueSuffix,
} from './support/service.js';
import { waitFor } from './support/wait.js';

const MAX_PAGE_SIZE = 10;
const CUSTOMER_COUNT = 25;

const CREATE = /* GraphQL */ `
  mutation Create($input: CreateCustomerInput!) {
    createCustomer(input: $input) { eventId customer { id email name createdAt } }
  }
`;

const PAGE = /* GraphQL */ `
  query Page($first: Int, $after: String) {
    customers(first: $first, after: $after) {
      edges { cursor node { id email name createdAt } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

const ONE = /* GraphQL */ `
  query One($id: ID!) { customer(id: $id) { id email name createdAt } }
`;

const STATS = /* GraphQL */ `
  query { outboxStats { pending leased published dead oldestPendingAgeSeconds } }
`;

interface CustomerNode {
  id: string;
  email: string;
  name: string;
  createdAt: string;
}

interface PageData {
  customers: {
    edges: Array<{ cursor: string; node: CustomerNode }>;
    pageInfo: { hasNextPage: boolean; endCursor: string | null };
  } | null;
}

interface StatsData {
  outboxStats: {
    pending: number;
    leased: number;
    published: number;
    dead: number;
    oldestPendingAgeSeconds: number | null;
  } | null;
}

let db: TestDatabase;
let service: RunningService;
let url: string;
let statsBefore: StatsData['outboxStats'];
/** The customers this file created, in creation order. */
const created: CustomerNode[] = [];

async function readStats() {
  const response = await graphql<StatsData>(url, STATS);
  expect(response.errors).toBeUndefined();
  const stats = response.data?.outboxStats;
  if (!stats) throw new Error(`outboxStats returned no data: ${JSON.stringify(response)}`);
  return stats;
}

beforeAll(async () => {
  db = await createTestDatabase('customers_query');
  service = await startService(
    testConfig(db.url, { ROLES: 'app', GRAPHQL_MAX_PAGE_SIZE: String(MAX_PAGE_SIZE) }),
    testLogger(),
  );
  if (!service.app) throw new Error('the app role did not start');
  url = service.app.url;
  statsBefore = await readStats();
  const suffix = uniqueSuffix();
  // One at a time, so creation order is known; ids must come back in that order.
  for (let i = 0; i < CUSTOMER_COUNT; i++) {
    const response = await graphql<{ createCustomer: { customer: CustomerNode } }>(url, CREATE, {
      input: { email: `page.${i}.${suffix}@example.com`, name: `Customer ${i}` },
    });
    const customer = response.data?.createCustomer?.customer;
    if (!customer) throw new Error(`createCustomer failed: ${JSON.stringify(response)}`);
    created.push(customer);
  }
});

afterAll(async () => {
  await stopAndClean(service);
  await db?.drop();
});

describe('customers: keyset pagination in id order', () => {
  it('walks every customer exactly once, in id order, 7 at a time', async () => {
    const seen: CustomerNode[] = [];
    const pageSizes: number[] = [];
    let after: string | null = null;
    for (let pages = 0; ; pages++) {
      // A broken hasNextPage would loop forever; no walk of 25 rows needs more than 25 pages.
      expect(pages).toBeLessThan(CUSTOMER_COUNT);
      const response: GraphQLResponse<PageData> = await graphql<PageData>(url, PAGE, { first: 7, after });
      expect(response.errors).toBeUndefined();
      const page: PageData['customers'] | undefined = response.data?.customers;
      if (!page) throw new Error(`customers returned no data: ${JSON.stringify(response)}`);
      pageSizes.push(page.edges.length);
      seen.push(...page.edges.map((e) => e.node));
      expect(page.pageInfo.endCursor).toBe(page.edges.at(-1)?.cursor ?? null);
      if (!page.pageInfo.hasNextPage) break;
      expect(page.pageInfo.endCursor).not.toBeNull();
      after = page.pageInfo.endCursor;
    }

    expect(pageSizes).toEqual([7, 7, 7, 4]);
    expect(seen).toEqual(created);
    const ids = seen.map((c) => Number(c.id));
    expect(new Set(ids).size).toBe(CUSTOMER_COUNT);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    // And the database agrees on who exists and in which order.
    const rows = await db.query<{ id: number | string }>('SELECT id FROM customers ORDER BY id');
    expect(rows.map((r) => String(r.id))).toEqual(seen.map((c) => c.id));
  });

  it('ends with hasNextPage false exactly when the last customer has been returned', async () => {
    const exact = await graphql<PageData>(url, PAGE, { first: 5, after: null });
    const fifth = exact.data?.customers?.pageInfo.endCursor;
    expect(exact.data?.customers?.pageInfo.hasNextPage).toBe(true);
    // Page through to the last full page boundary: 25 = 5 × 5, so the 5th page is the last.
    let after = fifth ?? null;
    let last: PageData['customers'] = null;
    for (let i = 0; i < 4; i++) {
      const response = await graphql<PageData>(url, PAGE, { first: 5, after });
      last = response.data?.customers ?? null;
      after = last?.pageInfo.endCursor ?? null;
    }
    expect(last?.edges).toHaveLength(5);
    expect(last?.edges.at(-1)?.node.id).toBe(created.at(-1)?.id);
    expect(last?.pageInfo.hasNextPage).toBe(false);

    const beyond = await graphql<PageData>(url, PAGE, { first: 5, after });
    expect(beyond.errors).toBeUndefined();
    expect(beyond.data?.customers?.edges).toEqual([]);
    expect(beyond.data?.customers?.pageInfo).toEqual({ hasNextPage: false, endCursor: null });
  });

  it.each([
    ['random text', 'not-a-cursor'],
    ['base64 of something else', Buffer.from('order:12').toString('base64url')],
    ['base64 of a non-numeric id', Buffer.from('customer:12; DROP TABLE customers').toString('base64url')],
    ['an empty string', ''],
  ])('refuses a garbage cursor (%s) with BAD_USER_INPUT on field after', async (_what, after) => {
    const response = await graphql<PageData>(url, PAGE, { first: 7, after });
    expect(response.data ?? null).toBeNull();
    expect(response.errors).toHaveLength(1);
    expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(response.errors?.[0]?.extensions?.field).toBe('after');
  });

  it('serves a page of exactly GRAPHQL_MAX_PAGE_SIZE, caps a larger first at it, and refuses first below 1', async () => {
    const atLimit = await graphql<PageData>(url, PAGE, { first: MAX_PAGE_SIZE });
    expect(atLimit.errors).toBeUndefined();
    expect(atLimit.data?.customers?.edges).toHaveLength(MAX_PAGE_SIZE);

    const aboveLimit = await graphql<PageData>(url, PAGE, { first: MAX_PAGE_SIZE + 1 });
    expect(aboveLimit.errors).toBeUndefined();
    expect(aboveLimit.data?.customers?.edges).toHaveLength(MAX_PAGE_SIZE);
    expect(aboveLimit.data?.customers?.pageInfo.hasNextPage).toBe(true);

    const zero = await graphql<PageData>(url, PAGE, { first: 0 });
    expect(zero.errors?.[0]?.extensions?.field).toBe('first');

    const negative = await graphql<PageData>(url, PAGE, { first: -1 });
    expect(negative.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(negative.errors?.[0]?.extensions?.field).toBe('first');
  });
});

describe('customer(id)', () => {
  it('returns the customer with that id', async () => {
    const target = created[12];
    if (!target) throw new Error('setup created too few customers');
    const response = await graphql<{ customer: CustomerNode | null }>(url, ONE, { id: target.id });
    expect(response.errors).toBeUndefined();
    expect(response.data?.customer).toEqual(target);
  });

  it('returns null for an id no customer has', async () => {
    const [{ maxId } = { maxId: 0 }] = await db.query<{ maxId: number | string }>(
      'SELECT MAX(id) AS maxId FROM customers',
    );
    const unknown = String(Number(maxId) + 1000);
    const response = await graphql<{ customer: CustomerNode | null }>(url, ONE, { id: unknown });
    expect(response.errors).toBeUndefined();
    expect(response.data).toEqual({ customer: null });
  });

  it('refuses an id that is not a customer id with BAD_USER_INPUT', async () => {
    const response = await graphql<{ customer: CustomerNode | null }>(url, ONE, { id: 'abc' });
    expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(response.errors?.[0]?.extensions?.field).toBe('id');
  });
});

describe('outboxStats', () => {
  it('started from an empty outbox', () => {
    expect(statsBefore).toEqual({
      pending: 0,
      leased: 0,
      published: 0,
      dead: 0,
      oldestPendingAgeSeconds: null,
    });
  });

  it('counts every written event as pending while no relay runs, with the age of the oldest', async () => {
    const stats = await readStats();
    const outboxRows = await countRows(db, 'outbox');
    expect(outboxRows).toBe(CUSTOMER_COUNT);
    expect(stats.pending).toBe(CUSTOMER_COUNT);
    expect(stats.leased).toBe(0);
    expect(stats.published).toBe(0);
    expect(stats.dead).toBe(0);
    expect(stats.oldestPendingAgeSeconds).not.toBeNull();
    expect(stats.oldestPendingAgeSeconds).toBeGreaterThanOrEqual(0);

    // The age is measured from the oldest event, so it is at least the time since that event,
    // as the database sees it, and it keeps growing while nothing is published.
    const [{ age } = { age: -1 }] = await db.query<{ age: number | string }>(
      'SELECT TIMESTAMPDIFF(MICROSECOND, MIN(occurred_at), NOW(3)) / 1e6 AS age FROM outbox',
    );
    expect(Math.abs((stats.oldestPendingAgeSeconds ?? 0) - Number(age))).toBeLessThan(5);
    const first = stats.oldestPendingAgeSeconds ?? 0;
    await waitFor('oldestPendingAgeSeconds to grow', async () => {
      const later = await readStats();
      return (later.oldestPendingAgeSeconds ?? 0) > first + 0.2;
    });
  });

  it('leaves out of pending the events that are published or dead', async () => {
    const [oldest, second] = await db.query<{ id: number | string }>(
      'SELECT id FROM outbox ORDER BY id LIMIT 2',
    );
    await db.query('UPDATE outbox SET published_at = NOW(3) WHERE id = ?', [oldest?.id]);
    await db.query('UPDATE outbox SET dead_at = NOW(3), attempts = 10 WHERE id = ?', [second?.id]);
    try {
      const stats = await readStats();
      expect(stats.pending).toBe(CUSTOMER_COUNT - 2);
      expect(stats.published).toBe(1);
      expect(stats.dead).toBe(1);
      expect(stats.oldestPendingAgeSeconds).not.toBeNull();
    } finally {
      await db.query(
        'UPDATE outbox SET published_at = NULL, dead_at = NULL, attempts = 0 WHERE id IN (?, ?)',
        [oldest?.id, second?.id],
      );
    }
  });
});

describe('customerEvents and Customer.events: connections over the history of handled events', () => {
  const EVENTS = 12;
  const EVENT_PAGE = /* GraphQL */ `
    query Events($id: ID!, $first: Int, $after: String) {
      customerEvents(customerId: $id, first: $first, after: $after) {
        edges { cursor node { eventId customerId sequence cursor } }
        pageInfo { hasNextPage endCursor }
      }
    }
  `;
  interface EventPage {
    customerEvents: {
      edges: Array<{
        cursor: string;
        node: { eventId: string; customerId: string; sequence: number; cursor: string };
      }>;
      pageInfo: { hasNextPage: boolean; endCursor: string | null };
    } | null;
  }
  let customerId: string;
  let eventIds: string[];

  beforeAll(async () => {
    // No worker runs in this file: the history is written as the worker would write it, the
    // customer's events interleaved with another customer's.
    customerId = (created[0] as CustomerNode).id;
    const otherId = (created[1] as CustomerNode).id;
    eventIds = [];
    for (let sequence = 1; sequence <= EVENTS; sequence++) {
      const mine = handledRow(customerId, sequence);
      eventIds.push(mine.eventId);
      await appendRows(db.db, [mine, handledRow(otherId, sequence)]);
    }
  });

  it("walks one customer's handled events 5 at a time, in sequence order, each once, ending with hasNextPage false", async () => {
    const seen: Array<{ eventId: string; sequence: number }> = [];
    let after: string | undefined;
    let pages = 0;
    for (;;) {
      const response = await graphql<EventPage>(url, EVENT_PAGE, { id: customerId, first: 5, after });
      expect(response.errors).toBeUndefined();
      const page = response.data?.customerEvents;
      if (!page) throw new Error(JSON.stringify(response));
      pages++;
      for (const edge of page.edges) {
        expect(edge.node.customerId).toBe(customerId);
        expect(edge.cursor).toBe(edge.node.cursor);
        seen.push(edge.node);
      }
      expect(page.pageInfo.endCursor).toBe(page.edges.at(-1)?.cursor ?? null);
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor as string;
    }
    expect(pages).toBe(Math.ceil(EVENTS / 5));
    expect(seen.map((e) => e.eventId)).toEqual(eventIds);
    expect(seen.map((e) => e.sequence)).toEqual(Array.from({ length: EVENTS }, (_, i) => i + 1));
  });

  it('Customer.events pages the same history; a forged after is BAD_USER_INPUT naming it', async () => {
    const response = await graphql<{
      customer: {
        events: { edges: Array<{ node: { eventId: string } }>; pageInfo: { hasNextPage: boolean } };
      };
    }>(
      url,
      'query($id: ID!) { customer(id: $id) { events(first: 3) { edges { node { eventId } } pageInfo { hasNextPage } } } }',
      {
        id: customerId,
      },
    );
    expect(response.errors).toBeUndefined();
    expect(response.data?.customer.events.edges.map((e) => e.node.eventId)).toEqual(eventIds.slice(0, 3));
    expect(response.data?.customer.events.pageInfo.hasNextPage).toBe(true);

    const forged = await graphql(url, EVENT_PAGE, { id: customerId, first: 5, after: 'bm90LWEtY3Vyc29y' });
    expect(forged.errors).toEqual([
      expect.objectContaining({
        extensions: expect.objectContaining({ code: 'BAD_USER_INPUT', field: 'after' }),
      }),
    ]);
  });
});
