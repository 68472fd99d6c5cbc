import {
  type Context,
  context,
  type Link,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';

export type { Context, Link, Span };
export { context, SpanKind, SpanStatusCode, trace };

/** The service's tracer: the API's no-op until telemetry/sdk.ts registers a provider. */
export const tracer = trace.getTracer('graphql-outbox');

const getter = {
  keys: (carrier: Record<string, unknown>) => Object.keys(carrier),
  get: (carrier: Record<string, unknown>, key: string) => {
    const value = carrier[key];
    return typeof value === 'string' ? value : undefined;
  },
};

/** The trace context carried in event or message headers (W3C traceparent), or none. */
export function contextFrom(headers: Record<string, unknown> | undefined): Context {
  return headers ? propagation.extract(context.active(), headers, getter) : context.active();
}

/** A link to the span whose context `headers` carry, when they carry one. */
export function linkFrom(headers: Record<string, unknown> | undefined): Link | undefined {
  const spanContext = trace.getSpanContext(contextFrom(headers));
  return spanContext ? { context: spanContext } : undefined;
}

/** The active span's context as headers to store with an event (traceparent, tracestate). */
export function currentTraceHeaders(): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier;
}

/**
 * Runs `run` with `span` active in `parent`. A span with no valid context (the API's no-op:
 * no SDK) is not made active: it has nothing to pass on, and a context costs a copy of a map.
 * A span the sampler left out still has one and is made active, so its children are left out
 * too rather than starting traces of their own.
 */
export function within<T>(span: Span, run: () => T, parent: Context = context.active()): T {
  return trace.isSpanContextValid(span.spanContext())
    ? context.with(trace.setSpan(parent, span), run)
    : run();
}

/**
 * The active span's context as a W3C traceparent, to store with what it wrote (a history row),
 * or undefined when no span records: nothing is formatted while tracing is off.
 */
export function activeTraceparent(): string | undefined {
  const span = trace.getActiveSpan();
  if (!span?.isRecording()) return undefined;
  const { traceId, spanId, traceFlags } = span.spanContext();
  return `00-${traceId}-${spanId}-${(traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** A link to the span a stored traceparent names, or undefined for none or a malformed one. */
export function linkToTraceparent(traceparent: string | null | undefined): Link | undefined {
  return traceparent ? linkFrom({ traceparent }) : undefined;
}

/** Ends `span` with an error status and the reason, as the semantic conventions ask. */
export function failSpan(span: Span, reason: string, type = 'error'): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: reason });
  span.setAttribute('error.type', type);
}
