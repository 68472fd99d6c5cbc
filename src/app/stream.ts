import type { ExecutionResult, FormattedExecutionResult, GraphQLFormattedError } from 'graphql';

/**
 * A subscription's results as a transport writes them (errors masked). A transport that stops
 * early (the client left, the server stops) calls `return()`, which ends the subscription at
 * once, even while a read is waiting for the next event.
 */
export type OperationStream = AsyncIterableIterator<FormattedExecutionResult>;

/**
 * The subscription's source failed after it started (the database away mid-stream). Thrown by
 * the stream's next(), with the errors already masked: SERVICE_UNAVAILABLE during an outage,
 * else INTERNAL_SERVER_ERROR (logged in full). The transport ends the stream with them in its
 * own way (a graphql-ws `error` message, a last SSE `next` and `complete`).
 */
export class OperationFailure extends Error {
  override readonly name = 'OperationFailure';
  constructor(readonly errors: readonly GraphQLFormattedError[]) {
    super(errors[0]?.message ?? 'The subscription failed');
  }
}

/**
 * The subscription's results, formatted one by one. Written by hand rather than as an async
 * generator: a generator's return() waits until the pending next() settles, which for a quiet
 * subscription is never, so a client that left would keep its feed subscription alive.
 */
export function streamOf(
  source: AsyncIterableIterator<ExecutionResult>,
  format: (result: ExecutionResult) => FormattedExecutionResult,
  formatErrors: (errors: readonly unknown[]) => GraphQLFormattedError[],
): OperationStream {
  const stream: OperationStream = {
    async next() {
      try {
        const step = await source.next();
        return step.done ? { done: true, value: undefined } : { done: false, value: format(step.value) };
      } catch (error) {
        throw new OperationFailure(formatErrors([error]));
      }
    },
    async return() {
      await source.return?.();
      return { done: true, value: undefined };
    },
    [Symbol.asyncIterator]() {
      return stream;
    },
  };
  return stream;
}
