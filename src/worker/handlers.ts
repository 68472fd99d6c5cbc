import { eq } from 'drizzle-orm';
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
    // The event must describe a customer of this database: a message from another environment
    // (a queue shared by mistake, a restored backup) is parked instead of mailing a stranger.
    const [customer] = await tx
      .select({ id: customers.id })
      .from(customers)
      .where(eq(customers.id, Number(customerId)))
      .limit(1);
    if (!customer || event.aggregateId !== customerId) {
      throw new MalformedMessageError(`CustomerCreated for unknown customer ${customerId}`);
    }
    await tx.insert(welcomeEmails).values({
      customerId: Number(customerId),
      eventId: event.eventId,
      recipient: email,
      subject: `Welcome, ${name}!`,
      body: `Hello ${name},\n\nthank you for signing up. Your account is ready.\n`,
      sentAt: handledAt,
    });
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
