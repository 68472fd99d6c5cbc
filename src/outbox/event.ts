/** The JSON body of every message on the exchange: the broker contract (docs/api.md, "The broker contract"). */
export interface EventEnvelope<P = unknown> {
  readonly eventId: string;
  readonly type: string;
  readonly aggregateType: string;
  readonly aggregateId: string;
  /** Counts the events of one aggregate from 1. */
  readonly sequence: number;
  /** ISO 8601, UTC, milliseconds. */
  readonly occurredAt: string;
  readonly payload: P;
}

/** Message headers copied onto the AMQP message: correlation and tracing. */
export type EventHeaders = Readonly<Record<string, string>>;

/** An event to append to the outbox in the caller's transaction. */
export interface NewEvent {
  readonly eventId: string;
  readonly type: string;
  readonly aggregateType: string;
  readonly aggregateId: string;
  readonly sequence: number;
  readonly occurredAt: Date;
  readonly payload: unknown;
  readonly headers: EventHeaders;
}

/** Routing keys by event type: a relay asks for one per message, of a handful of types. */
const routingKeys = new Map<string, string>();
const MAX_CACHED_ROUTING_KEYS = 1000;

/** `CustomerCreated` → `customer.created`: the routing key of an event type. */
export function routingKeyOf(type: string): string {
  let key = routingKeys.get(type);
  if (key === undefined) {
    key = type
      .replace(/([a-z0-9])([A-Z])/g, '$1.$2')
      .replace(/([A-Z])([A-Z][a-z])/g, '$1.$2')
      .toLowerCase();
    if (routingKeys.size < MAX_CACHED_ROUTING_KEYS) routingKeys.set(type, key);
  }
  return key;
}
