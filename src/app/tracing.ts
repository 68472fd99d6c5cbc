import type { GraphQLError } from 'graphql';
import type { EventHeaders } from '../outbox/event.js';
import { contextFrom, currentTraceHeaders, failSpan, SpanKind, tracer, within } from '../telemetry/tracer.js';
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
  const parent = contextFrom(appContext.eventHeaders);
  const span = tracer.startSpan('GraphQL operation', SERVER, parent);
  // Named, attributed and carried in the events only when it records: nothing to work out
  // while tracing is off.
  const recording = span.isRecording();
  if (recording) {
    const operationName = prepared.operation.name?.value;
    span.updateName(operationName ? `${prepared.kind} ${operationName}` : prepared.kind);
    span.setAttribute('graphql.operation.type', prepared.kind);
    if (operationName) span.setAttribute('graphql.operation.name', operationName);
  }
  try {
    return await within(
      span,
      async () => {
        const eventHeaders: EventHeaders | undefined = recording
          ? { ...appContext.eventHeaders, ...currentTraceHeaders() }
          : undefined;
        const outcome = await run(eventHeaders ? { ...appContext, eventHeaders } : appContext);
        const error = outcome.kind === 'stream' ? undefined : outcome.result.errors?.[0];
        if (error) failSpan(span, error.message, String(error.extensions?.code ?? 'error'));
        return outcome;
      },
      parent,
    );
  } catch (error) {
    failSpan(span, error instanceof Error ? error.message : String(error));
    throw error;
  } finally {
    span.end();
  }
}

const SERVER = { kind: SpanKind.SERVER } as const;

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
