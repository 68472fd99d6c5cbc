import { unwrapResolverError } from '@apollo/server/errors';
import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import { errorNumber, isTransientDatabaseError } from '../db/errors.js';
import { DomainError } from '../errors.js';
import type { Logger } from '../log.js';
import { Condition } from '../support/log-limit.js';

/**
 * Codes of errors that GraphQL or Apollo raise about the request itself (syntax, validation,
 * variable coercion, limits). They are the client's to read and carry no internals.
 */
const CLIENT_CODES = new Set([
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'BAD_USER_INPUT',
  'BAD_REQUEST',
  'OPERATION_RESOLUTION_FAILURE',
  'PERSISTED_QUERY_NOT_FOUND',
  'PERSISTED_QUERY_NOT_SUPPORTED',
  'TOO_MANY_SUBSCRIPTIONS',
  // Raised by the server itself, with a message written for the client (a role not served here).
  'SERVICE_UNAVAILABLE',
]);

export const INTERNAL_ERROR_MESSAGE = 'Internal server error';

/**
 * An outage fails every request alike: one line per interval (`suppressed` counts the rest);
 * the pipeline clears it when an operation succeeds again.
 */
export const databaseCondition = (log: Logger): Condition =>
  new Condition(log, 'database unavailable for GraphQL operations');

/**
 * The one place where errors become what a client sees, for HTTP and WebSocket alike.
 * Domain errors keep their message and code; request errors pass; everything else is logged in
 * full (with its cause) and replaced by a bare INTERNAL_SERVER_ERROR, so no stack trace, SQL or
 * host name reaches a client.
 */
export function formatError(
  formatted: GraphQLFormattedError,
  error: unknown,
  log: Logger,
  exposeInternals: boolean,
): GraphQLFormattedError {
  const original = causeOf(error);
  const location = { locations: formatted.locations, path: formatted.path };
  if (original instanceof DomainError) {
    return {
      message: original.message,
      ...location,
      extensions: { code: original.code, ...original.details },
    };
  }
  if (isClientGone(original)) {
    // The client closed or reset its connection while we wrote to it: nobody will read this
    // answer, and nothing of ours failed.
    log.debug({ path: formatted.path }, 'client went away during a GraphQL operation');
    return { message: 'The client went away', ...location, extensions: { code: 'CLIENT_CLOSED_REQUEST' } };
  }
  if (isTransientDatabaseError(original)) {
    // Not a bug and not the client's fault: the database is away for now. Logged without the
    // error's text, which may hold the statement and its values.
    databaseCondition(log).occurred(
      'warn',
      { path: formatted.path, code: errorCode(original) },
      'database unavailable for a GraphQL operation',
    );
    return {
      message: 'The service is temporarily unavailable; retry (with the same Idempotency-Key for a mutation)',
      ...location,
      extensions: { code: 'SERVICE_UNAVAILABLE' },
    };
  }
  // Apollo refuses some requests with a GraphQLError that has an HTTP 4xx but no code (a
  // persisted query whose hash does not match its text): the client's mistake, so BAD_REQUEST.
  const code =
    original instanceof GraphQLError && !original.originalError && isClientStatus(original.extensions?.http)
      ? typeof original.extensions.code === 'string'
        ? original.extensions.code
        : 'BAD_REQUEST'
      : formatted.extensions?.code;
  const isClientError =
    typeof code === 'string' &&
    CLIENT_CODES.has(code) &&
    // A GraphQLError raised by the server itself is the client's business only if nothing
    // else (a driver error, say) was wrapped into it.
    !(
      original instanceof GraphQLError &&
      original.originalError &&
      !(original.originalError instanceof GraphQLError)
    );
  if (isClientError) {
    const field = formatted.extensions?.field;
    return {
      message: formatted.message,
      ...location,
      extensions: typeof field === 'string' ? { code, field } : { code },
    };
  }
  log.error({ err: original, path: formatted.path }, 'internal error in a GraphQL operation');
  return {
    message: exposeInternals && original instanceof Error ? original.message : INTERNAL_ERROR_MESSAGE,
    ...location,
    extensions: { code: 'INTERNAL_SERVER_ERROR' },
  };
}

/**
 * The error a GraphQLError stands for. graphql-js wraps a resolver's error with its path;
 * graphql-ws wraps a subscription stream's error with neither path nor code (so Apollo's
 * unwrapResolverError stops at it, and a database outage mid-stream was masked as internal).
 * A wrapper with a code of its own is an answer in itself and is kept.
 */
function causeOf(error: unknown): unknown {
  let current = unwrapResolverError(error);
  for (let depth = 0; depth < 8; depth++) {
    if (!(current instanceof GraphQLError) || !current.originalError) return current;
    if (typeof current.extensions.code === 'string') return current;
    current = unwrapResolverError(current.originalError);
  }
  return current;
}

/** Node's errors for a write to a stream the peer already closed or reset. */
const GONE_CODES = new Set(['ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END']);

function isClientGone(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && GONE_CODES.has(code);
}

/** The driver's code or number of an error, for logs that must not carry its message. */
function errorCode(error: unknown): string | number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : errorNumber(error);
}

function isClientStatus(http: unknown): boolean {
  const status = (http as { status?: unknown } | undefined)?.status;
  return typeof status === 'number' && status >= 400 && status < 500;
}
