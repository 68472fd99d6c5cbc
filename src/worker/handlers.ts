import { sql } from 'drizzle-orm';
import { z } from 'zod';
import {
  CUSTOMER_AGGREGATE,
  CUSTOMER_CREATED,
  CUSTOMER_EVENT_HANDLED,
  type CustomerEventHandledPayload,
} from '../customers/events.js';
import type { Transaction } from '../db/client.js';
import { customers, welcomeEmails } from '../db/schema.js';
import type { EventEnvelope, EventHeaders } from '../outbox/event.js';
import { appendEvent, type ClaimedEvent, type Lease, nextSequence } from '../outbox/store.js';
import { MalformedMessageError } from './envelope.js';

/**
 * A handler does its effect inside the worker's transaction, the same one that records the
 * inbox row, so the effect and "handled" commit together or not at all.
 */
export interface Handler {
  /** Recorded in the notification, e.g. `welcome-email`. */
  readonly name: string;
  /** Checks the payload; throw MalformedMessageError when it cannot be handled at all. */
  handle(tx: Transaction, event: EventEnvelope, handledAt: Date): Promise<void>;
}

const customerCreatedPayload = z.object({
  customerId: z.string().min(1),
  email: z.string().min(3).max(254),
  name: z.string().min(1).max(100),
});

/** The background job of the mission: a welcome e-mail for every new customer, recorded as sent. */
export const welcomeEmail: Handler = {
  name: 'welcome-email',
  async handle(tx, event, handledAt) {
    const parsed = customerCreatedPayload.safeParse(event.payload);
    if (!parsed.success || event.aggregateType !== CUSTOMER_AGGREGATE) {
      throw new MalformedMessageError('CustomerCreated payload lacks customerId, email or name');
    }
    const { customerId, email, name } = parsed.data;
    if (event.aggregateId !== customerId || !/^[1-9][0-9]{0,15}$/.test(customerId)) {
      throw new MalformedMessageError('CustomerCreated aggregateId and payload customerId disagree');
    }
    // INSERT … SELECT FROM customers: the e-mail is recorded only for a customer of this
    // database, in one statement. A message from elsewhere (a queue shared by mistake, a
    // restored backup) inserts nothing and is parked instead of mailing a stranger.
    const w = welcomeEmails;
    const [result] = await tx.execute(sql`
      INSERT INTO ${w} (${sql.identifier(w.customerId.name)}, ${sql.identifier(w.eventId.name)},
        ${sql.identifier(w.recipient.name)}, ${sql.identifier(w.subject.name)}, ${sql.identifier(w.body.name)},
        ${sql.identifier(w.sentAt.name)})
      SELECT ${customers.id}, ${event.eventId}, ${email}, ${`Welcome, ${name}!`},
        ${`Hello ${name},\n\nthank you for signing up. Your account is ready.\n`}, ${handledAt}
      FROM ${customers} WHERE ${customers.id} = ${Number(customerId)}`);
    if (result.affectedRows !== 1) {
      throw new MalformedMessageError(`CustomerCreated for unknown customer ${customerId}`);
    }
  },
};

export const HANDLERS: Readonly<Record<string, Handler>> = {
  [CUSTOMER_CREATED]: welcomeEmail,
};

/**
 * The worker's "handled" notification, written to the outbox in the handling transaction.
 * It carries what a subscriber needs (the handled event itself) so the live stream needs no
 * database read.
 */
export async function appendHandledNotification(
  tx: Transaction,
  event: EventEnvelope,
  handler: Handler,
  handledAt: Date,
  headers: EventHeaders,
  eventId: string,
  lease?: Lease,
): Promise<ClaimedEvent> {
  const customerId = event.aggregateId;
  const payload: CustomerEventHandledPayload = {
    handledEventId: event.eventId,
    handledEventType: event.type,
    handledEventOccurredAt: event.occurredAt,
    handledEventPayload: event.payload,
    customerId,
    handler: handler.name,
    handledAt: handledAt.toISOString(),
    outcome: 'succeeded',
  };
  return appendEvent(
    tx,
    {
      eventId,
      type: CUSTOMER_EVENT_HANDLED,
      aggregateType: CUSTOMER_AGGREGATE,
      aggregateId: customerId,
      sequence: await nextSequence(tx, CUSTOMER_AGGREGATE, customerId),
      occurredAt: handledAt,
      payload,
      headers,
    },
    lease,
  );
}
