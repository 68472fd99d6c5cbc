import type { GraphQLError } from 'graphql';
import type { EventHeaders } from '../outbox/event.js';
import { contextFrom, currentTraceHeaders, failSpan, SpanKind, tracer } from '../telemetry/tracer.js';
import type { AppContext } from './context.js';
import type { OperationOutcome, PreparedOperation } from './pipeline.js';

/**
 * The GraphQL operation's span (semantic conventions for GraphQL: named "{type} {name}"),
 * a child of the client's traceparent when it sent one. The events the operation writes carry
 * this span's context instead (outbox headers, then AMQP headers), so the relay links to it and
 * the worker continues it. A result with errors ends it with an error status and the first code.
 */
export async function traceOperation(
  prepared: PreparedOperation,
  appContext: AppContext,
  run: (appContext: AppContext) => Promise<OperationOutcome>,
): Promise<OperationOutcome> {
  const operationName = prepared.operation.name?.value;
  const name = operationName ? `${prepared.kind} ${operationName}` : prepared.kind;
  const attributes: Record<string, string> = { 'graphql.operation.type': prepared.kind };
  if (operationName) attributes['graphql.operation.name'] = operationName;
  const parent = contextFrom(appContext.eventHeaders);
  return tracer.startActiveSpan(name, { kind: SpanKind.SERVER, attributes }, parent, async (span) => {
    try {
      const eventHeaders: EventHeaders = span.isRecording()
        ? { ...appContext.eventHeaders, ...currentTraceHeaders() }
        : appContext.eventHeaders;
      const outcome = await run({ ...appContext, eventHeaders });
      const error = outcome.kind === 'stream' ? undefined : outcome.result.errors?.[0];
      if (error) failSpan(span, error.message, String(error.extensions?.code ?? 'error'));
      return outcome;
    } catch (error) {
      failSpan(span, error instanceof Error ? error.message : String(error));
      throw error;
    } finally {
      span.end();
    }
  });
}

/** A refused request (parse, validation, limits) still leaves a span, with the reason. */
export function traceRefusal(errors: readonly GraphQLError[]): void {
  const span = tracer.startSpan('GraphQL operation refused', { kind: SpanKind.SERVER });
  if (span.isRecording()) {
    const first = errors[0];
    failSpan(
      span,
      first?.message ?? 'refused',
      String(first?.extensions?.code ?? 'GRAPHQL_VALIDATION_FAILED'),
    );
  }
  span.end();
}
