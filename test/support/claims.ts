import type { ConsumeMessage } from 'amqplib';
import { CUSTOMER_HANDLERS } from '../../src/customers/handlers.js';
import { createCustomer } from '../../src/customers/service.js';
import { type Database, transaction } from '../../src/db/client.js';
import type { EventEnvelope } from '../../src/outbox/event.js';
import { findEvents } from '../../src/outbox/stored.js';
import type { OutboxWriter } from '../../src/outbox/writer.js';
import type { Claimed } from '../../src/worker/handling.js';
import { uniqueSuffix } from './service.js';

/** `n` new customers; their CustomerCreated events as the worker would claim them, for handleGroup. */
export async function claimedNewCustomers(db: Database, writer: OutboxWriter, n: number): Promise<Claimed[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const suffix = uniqueSuffix();
    const { eventId } = await createCustomer(
      { db, writer, headers: {} },
      { name: `Customer ${suffix}`, email: `customer.${suffix}@example.com` },
    );
    ids.push(eventId);
  }
  const stored = await transaction(db, (tx) => findEvents(tx, ids));
  return ids.map((id) => ({
    message: {} as ConsumeMessage,
    claim: stored.get(id) as EventEnvelope,
    handler: CUSTOMER_HANDLERS.CustomerCreated as Claimed['handler'],
    attempts: 1,
    verified: false,
  }));
}
