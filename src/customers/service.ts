import { randomUUID } from 'node:crypto';
import { asc, eq, gt } from 'drizzle-orm';
import type { Database, Transaction } from '../db/client.js';
import { isDuplicateKey } from '../db/errors.js';
import { customers } from '../db/schema.js';
import { ConflictError, EmailTakenError, InvalidInputError, NotFoundError } from '../errors.js';
import { runOnce } from '../idempotency/keys.js';
import {
  type Customer,
  type CustomerMutationResult,
  type Page,
  resultReplay,
  type WriteContext,
} from './customer.js';
import { CUSTOMER_AGGREGATE, CUSTOMER_UPDATED, type CustomerUpdatedPayload, isCustomerId } from './events.js';
import { normalizeEmail, parseUpdateCustomerInput, type UpdateCustomerInput } from './validation.js';

export { createCustomer } from './create.js';
export type { Customer, CustomerMutationResult, Page, WriteContext } from './customer.js';

/**
 * Changes a customer's name and/or e-mail and appends CustomerUpdated with the next sequence and
 * the fields that changed (before and after), in one transaction. The customer's row is locked
 * first, so concurrent updates of one customer take turns and each gets its own sequence;
 * `expectedSequence`, when given, must be the customer's current one (lost-update protection).
 */
export async function updateCustomer(
  ctx: WriteContext,
  raw: UpdateCustomerInput,
): Promise<CustomerMutationResult> {
  const input = parseUpdateCustomerInput(raw);
  const id = parseCustomerId(input.id, 'input.id');
  const rowId = BigInt(id);
  return runOnce(ctx.db, ctx.idempotencyKey, input, resultReplay('updateCustomer'), async (tx) => {
    const current = await lockCustomer(tx, rowId);
    if (!current) throw new NotFoundError('input.id', `No customer with id ${id}`);
    if (input.expectedSequence !== undefined && input.expectedSequence !== current.version) {
      throw new ConflictError(
        `The customer is at sequence ${current.version}, not ${input.expectedSequence}: read it again and retry`,
        { field: 'input.expectedSequence', currentSequence: current.version },
      );
    }
    const changes: {
      -readonly [K in keyof CustomerUpdatedPayload['changes']]: CustomerUpdatedPayload['changes'][K];
    } = {};
    if (input.email !== undefined && input.email !== current.email) {
      changes.email = { before: current.email, after: input.email };
    }
    if (input.name !== undefined && input.name !== current.name) {
      changes.name = { before: current.name, after: input.name };
    }
    if (Object.keys(changes).length === 0) {
      // Nothing changes: no event, and the answer says so by returning the last event's sequence.
      throw new InvalidInputError('input', 'The update changes nothing');
    }
    const version = current.version + 1;
    const updatedAt = new Date();
    try {
      await tx
        .update(customers)
        .set({
          email: changes.email?.after ?? current.email,
          emailNormalized: normalizeEmail(changes.email?.after ?? current.email),
          name: changes.name?.after ?? current.name,
          version,
        })
        .where(eq(customers.id, rowId));
    } catch (error) {
      if (isDuplicateKey(error)) throw new EmailTakenError({ cause: error });
      throw error;
    }
    const payload: CustomerUpdatedPayload = {
      customerId: id,
      changes,
      updatedAt: updatedAt.toISOString(),
    };
    const event = await ctx.writer.append(tx, {
      eventId: randomUUID(),
      type: CUSTOMER_UPDATED,
      aggregateType: CUSTOMER_AGGREGATE,
      aggregateId: id,
      sequence: version,
      occurredAt: updatedAt,
      payload,
      headers: ctx.headers,
    });
    const customer: Customer = {
      id,
      email: changes.email?.after ?? current.email,
      name: changes.name?.after ?? current.name,
      createdAt: current.createdAt,
      version,
    };
    return { customer, eventId: event.envelope.eventId };
  });
}

/** What the API shows of a customer (not the normalized e-mail). */
const customerColumns = {
  id: customers.id,
  email: customers.email,
  name: customers.name,
  createdAt: customers.createdAt,
  version: customers.version,
};

const customerOfRow = (row: { id: bigint } & Omit<Customer, 'id'>): Customer => ({
  ...row,
  id: row.id.toString(),
});

async function lockCustomer(tx: Transaction, id: bigint): Promise<Customer | undefined> {
  const [row] = await tx.select(customerColumns).from(customers).where(eq(customers.id, id)).for('update');
  return row && customerOfRow(row);
}

/** The customer with this id (from parseCustomerId), if there is one. */
export async function findCustomer(db: Database, id: string): Promise<Customer | undefined> {
  const [row] = await db
    .select(customerColumns)
    .from(customers)
    .where(eq(customers.id, BigInt(id)))
    .limit(1);
  return row && customerOfRow(row);
}

/**
 * Keyset pagination in id order. The cursor is the last id seen; reading one row more than
 * asked tells whether another page exists without a COUNT. (Ids, unlike the history, are fine
 * for paging: a page is a snapshot, not a stream that must never skip a late commit.)
 */
export async function listCustomers(
  db: Database,
  first: number,
  afterId: string | undefined,
): Promise<Page<Customer>> {
  const rows = await db
    .select(customerColumns)
    .from(customers)
    .where(afterId === undefined ? undefined : gt(customers.id, BigInt(afterId)))
    .orderBy(asc(customers.id))
    .limit(first + 1);
  return { items: rows.slice(0, first).map(customerOfRow), hasNextPage: rows.length > first };
}

/**
 * A GraphQL ID argument that must be a customer id: 1 to 2^64 − 1 (what the column holds), in
 * decimal without a leading zero. Returned as given, never as a number (db/ids.ts).
 */
export function parseCustomerId(value: unknown, field: string): string {
  if (typeof value !== 'string' || !isCustomerId(value)) {
    throw new InvalidInputError(field, 'Not a valid customer id');
  }
  return value;
}
