import { randomUUID } from 'node:crypto';
import { asc, eq, gt, sql } from 'drizzle-orm';
import { type Database, execute, type Transaction, transaction } from '../db/client.js';
import { isDuplicateKey } from '../db/errors.js';
import { insertedRowId } from '../db/ids.js';
import { prepared } from '../db/prepared.js';
import { retryingDeadlocks } from '../db/retry.js';
import { customers } from '../db/schema.js';
import { ConflictError, EmailTakenError, InvalidInputError, NotFoundError } from '../errors.js';
import { runOnce } from '../idempotency/keys.js';
import type { EventHeaders, NewEvent } from '../outbox/event.js';
import type { AppendedEvent } from '../outbox/rows.js';
import type { OutboxWriter } from '../outbox/writer.js';
import {
  CUSTOMER_AGGREGATE,
  CUSTOMER_CREATED,
  CUSTOMER_UPDATED,
  type CustomerCreatedPayload,
  type CustomerUpdatedPayload,
  isCustomerId,
} from './events.js';
import {
  type CreateCustomerInput,
  normalizeEmail,
  parseCreateCustomerInput,
  parseUpdateCustomerInput,
  type UpdateCustomerInput,
} from './validation.js';

export interface Customer {
  /** Decimal, exact (db/ids.ts): ids above 2^53 are not numbers here. */
  readonly id: string;
  readonly email: string;
  readonly name: string;
  readonly createdAt: Date;
  /** The sequence of the customer's latest event. */
  readonly version: number;
}

export interface CustomerMutationResult {
  readonly customer: Customer;
  readonly eventId: string;
}

export interface Page<T> {
  readonly items: readonly T[];
  readonly hasNextPage: boolean;
}

/** What a mutation needs besides its input. */
export interface WriteContext {
  readonly db: Database;
  readonly writer: OutboxWriter;
  readonly headers: EventHeaders;
  /** The client's Idempotency-Key, if it sent one. */
  readonly idempotencyKey?: string;
}

/** Stored with an idempotency key, and read back on a retry. */
const resultReplay = (operation: string) => ({
  operation,
  encode: (r: CustomerMutationResult) => ({
    ...r,
    customer: { ...r.customer, createdAt: r.customer.createdAt.toISOString() },
  }),
  decode: (stored: unknown) => {
    // The id is a number in answers stored before ids became strings (they were below 2^53).
    const r = stored as CustomerMutationResult & { customer: { createdAt: string; id: string | number } };
    return {
      ...r,
      customer: { ...r.customer, id: String(r.customer.id), createdAt: new Date(r.customer.createdAt) },
    };
  },
});

const insertCustomer = prepared<{ email: string; emailNormalized: string; name: string; createdAt: Date }>(
  (db) =>
    db.insert(customers).values({
      email: sql.placeholder('email'),
      emailNormalized: sql.placeholder('emailNormalized'),
      name: sql.placeholder('name'),
      createdAt: sql.placeholder('createdAt'),
      version: 1,
    }),
);

/**
 * Writes the customer and its CustomerCreated event in one transaction: either both rows
 * commit or neither does, so a customer exists if and only if its event does.
 */
export async function createCustomer(
  ctx: WriteContext,
  raw: CreateCustomerInput,
): Promise<CustomerMutationResult> {
  const input = parseCreateCustomerInput(raw);
  if (ctx.idempotencyKey === undefined) return createInOneRoundTrip(ctx, input);
  return createStepByStep(ctx, input);
}

/** createCustomer with the customer's INSERT in a round trip of its own, before the event. */
async function createStepByStep(
  ctx: WriteContext,
  input: CreateCustomerInput,
): Promise<CustomerMutationResult> {
  const appended: AppendedEvent[] = [];
  const result = await runOnce(
    ctx.db,
    ctx.idempotencyKey,
    input,
    resultReplay('createCustomer'),
    async (tx) => {
      appended.length = 0;
      const createdAt = new Date();
      let id: string;
      try {
        id = insertedRowId((await execute(tx, insertCustomerRow(input, createdAt))).insertId);
      } catch (error) {
        // The only unique key a new customer can collide on is the normalized e-mail. Concurrent
        // requests with one address race here; the database decides and the losers land in this branch.
        if (isDuplicateKey(error)) throw new EmailTakenError({ cause: error });
        throw error;
      }
      const event = await ctx.writer.append(tx, customerCreated(ctx, input, randomUUID(), createdAt, id));
      appended.push(event);
      return { customer: newCustomer(id, input, createdAt), eventId: event.envelope.eventId };
    },
  );
  ctx.writer.afterCommit(appended);
  return result;
}

