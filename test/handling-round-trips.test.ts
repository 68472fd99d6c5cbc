import mysql from 'mysql2';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { CUSTOMER_HANDLERS } from '../src/customers/handlers.js';
import { connectDatabase, type DatabaseHandle, failedInDeferredWrite } from '../src/db/client.js';
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

  it('a group whose first events include a copy of one handled before fails whole at its COMMIT, and nothing of the others is written', async () => {
    const [handledBefore, ...fresh] = (await newCustomers(3)) as [Claimed, ...Claimed[]];
    const context = { db: handle.db, consumer: 'round-trips', types: Object.keys(CUSTOMER_HANDLERS), writer };
    await handleGroup(context, [handledBefore], { deferred: false });
    // Its copy among the group's first events: its e-mail and one row of the group's n-row
    // progress and inbox inserts are duplicate keys, so a deferred write fails and the COMMIT
    // never runs.
    const group = [fresh[0] as Claimed, { ...handledBefore }, fresh[1] as Claimed];
    const failed = await handleGroup(context, group, { deferred: true }).catch((error: unknown) => error);
    expect(failedInDeferredWrite(failed)).toBe(true);
    expect(await welcomeEmailsOf(fresh)).toBe(0);
    // Handled one by one, as GroupCommit does then: the copy is a duplicate, the others handled.
    const alone = await Promise.all(group.map((d) => handleGroup(context, [d], { deferred: false })));
    expect(alone.map(([d]) => d?.kind)).toEqual(['handled', 'duplicate', 'handled']);
    expect(await welcomeEmailsOf(group)).toBe(3);
  });
});
