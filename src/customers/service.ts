import { randomUUID } from 'node:crypto';
import { asc, eq, gt } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { isDuplicateKey } from '../db/errors.js';
import { customers } from '../db/schema.js';
import { EmailTakenError, InvalidInputError } from '../errors.js';
import type { EventHeaders } from '../outbox/event.js';
import { appendEvent } from '../outbox/store.js';
import type { Handoff } from '../relay/handoff.js';
import { CUSTOMER_AGGREGATE, CUSTOMER_CREATED, type CustomerCreatedPayload } from './events.js';
import { type CreateCustomerInput, normalizeEmail, parseCreateCustomerInput } from './validation.js';

export interface Customer {
  readonly id: number;
  readonly email: string;
  readonly name: string;
  readonly createdAt: Date;
}

export interface CreateCustomerResult {
  readonly customer: Customer;
  readonly eventId: string;
}

export interface Page<T> {
  readonly items: readonly T[];
  readonly hasNextPage: boolean;
}

/**
 * Writes the customer and its CustomerCreated event in one transaction: either both rows
 * commit or neither does, so a customer exists if and only if its event does.
 */
export async function createCustomer(
  db: Database,
  raw: CreateCustomerInput,
  headers: EventHeaders,
  handoff?: Handoff,
): Promise<CreateCustomerResult> {
  const input = parseCreateCustomerInput(raw);
  const eventId = randomUUID();
  const createdAt = new Date();
  const { customer, event } = await db.transaction(async (tx) => {
    let id: number;
    try {
      const [inserted] = await tx
        .insert(customers)
        .values({
          email: input.email,
          emailNormalized: normalizeEmail(input.email),
          name: input.name,
          createdAt,
        })
        .$returningId();
      if (!inserted) throw new Error('INSERT into customers returned no id');
      id = inserted.id;
    } catch (error) {
      // The only unique key a new customer can collide on is the normalized e-mail. Concurrent
      // requests with one address race here; the database decides and the losers land in this branch.
      if (isDuplicateKey(error)) throw new EmailTakenError({ cause: error });
      throw error;
    }
    const created: Customer = { id, email: input.email, name: input.name, createdAt };
    const payload: CustomerCreatedPayload = {
      customerId: String(id),
      email: created.email,
      name: created.name,
      createdAt: createdAt.toISOString(),
    };
    const appended = await appendEvent(
      tx,
      {
        eventId,
        type: CUSTOMER_CREATED,
        aggregateType: CUSTOMER_AGGREGATE,
        aggregateId: String(id),
        sequence: 1,
        occurredAt: createdAt,
        payload,
        headers,
      },
      handoff?.lease,
    );
    return { customer: created, event: appended };
  });
  handoff?.publish([event]);
  return { customer, eventId };
}

/** What the API shows of a customer (not the normalized e-mail). */
const customerColumns = {
  id: customers.id,
  email: customers.email,
  name: customers.name,
  createdAt: customers.createdAt,
};

export async function findCustomer(db: Database, id: number): Promise<Customer | undefined> {
  const [row] = await db.select(customerColumns).from(customers).where(eq(customers.id, id)).limit(1);
  return row;
}

/**
 * Keyset pagination in id order. The cursor is the last id seen; reading one row more than
 * asked tells whether another page exists without a COUNT.
 */
export async function listCustomers(
  db: Database,
  first: number,
  afterId: number | undefined,
): Promise<Page<Customer>> {
  const rows = await db
    .select(customerColumns)
    .from(customers)
    .where(afterId === undefined ? undefined : gt(customers.id, afterId))
    .orderBy(asc(customers.id))
    .limit(first + 1);
  return { items: rows.slice(0, first), hasNextPage: rows.length > first };
}

/** Parses a GraphQL ID argument that must be a customer id. */
export function parseCustomerId(value: string, field: string): number {
  if (!/^[1-9][0-9]{0,15}$/.test(value)) throw new InvalidInputError(field, 'Not a valid customer id');
  return Number(value);
}