/**
 * createCustomer without an Idempotency-Key: nothing needs the customer's id before the COMMIT
 * (a key's stored response would), so the customer row, its event and the COMMIT go to the
 * database in one round trip, the event taking the id from the insert (writer.appendWithInsert).
 * A duplicate key then fails the COMMIT: a taken e-mail (the usual case, confirmed by a read),
 * or else the create is done again step by step, which tells what it was.
 */
async function createInOneRoundTrip(
  ctx: WriteContext,
  input: CreateCustomerInput,
): Promise<CustomerMutationResult> {
  const createdAt = new Date();
  const eventId = randomUUID();
  let created: { event: AppendedEvent; insertedId: () => string };
  try {
    created = await retryingDeadlocks(() =>
      transaction(ctx.db, (tx) =>
        ctx.writer.appendWithInsert(tx, insertCustomerRow(input, createdAt), (id) =>
          customerCreated(ctx, input, eventId, createdAt, id),
        ),
      ),
    );
  } catch (error) {
    if (!isDuplicateKey(error)) throw error;
    // Which row's key was it? Almost always the e-mail's, which a read confirms (running the
    // create again to find out would spend a second auto-increment id on a refused request).
    // Anything else goes down the step-by-step path, which tells it apart as it always has.
    if (await emailInUse(ctx.db, normalizeEmail(input.email))) throw new EmailTakenError({ cause: error });
    return createStepByStep(ctx, input);
  }
  const id = created.insertedId();
  ctx.writer.afterCommit([created.event]);
  return { customer: newCustomer(id, input, createdAt), eventId };
}

/** The new customer's row. */
const insertCustomerRow = (input: CreateCustomerInput, createdAt: Date) =>
  insertCustomer({
    email: input.email,
    emailNormalized: normalizeEmail(input.email),
    name: input.name,
    createdAt,
  });

const newCustomer = (id: string, input: CreateCustomerInput, createdAt: Date): Customer => ({
  id,
  email: input.email,
  name: input.name,
  createdAt,
  version: 1,
});

/** A new customer's first event. */
function customerCreated(
  ctx: WriteContext,
  input: CreateCustomerInput,
  eventId: string,
  createdAt: Date,
  customerId: string,
): NewEvent {
  const payload: CustomerCreatedPayload = {
    customerId,
    email: input.email,
    name: input.name,
    createdAt: createdAt.toISOString(),
  };
  return {
    eventId,
    type: CUSTOMER_CREATED,
    aggregateType: CUSTOMER_AGGREGATE,
    aggregateId: customerId,
    sequence: 1,
    occurredAt: createdAt,
    payload,
    headers: ctx.headers,
  };
}

async function emailInUse(db: Database, emailNormalized: string): Promise<boolean> {
  const rows = await db
    .select({ id: customers.id })
    .from(customers)
    .where(eq(customers.emailNormalized, emailNormalized))
    .limit(1);
  return rows.length > 0;
}

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
  const appended: AppendedEvent[] = [];
  const result = await runOnce(
    ctx.db,
    ctx.idempotencyKey,
    input,
    resultReplay('updateCustomer'),
    async (tx) => {
      appended.length = 0;
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
      appended.push(event);
      const customer: Customer = {
        id,
        email: changes.email?.after ?? current.email,
        name: changes.name?.after ?? current.name,
        createdAt: current.createdAt,
        version,
      };
      return { customer, eventId: event.envelope.eventId };
    },
  );
  ctx.writer.afterCommit(appended);
  return result;
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
