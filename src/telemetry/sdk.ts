import type { Logger } from '../log.js';

/** Stops the SDK, flushing what it holds; a no-op when tracing is off. */
export type StopTracing = () => Promise<void>;

/**
 * Starts the OpenTelemetry SDK (OTLP exporter, W3C trace context) when the configuration asks
 * for traces. Loaded lazily: a service without OTEL_* variables never imports the SDK, and the
 * API in the code (telemetry/tracer.ts) stays its no-op, costing a function call per span.
 * The SDK reads its own variables (OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT,
 * OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_TRACES_SAMPLER, …); no automatic instrumentation is loaded,
 * the spans are the service's own.
 */
export async function startTracing(enabled: boolean, log: Logger): Promise<StopTracing> {
  if (!enabled) return async () => {};
  const { NodeSDK, resources } = await import('@opentelemetry/sdk-node');
  // The name when none is given: a base the detected resource is merged onto, so that
  // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win (the SDK's `serviceName` would override them).
  const resource = resources
    .defaultResource()
    .merge(resources.resourceFromAttributes({ 'service.name': 'graphql-outbox' }));
  const sdk = new NodeSDK({ resource, instrumentations: [] });
  sdk.start();
  log.info('OpenTelemetry tracing started (OTLP)');
  return async () => {
    await sdk.shutdown().catch((error: unknown) => log.warn({ err: error }, 'OpenTelemetry shutdown failed'));
  };
}
