import { describe, expect, it } from 'vitest';
import { welcomeEmail } from '../../src/customers/handlers.js';
import type { Transaction } from '../../src/db/client.js';
import { BoundStatement } from '../../src/db/prepared.js';
import type { StoredEvent } from '../../src/outbox/handler.js';

/**
 * The welcome e-mail's read for a group (Handler.readForGroup): its keys are the ids messages
 * claim, unchecked, and each event takes the row of its own stored aggregate id. No database:
 * a transaction that refuses reads shows the handler used the group's rows.
 */

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
  it('reads well-formed claimed ids once each, and nothing when none is', () => {
    const read = welcomeEmail.readForGroup?.(['7', '12', '7', '0', '1e3', '12345678901234567890123']);
    expect(read).toBeInstanceOf(BoundStatement);
    expect((read as BoundStatement).values).toEqual(['7', '12']);
    expect(welcomeEmail.readForGroup?.(['x', '-1'])).toBeUndefined();
  });

  it("takes the row of the event's own customer among the group's rows, whatever the id's type", async () => {
    const { tx, writes } = recordingTx();
    const groupRows = [
      { id: 12, email: 'twelve@example.com', name: 'Twelve' },
      { id: '18446744073709551615', email: 'max@example.com', name: 'Max' },
      { id: 7, email: 'seven@example.com', name: 'Seven' },
    ];
    const handledAt = new Date('2026-01-02T00:00:00Z');
    await welcomeEmail.handle(tx, event('7'), { handledAt, emit: async () => {}, groupRows });
    await welcomeEmail.handle(tx, event('18446744073709551615'), {
      handledAt,
      emit: async () => {},
      groupRows,
    });
    expect(writes.map((w) => [w.customerId, w.eventId, w.recipient])).toEqual([
      [7n, event('7').eventId, 'seven@example.com'],
      [18446744073709551615n, event('18446744073709551615').eventId, 'max@example.com'],
    ]);
  });

  it('reads the customer itself when the group read has no row for it', async () => {
    const { tx } = recordingTx();
    const groupRows = [{ id: 12, email: 'twelve@example.com', name: 'Twelve' }];
    await expect(
      welcomeEmail.handle(tx, event('7'), { handledAt: new Date(), emit: async () => {}, groupRows }),
    ).rejects.toThrow('the handler read the customer itself');
  });
});
