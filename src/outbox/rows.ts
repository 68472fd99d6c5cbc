/**
 * What the outbox's statements share: the shapes of a row as its callers see it (claimed,
 * appended, leased) and the mapping of a row to an event's envelope. The statements themselves
 * live in one file per caller: append.ts (the writer), claim.ts and settle.ts (the relay),
 * stored.ts (the worker), dead.ts (operators), stats.ts (metrics), retention.ts.
 */
import { utcIso } from '../db/client.js';
import { outbox } from '../db/schema.js';
import type { EventEnvelope, EventHeaders, NewEvent } from './event.js';

/** A row the relay has claimed, ready to publish. */
export interface ClaimedEvent {
  readonly id: number;
  /** The envelope without its payload… */
  readonly envelope: Omit<EventEnvelope, 'payload'>;
  /** …which stays the JSON text the database holds: the relay never needs it as an object. */
  readonly payloadJson: string;
  readonly headers: EventHeaders;
  /** The row carried another relay's (expired) lease: a crashed or stalled relay's work. */
  readonly takenOver: boolean;
}

/** A row a writer appended: claimed-shaped, so a relay in the process can publish it as it is. */
export interface AppendedEvent extends ClaimedEvent {
  /** Written leased to the relay in this process, to be handed over after the commit. */
  readonly leased: boolean;
}

export interface Lease {
  readonly owner: string;
  readonly token: string;
  readonly durationMs: number;
}

export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
}

/** The columns of an event's envelope: what a claim publishes and what the worker compares. */
export const eventColumns = {
  eventId: outbox.eventId,
  type: outbox.type,
  aggregateType: outbox.aggregateType,
  aggregateId: outbox.aggregateId,
  sequence: outbox.sequence,
  occurredAt: outbox.occurredAt,
  payload: outbox.payload,
};
/** The lease columns of a row nobody holds. */
export const noLease = { leaseOwner: null, leaseToken: null, leaseExpiresAt: null } as const;

/** What a settlement needs of each event: its row and its place in its aggregate. */
export type Publishable = Pick<ClaimedEvent, 'id'> & {
  readonly envelope: Pick<EventEnvelope, 'aggregateType' | 'aggregateId' | 'sequence'>;
};

/** An event's columns as the driver gives them (readRows), by column name. */
export interface EventRow {
  readonly event_id: string;
  readonly type: string;
  readonly aggregate_type: string;
  readonly aggregate_id: string;
  readonly sequence: number;
  readonly occurred_at: Date | string;
  readonly payload: unknown;
}

/** The envelope of an event read by readRows, without its payload. */
export function envelopeOfRow(r: EventRow): Omit<EventEnvelope, 'payload'> {
  return {
    eventId: r.event_id,
    type: r.type,
    aggregateType: r.aggregate_type,
    aggregateId: r.aggregate_id,
    sequence: r.sequence,
    occurredAt: utcIso(r.occurred_at),
  };
}

/** The envelope's fields but the payload, from a row or from an event about to be written. */
export function envelopeHead(
  event: Pick<NewEvent, 'eventId' | 'type' | 'aggregateType' | 'aggregateId' | 'sequence' | 'occurredAt'>,
): Omit<EventEnvelope, 'payload'> {
  return {
    eventId: event.eventId,
    type: event.type,
    aggregateType: event.aggregateType,
    aggregateId: event.aggregateId,
    sequence: event.sequence,
    occurredAt: event.occurredAt.toISOString(),
  };
}
