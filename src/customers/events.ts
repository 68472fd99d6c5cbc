/** The events of the Customer aggregate, as they appear in the outbox and on the exchange. */
export const CUSTOMER_AGGREGATE = 'Customer';
export const CUSTOMER_CREATED = 'CustomerCreated';
/** Written by the worker when it has handled one of a customer's events. */
export const CUSTOMER_EVENT_HANDLED = 'CustomerEventHandled';

export interface CustomerCreatedPayload {
  readonly customerId: string;
  readonly email: string;
  readonly name: string;
  readonly createdAt: string;
}

/** Payload of CustomerEventHandled: which event, which handler, when, and how it went. */
export interface CustomerEventHandledPayload {
  readonly handledEventId: string;
  readonly handledEventType: string;
  readonly handledEventOccurredAt: string;
  readonly handledEventPayload: unknown;
  readonly customerId: string;
  readonly handler: string;
  readonly handledAt: string;
  readonly outcome: 'succeeded';
}
