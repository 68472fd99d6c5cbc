import type { FormattedExecutionResult, GraphQLFormattedError } from 'graphql';

/** What a subscription over HTTP writes, in one protocol's framing (sse.ts, multipart.ts). */
export interface StreamFraming {
  readonly contentType: string;
  /** How often a quiet stream writes a heartbeat, so proxies and clients do not time it out. */
  readonly heartbeatMs: number;
  /** The body's first bytes; `startId` is the position the stream starts after, when known. */
  open(startId?: string): string;
  /** One result; `id` is its event's cursor, when it has one. */
  next(result: FormattedExecutionResult, id?: string): string;
  heartbeat(): string;
  /** The operation is over: the last bytes of the body. */
  complete(): string;
  /** The source failed mid-stream (errors masked): the last bytes of the body. */
  failed(errors: readonly GraphQLFormattedError[]): string;
  /** The server is stopping: the last bytes of the body, telling the client to come back. */
  goingAway(): string;
}
