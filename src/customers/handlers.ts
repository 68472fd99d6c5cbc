import { eq, inArray, sql } from 'drizzle-orm';
import type { Transaction } from '../db/client.js';
import { isRowId } from '../db/ids.js';
import { preparedPerCount } from '../db/prepared.js';
import { customers, emailChangeNotices, welcomeEmails } from '../db/schema.js';
import { type Handler, type Handlers, PermanentFailure, type StoredEvent } from '../outbox/handler.js';
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

interface CustomerRow {
  readonly id: bigint;
  readonly email: string;
  readonly name: string;
}

/** A customer's row as readRows gives it: BIGINT as a number while exact, else as decimal text. */
interface DriverCustomerRow {
  readonly id: number | string;
  readonly email: string;
  readonly name: string;
}

async function customerOf(
  tx: Transaction,
  event: StoredEvent<{ customerId: string }>,
  groupRows: readonly unknown[] | undefined,
): Promise<CustomerRow> {
  checkAggregate(event);
  // Read with the group's stored events (readCustomers), in this same transaction.
  const read = (groupRows as readonly DriverCustomerRow[] | undefined)?.find(
    (r) => String(r.id) === event.aggregateId,
  );
  if (read) return { id: BigInt(read.id), email: read.email, name: read.name };
  const [row] = await tx
    .select({ id: customers.id, email: customers.email, name: customers.name })
    .from(customers)
    .where(eq(customers.id, BigInt(event.aggregateId)))
    .limit(1);
  if (!row) throw new PermanentFailure(`${event.type} for unknown customer ${event.aggregateId}`);
  return row;
}

/** The customers of a group's events, in the worker's first round trip (Handler.readForGroup). */
const customersIn = preparedPerCount<Record<string, string>>((n) => (db) => {
  const ids = Array.from({ length: n }, (_, i) => sql.placeholder(`id${i}`));
  return db
    .select({ id: customers.id, email: customers.email, name: customers.name })
    .from(customers)
    .where(inArray(customers.id, ids));
});

function readCustomers(aggregateIds: readonly string[]) {
  // Claimed ids, unchecked: only well-formed ones are keys of the read; any other event reads
  // its customer itself (and finds none).
  const ids = [...new Set(aggregateIds)].filter(isRowId);
  if (ids.length === 0) return undefined;
  return customersIn(ids.length)(Object.fromEntries(ids.map((id, i) => [`id${i}`, id])));
}

/**
 * The background job of the mission: a welcome e-mail for every new customer, recorded as sent.
 * Recipient and greeting come from the customer's row as it is now (a customer who changed
 * their address before the mail went out gets it at the new one), never from a message.
 */
export const welcomeEmail: Handler<CustomerCreatedPayload> = {
  name: 'welcome-email',
  payload: customerCreatedPayload,
  readForGroup: readCustomers,
  async handle(tx, event, { handledAt, groupRows }) {
    const customer = await customerOf(tx, event, groupRows);
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
export const emailChangeNotice: Handler<CustomerUpdatedPayload> = {
  name: 'email-change-notice',
  payload: customerUpdatedPayload,
  readForGroup: readCustomers,
  async handle(tx, event, { handledAt, groupRows }) {
    const customer = await customerOf(tx, event, groupRows);
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
