import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { GraphQLError } from 'graphql';
import type { Database } from '../db/client.js';
import type { Logger } from '../log.js';
import type { EventHeaders } from '../outbox/event.js';
import type { Deadline } from '../support/deadline.js';

/** Everything a resolver may use. Built once per HTTP request or WebSocket operation. */
export interface AppContext {
  /** Bounded by the request's deadline, for an HTTP request (db/deadline.ts). */
  readonly db: Database;
  /** An HTTP request's deadline, for work done for it on a database of its own (the live feed's). */
  readonly deadline?: Deadline;
  readonly log: Logger;
  /** Headers for events this request writes: correlation id and, if sent, W3C traceparent. */
  readonly eventHeaders: EventHeaders;
  /** The request may use operator operations: it carried the configured ADMIN_TOKEN. */
  readonly admin: boolean;
  /** The client's `Idempotency-Key` header, if any (see idempotency/keys.ts). */
  readonly idempotencyKey?: string;
  /** Set for a subscription over SSE only: its resumption, and the SSE id of each event. */
  readonly stream?: EventStreamPosition;
}

/**
 * What a subscription over SSE and onCustomerEvent tell each other: the client's
 * `Last-Event-ID`, and the cursor the stream is at, set by the resolver when the stream starts
 * (the position it starts after) and as each event is resolved (its cursor), which the
 * transport writes as the event's SSE `id`.
 */
export interface EventStreamPosition {
  readonly lastEventId?: string;
  cursor?: string;
}

/** Printable ASCII, as the IETF Idempotency-Key draft and Stripe-style clients send (often a UUID). */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/;

/**
 * The `Idempotency-Key` header: a header rather than an argument because it belongs to the
 * request, not to the operation's data (HTTP clients, proxies and retry middleware set it
 * without knowing the schema), and it works for every mutation alike. A malformed key is a
 * client mistake, refused before anything runs.
 */
export function idempotencyKeyFrom(headers: IncomingHttpHeaders): string | undefined {
  const value = single(headers['idempotency-key']);
  if (value === undefined) return undefined;
  if (!IDEMPOTENCY_KEY.test(value)) {
    throw new GraphQLError('Idempotency-Key must be 1 to 128 printable ASCII characters', {
      extensions: { code: 'BAD_USER_INPUT', field: 'Idempotency-Key', http: { status: 400 } },
    });
  }
  return value;
}

/**
 * `Authorization: Bearer <token>` compared in constant time. No token configured means closed:
 * a deployment that forgot ADMIN_TOKEN must not hand out the dead events (their payloads hold
 * customers' data) or let anyone replay them.
 */
export function isAdmin(headers: IncomingHttpHeaders, adminToken: string | undefined): boolean {
  if (adminToken === undefined) return false;
  const given = /^Bearer (.+)$/.exec(single(headers.authorization) ?? '')?.[1] ?? '';
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(adminToken).digest();
  return timingSafeEqual(a, b);
}

// W3C Trace Context: version ff is forbidden, and all-zero trace and parent ids are invalid.
const TRACEPARENT = /^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;
const CORRELATION_ID = /^[A-Za-z0-9._:-]{1,128}$/;

const single = (value: string | string[] | undefined): string | undefined =>
  Array.isArray(value) ? value[0] : value;

/**
 * The correlation id comes from `x-correlation-id` (or `x-request-id`) when the caller sent a
 * sane one, else it is new; `traceparent` is kept only when it is well formed, so a client
 * cannot smuggle arbitrary text into every consumer's message headers.
 */
export function eventHeadersFrom(headers: IncomingHttpHeaders): EventHeaders {
  const correlationId =
    [single(headers['x-correlation-id']), single(headers['x-request-id'])].find(
      (candidate) => candidate !== undefined && CORRELATION_ID.test(candidate),
    ) ?? randomUUID();
  const traceparent = single(headers.traceparent)?.trim().toLowerCase();
  return traceparent !== undefined && TRACEPARENT.test(traceparent)
    ? { correlationId, traceparent }
    : { correlationId };
}
