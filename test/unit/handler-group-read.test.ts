import { describe, expect, it } from 'vitest';
import { welcomeEmail } from '../../src/customers/handlers.js';
import type { Transaction } from '../../src/db/client.js';
import { BoundStatement } from '../../src/db/prepared.js';
import type { StoredEvent } from '../../src/outbox/handler.js';
import { loadedRows, loadStatement } from '../../src/worker/group-loads.js';

/**
 * The welcome e-mail's read for a group (Handler.loads, run by worker/group-loads.ts): its
 * keys are the ids messages claim, unchecked, the driver's rows come back typed by the schema
 * and keyed by id, and each event takes the row of its own stored aggregate id. No database:
 * a transaction that refuses reads shows the handler used the group's rows.
 */

const load = welcomeEmail.loads as NonNullable<typeof welcomeEmail.loads>;

const event = (
  customerId: string,
): StoredEvent<{ customerId: string; email: string; name: string; createdAt: string }> => ({
  eventId: `00000000-0000-4000-8000-${customerId.padStart(12, '0')}`,
  type: 'CustomerCreated',
  aggregateType: 'Customer',
  aggregateId: customerId,
  sequence: 1,
  occurredAt: new Date('2026-01-01T00:00:00Z'),
  payload: {
    customerId,
    email: 'claimed@example.com',
    name: 'Claimed',
    createdAt: '2026-01-01T00:00:00.000Z',
  },
});

/** A transaction that records the rows inserted and refuses any read of its own. */
function recordingTx(): { tx: Transaction; writes: Array<Record<string, unknown>> } {
  const writes: Array<Record<string, unknown>> = [];
  const tx = {
    insert: () => ({
      values: async (row: Record<string, unknown>) => {
        writes.push(row);
      },
    }),
    get select(): never {
      throw new Error('the handler read the customer itself');
    },
  } as unknown as Transaction;
  return { tx, writes };
}

describe('welcome e-mail, read for a group', () => {
  it('reads claimed ids that can be numeric keys, once each, and nothing when none can', () => {
    const read = loadStatement(load, ['7', '12', '7', '1e3', 'x', '123456789012345678901234']);
    expect(read).toBeInstanceOf(BoundStatement);
    expect((read as BoundStatement).values).toEqual(['7', '12']);
    expect(loadStatement(load, ['x', '1e3'])).toBeUndefined();
  });

  it("the driver's rows come back as the schema types them, by key, whatever the id's type", () => {
    const loaded = loadedRows(load, [
      { id: 12, email: 'twelve@example.com', name: 'Twelve' },
      { id: '18446744073709551615', email: 'max@example.com', name: 'Max' },
    ]);
    expect([...loaded.entries()]).toEqual([
      ['12', { id: 12n, email: 'twelve@example.com', name: 'Twelve' }],
      ['18446744073709551615', { id: 18446744073709551615n, email: 'max@example.com', name: 'Max' }],
    ]);
  });

  it("takes the row of the event's own customer among the group's rows", async () => {
    const { tx, writes } = recordingTx();
    const loaded = new Map([
      ['12', { id: 12n, email: 'twelve@example.com', name: 'Twelve' }],
      ['18446744073709551615', { id: 18446744073709551615n, email: 'max@example.com', name: 'Max' }],
      ['7', { id: 7n, email: 'seven@example.com', name: 'Seven' }],
    ]);
    const handledAt = new Date('2026-01-02T00:00:00Z');
    await welcomeEmail.handle(tx, event('7'), { handledAt, emit: async () => {}, loaded });
    await welcomeEmail.handle(tx, event('18446744073709551615'), { handledAt, emit: async () => {}, loaded });
    expect(writes.map((w) => [w.customerId, w.eventId, w.recipient])).toEqual([
      [7n, event('7').eventId, 'seven@example.com'],
      [18446744073709551615n, event('18446744073709551615').eventId, 'max@example.com'],
    ]);
  });

  it('reads the customer itself when the group read has no row for it', async () => {
    const { tx } = recordingTx();
    const loaded = new Map([['12', { id: 12n, email: 'twelve@example.com', name: 'Twelve' }]]);
    await expect(
      welcomeEmail.handle(tx, event('7'), { handledAt: new Date(), emit: async () => {}, loaded }),
    ).rejects.toThrow('the handler read the customer itself');
  });
});
