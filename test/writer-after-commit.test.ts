import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectDatabase, type DatabaseHandle, transaction } from '../src/db/client.js';
import { retryingDeadlocks } from '../src/db/retry.js';
import type { AppendedEvent } from '../src/outbox/rows.js';
import { OutboxWriter } from '../src/outbox/writer.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { testEvent } from './support/rows.js';

let db: TestDatabase;
let handle: DatabaseHandle;

beforeAll(async () => {
  db = await createTestDatabase('writer_after_commit');
  handle = connectDatabase(db.url, 2);
});

afterAll(async () => {
  await handle?.close();
  await db?.drop();
});

/** A writer whose local relay and hint record what they were given. */
function recordingWriter() {
  const published: AppendedEvent[][] = [];
  const calls = { wake: 0, notify: 0 };
  const writer = new OutboxWriter({
    maxPayloadBytes: 65_536,
    handoff: {
      lease: { owner: 'test', token: randomUUID(), durationMs: 60_000 },
      publish: (events) => published.push([...events]),
      wake: () => calls.wake++,
    },
    relayHint: { notify: () => calls.notify++ },
  });
  return { writer, published, calls };
}

const event = (aggregateId: string = randomUUID(), sequence = 1) => testEvent(aggregateId, sequence);

const insertCustomer = (name: string) =>
  sql`INSERT INTO customers (email, email_normalized, name, created_at, version)
      VALUES (${`${name}@example.com`}, ${`${name}@example.com`}, ${name}, NOW(), 1)`;

const rowsOf = async (eventIds: readonly string[]) =>
  (await db.query<{ event_id: string }>('SELECT event_id FROM outbox WHERE event_id IN (?)', [eventIds]))
    .length;

describe('an appended event moves once its transaction committed, and only then', () => {
  it('appended in a transaction that commits: handed to the local relay after the COMMIT, the transaction’s events together', async () => {
    const { writer, published, calls } = recordingWriter();
    const first = event();
    const second = event();
    await transaction(handle.db, async (tx) => {
      await writer.append(tx, first);
      await writer.append(tx, second);
      expect(published).toEqual([]);
    });
    expect(published.map((batch) => batch.map((e) => e.envelope.eventId))).toEqual([
      [first.eventId, second.eventId],
    ]);
    expect(calls).toEqual({ wake: 0, notify: 0 });
  });

  it('appended (or appended with an insert) in a transaction that rolls back: not handed over, no one woken or hinted', async () => {
    const { writer, published, calls } = recordingWriter();
    const appended = event();
    const failure = new Error('the body fails after appending');
    await expect(
      transaction(handle.db, async (tx) => {
        await writer.append(tx, appended);
        await writer.appendWithInsert(tx, insertCustomer(`rolled.${randomUUID()}`), (id) => event(id));
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(published).toEqual([]);
    expect(calls).toEqual({ wake: 0, notify: 0 });
    expect(await rowsOf([appended.eventId])).toBe(0);
  });

  it('a body done again after a deadlock hands over only the committed attempt’s event, once', async () => {
    const { writer, published, calls } = recordingWriter();
    const attempts: ReturnType<typeof event>[] = [];
    await retryingDeadlocks(() =>
      transaction(handle.db, async (tx) => {
        const next = event();
        attempts.push(next);
        await writer.append(tx, next);
        if (attempts.length === 1) throw Object.assign(new Error('Deadlock found'), { errno: 1213 });
      }),
    );
    expect(attempts).toHaveLength(2);
    expect(published.map((batch) => batch.map((e) => e.envelope.eventId))).toEqual([[attempts[1]?.eventId]]);
    expect(calls).toEqual({ wake: 0, notify: 0 });
    expect(await rowsOf(attempts.map((e) => e.eventId))).toBe(1);
  });

  it('an event written held (its predecessor unpublished) wakes the lanes and hints the others after the COMMIT, not before', async () => {
    const { writer, published, calls } = recordingWriter();
    const aggregateId = randomUUID();
    await transaction(handle.db, async (tx) => {
      await writer.append(tx, event(aggregateId, 1));
      await writer.append(tx, event(aggregateId, 2));
      expect(calls).toEqual({ wake: 0, notify: 0 });
    });
    expect(published.map((batch) => batch.length)).toEqual([1]);
    expect(calls).toEqual({ wake: 1, notify: 1 });
  });
});
