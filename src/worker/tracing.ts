import type { ConsumeMessage } from 'amqplib';
import {
  contextFrom,
  failSpan,
  linkToTraceparent,
  SpanKind,
  trace,
  tracer,
  within,
} from '../telemetry/tracer.js';

/**
 * The worker's handling of one message: a CONSUMER span (semantic conventions for messaging:
 * "process {queue}") continuing the context the message carries (the span that created the
 * event), so one create's trace holds the GraphQL operation, its transaction and the handling
 * with its transaction and history write. Log lines written inside carry its ids.
 */
export async function traceConsume(
  queue: string,
  message: ConsumeMessage,
  run: () => Promise<void>,
): Promise<void> {
  const { properties, fields } = message;
  const parent = contextFrom(properties.headers);
  const span = tracer.startSpan(`process ${queue}`, CONSUMER, parent);
  if (span.isRecording()) {
    span.setAttributes({
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'process',
      'messaging.operation.name': 'process',
      // RabbitMQ's conventions: the destination is the exchange the message was published to
      // (the relay's, or the default one for a retry or wait copy); the queue is where it was
      // consumed, and names the span.
      'messaging.destination.name': fields.exchange,
      'messaging.destination.subscription.name': queue,
      'messaging.rabbitmq.destination.routing_key': fields.routingKey,
      'messaging.rabbitmq.message.delivery_tag': fields.deliveryTag,
      'messaging.message.id': String(properties.messageId ?? ''),
    });
  }
  try {
    await within(span, run, parent);
  } finally {
    span.end();
  }
}

const CONSUMER = { kind: SpanKind.CONSUMER } as const;

/** The outcome on the handling span; one that could not be settled is an error. */
export function traceOutcome(outcome: string, reason?: string): void {
  const span = trace.getActiveSpan();
  if (!span?.isRecording()) return;
  span.setAttribute('outbox.worker.outcome', outcome);
  if (outcome === 'requeued') failSpan(span, reason ?? outcome, outcome);
}

/** A parked message ends its handling span with an error status and the reason. */
export function traceParked(reason: string): void {
  const span = trace.getActiveSpan();
  if (span?.isRecording()) failSpan(span, reason, 'parked');
}

/**
 * A group's one transaction (the active span, in the trace of the message that started the
 * group) linked to the handling span of each message it handles, so that every message's trace
 * reaches the transaction and the history write that committed it.
 */
export function linkGroup(group: ReadonlyArray<{ readonly traceparent?: string }>): void {
  if (group.length < 2) return;
  const span = trace.getActiveSpan();
  if (!span?.isRecording()) return;
  for (const delivery of group) {
    const link = linkToTraceparent(delivery.traceparent);
    if (link) span.addLink(link);
  }
}
