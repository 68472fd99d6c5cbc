import mysql from 'mysql2';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { CUSTOMER_HANDLERS } from '../src/customers/handlers.js';
import { connectDatabase, type DatabaseHandle } from '../src/db/client.js';
import { OutboxWriter } from '../src/outbox/writer.js';
import { type Claimed, handleGroup } from '../src/worker/handling.js';
import { claimedNewCustomers } from './support/claims.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

let db: TestDatabase;
let handle: DatabaseHandle;
const writer = new OutboxWriter({ maxPayloadBytes: 65_536 });

beforeAll(async () => {
  db = await createTestDatabase('round_trips');
  // A pool of its own, so that every statement sent while a group is handled is the group's.
  handle = connectDatabase(db.url, 2);
});

afterEach(() => {
  vi.restoreAllMocks();
});

afterAll(async () => {
  await handle?.close();
  await db?.drop();
});

const newCustomers = (n: number) => claimedNewCustomers(handle.db, writer, n);

/** Handles `group` as the worker does, counting the queries sent to the server (round trips). */
async function roundTripsOf(group: readonly Claimed[], deferred = true): Promise<number> {
  const query = vi.spyOn(mysql.Connection.prototype, 'query');
  const decisions = await handleGroup(
    { db: handle.db, consumer: 'round-trips', types: Object.keys(CUSTOMER_HANDLERS), writer },
    group,
    { deferred },
  );
  expect(decisions.map((d) => d.kind)).toEqual(group.map(() => 'handled'));
  const sent = query.mock.calls.length;
  query.mockRestore();
  return sent;
}

async function welcomeEmailsOf(group: readonly Claimed[]): Promise<number> {
  const ids = group.map((d) => d.claim.eventId);
  const rows = await db.query('SELECT event_id FROM welcome_emails WHERE event_id IN (?)', [ids]);
  return rows.length;
}

describe("a handler's writes ride on the COMMIT", () => {
  it("a customer's first event is two round trips: the stored event with the handler's read for the group, then its e-mail with the inbox, progress and history rows and the COMMIT", async () => {
    // Warms the pool: a new connection's session settings are no round trip of a handling.
    await roundTripsOf(await newCustomers(1));
    const group = await newCustomers(1);
    expect(await roundTripsOf(group)).toBe(2);
    expect(await welcomeEmailsOf(group)).toBe(1);
  });

  it('a group of N first events is two round trips too', async () => {
    const group = await newCustomers(5);
    expect(await roundTripsOf(group)).toBe(2);
    expect(await welcomeEmailsOf(group)).toBe(5);
  });

  it('handled again statement by statement (after a deferred write failed), each write goes in its turn', async () => {
    const group = await newCustomers(2);
    // Per event at least the inbox row and the e-mail; plus the stored events' read and the
    // history with the COMMIT.
    expect(await roundTripsOf(group, false)).toBeGreaterThanOrEqual(2 + 2 * 2);
    expect(await welcomeEmailsOf(group)).toBe(2);
  });
});
