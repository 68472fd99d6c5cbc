import { eq } from 'drizzle-orm';
import type { Transaction } from '../db/client.js';
import { customers, emailChangeNotices, welcomeEmails } from '../db/schema.js';
import {
  type GroupLoad,
  type Handler,
  type Handlers,
  type LoadedRow,
  PermanentFailure,
  type StoredEvent,
} from '../outbox/handler.js';
import {
  CUSTOMER_AGGREGATE,
  CUSTOMER_CREATED,
  CUSTOMER_UPDATED,
  type CustomerCreatedPayload,
  type CustomerUpdatedPayload,
  customerCreatedPayload,
  customerUpdatedPayload,
} from './events.js';

/**
 * The customer's row, for an event of the Customer aggregate. The worker has already checked the
 * event against the outbox; this checks it is about a customer of this database at all.
 */
function checkAggregate(event: StoredEvent<{ customerId: string }>): void {
  if (event.aggregateType !== CUSTOMER_AGGREGATE || event.aggregateId !== event.payload.customerId) {
    throw new PermanentFailure(`${event.type} aggregate and payload customerId disagree`);
  }
}

/** What the customer handlers read of a customer. */
const customerColumns = { id: customers.id, email: customers.email, name: customers.name };
type CustomerRow = LoadedRow<typeof customerColumns>;

/** Each event's customer, read for the whole group the worker handles (Handler.loads). */
const customerOfEachEvent: GroupLoad<typeof customerColumns> = { columns: customerColumns, key: 'id' };

async function customerOf(
  tx: Transaction,
  event: StoredEvent<{ customerId: string }>,
  loaded: ReadonlyMap<string, CustomerRow> | undefined,
): Promise<CustomerRow> {
  checkAggregate(event);
  const read = loaded?.get(event.aggregateId);
  if (read) return read;
  const [row] = await tx
    .select(customerColumns)
    .from(customers)
    .where(eq(customers.id, BigInt(event.aggregateId)))
    .limit(1);
  if (!row) throw new PermanentFailure(`${event.type} for unknown customer ${event.aggregateId}`);
  return row;
}

/**
 * The background job of the mission: a welcome e-mail for every new customer, recorded as sent.
 * Recipient and greeting come from the customer's row as it is now (a customer who changed
 * their address before the mail went out gets it at the new one), never from a message.
 */
export const welcomeEmail: Handler<CustomerCreatedPayload, typeof customerColumns> = {
  name: 'welcome-email',
  payload: customerCreatedPayload,
  loads: customerOfEachEvent,
  async handle(tx, event, { handledAt, loaded }) {
    const customer = await customerOf(tx, event, loaded);
    await tx.insert(welcomeEmails).values({
      customerId: customer.id,
      eventId: event.eventId,
      recipient: customer.email,
      subject: `Welcome, ${customer.name}!`,
      body: `Hello ${customer.name},\n\nthank you for signing up. Your account is ready.\n`,
      sentAt: handledAt,
    });
  },
};

/**
 * When a customer's e-mail changed, a notice to the old address (the usual guard against an
 * account taken over through its e-mail). The addresses come from the stored event, which the
 * database wrote in the transaction that made the change.
 */
export const emailChangeNotice: Handler<CustomerUpdatedPayload, typeof customerColumns> = {
  name: 'email-change-notice',
  payload: customerUpdatedPayload,
  loads: customerOfEachEvent,
  async handle(tx, event, { handledAt, loaded }) {
    const customer = await customerOf(tx, event, loaded);
    const change = event.payload.changes.email;
    if (!change) return;
    await tx.insert(emailChangeNotices).values({
      customerId: customer.id,
      eventId: event.eventId,
      recipient: change.before,
      newEmail: change.after,
      sentAt: handledAt,
    });
  },
};

/** Every handler of the customer domain, by event type: what the worker is given. */
export const CUSTOMER_HANDLERS: Handlers = {
  [CUSTOMER_CREATED]: welcomeEmail,
  [CUSTOMER_UPDATED]: emailChangeNotice,
};
