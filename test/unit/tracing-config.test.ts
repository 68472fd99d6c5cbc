import { context, propagation, trace } from '@opentelemetry/api';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { activeTraceparent, linkToTraceparent, tracer, within } from '../../src/telemetry/tracer.js';

describe('tracing is on only when the standard OTEL_* variables ask for it', () => {
  it.each([
    [{}, false],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, true],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }, true],
    [{ OTEL_TRACES_EXPORTER: 'otlp' }, true],
    [{ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, false],
    [{ OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'otlp' }, false],
  ])('%j → %s', (env, expected) => {
    expect(loadConfig(env).tracing).toBe(expected);
  });
});

describe('the trace helpers, with no SDK and then with one', () => {
  it('with no SDK: no traceparent to store, no link, and a span is not made active', () => {
    expect(activeTraceparent()).toBeUndefined();
    const span = tracer.startSpan('off');
    expect(within(span, () => trace.getActiveSpan())).toBeUndefined();
    expect(linkToTraceparent(null)).toBeUndefined();
  });

  it('with an SDK: the active span as a W3C traceparent, and a link back to it', async () => {
    const provider = new NodeTracerProvider();
    provider.register();
    try {
      const span = tracer.startSpan('on');
      const traceparent = within(span, () => activeTraceparent());
      const { traceId, spanId } = span.spanContext();
      expect(traceparent).toBe(`00-${traceId}-${spanId}-01`);
      expect(linkToTraceparent(traceparent)?.context).toMatchObject({ traceId, spanId });
      expect(linkToTraceparent('00-not-a-traceparent-01')).toBeUndefined();
      span.end();
    } finally {
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    }
  });
});
