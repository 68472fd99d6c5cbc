import { randomUUID } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import { type Database, execute, transaction } from '../db/client.js';
import { isDuplicateKey } from '../db/errors.js';
import { insertedRowId } from '../db/ids.js';
import { prepared } from '../db/prepared.js';
import { retryingDeadlocks } from '../db/retry.js';
import { customers } from '../db/schema.js';
import { EmailTakenError } from '../errors.js';
import { runOnce } from '../idempotency/keys.js';
import type { NewEvent } from '../outbox/event.js';
import { type Customer, type CustomerMutationResult, resultReplay, type WriteContext } from './customer.js';
import { CUSTOMER_AGGREGATE, CUSTOMER_CREATED, type CustomerCreatedPayload } from './events.js';
import { type CreateCustomerInput, normalizeEmail, parseCreateCustomerInput } from './validation.js';

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
  return runOnce(ctx.db, ctx.idempotencyKey, input, resultReplay('createCustomer'), async (tx) => {
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
    return { customer: newCustomer(id, input, createdAt), eventId: event.envelope.eventId };
  });
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
  let insertedId: () => string;
  try {
    ({ insertedId } = await retryingDeadlocks(() =>
      transaction(ctx.db, (tx) =>
        ctx.writer.appendWithInsert(tx, insertCustomerRow(input, createdAt), (id) =>
          customerCreated(ctx, input, eventId, createdAt, id),
        ),
      ),
    ));
  } catch (error) {
    if (!isDuplicateKey(error)) throw error;
    // Which row's key was it? Almost always the e-mail's, which a read confirms (running the
    // create again to find out would spend a second auto-increment id on a refused request).
    // Anything else goes down the step-by-step path, which tells it apart as it always has.
    if (await emailInUse(ctx.db, normalizeEmail(input.email))) throw new EmailTakenError({ cause: error });
    return createStepByStep(ctx, input);
  }
  return { customer: newCustomer(insertedId(), input, createdAt), eventId };
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
