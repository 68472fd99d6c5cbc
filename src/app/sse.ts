import type { FormattedExecutionResult } from 'graphql';
import { type ExecutionResult, print } from 'graphql-sse';
import type { StreamFraming } from './framing.js';

/**
 * How long a browser's EventSource waits before it reconnects after the stream ends or breaks
 * (the SSE `retry` field; browsers default to a few seconds). It matches a 503's Retry-After.
 */
export const SSE_RETRY_MS = 1000;

/**
 * GraphQL over SSE, distinct-connections mode, as graphql-sse writes it (its `print`): `next`
 * events carrying a result, then `complete`. What graphql-sse has no field for is added here:
 * the SSE `id`, which a browser keeps and sends back as `Last-Event-ID` when it reconnects. A
 * stream first sends the position it starts after as an id with no data, which sets the
 * browser's last event id without an event: a stream that breaks before its first event
 * resumes from where it began, not from a later "now".
 */
export const sseFraming: StreamFraming = {
  contentType: 'text/event-stream; charset=utf-8',
  // graphql-sse's own interval: below the idle timeouts of common proxies (30–60 s).
  heartbeatMs: 12_000,
  // An SSE comment first: some browsers show nothing until the first byte of the body.
  open: (startId) => `:\n\nretry: ${SSE_RETRY_MS}\n${startId === undefined ? '' : idLine(startId)}\n`,
  next: (result, id) => (id === undefined ? '' : idLine(id)) + nextEvent(result),
  heartbeat: () => ':\n\n',
  complete: () => print({ event: 'complete', data: null }),
  // No `complete` after a failure or at a stop: the operation is not over, and a client that
  // reconnects (EventSource does so by itself) resumes after its last id.
  failed: (errors) => nextEvent({ errors: [...errors] }),
  goingAway: () => '',
};

/** An id is one line: a cursor (base64url) always is; anything else would end the field early. */
function idLine(id: string): string {
  return /^[\x21-\x7e]*$/.test(id) ? `id: ${id}\n` : '';
}

/** graphql-sse types a result's errors as GraphQLError objects; `print` only serializes them. */
const nextEvent = (result: FormattedExecutionResult) =>
  print({ event: 'next', data: result as unknown as ExecutionResult });
