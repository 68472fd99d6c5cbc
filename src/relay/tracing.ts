import type { PublishOutcome } from '../broker/publisher.js';
import { routingKeyOf } from '../outbox/event.js';
import type { ClaimedEvent } from '../outbox/rows.js';
import { failSpan, linkFrom, type Span, SpanKind, tracer } from '../telemetry/tracer.js';

/**
 * The relay's publish of a batch: one PRODUCER span (semantic conventions for messaging:
 * "send {destination}"), linked to the span that created each event, whose context the event
 * carries in its stored headers. The messages keep carrying the creator's context, so the
 * worker continues the create's trace; this span joins it by its links. An event the broker
 * refused ends the span with an error status and the reason.
 */
export async function tracePublish(
  exchange: string,
  batch: readonly ClaimedEvent[],
  publish: () => Promise<PublishOutcome[]>,
): Promise<PublishOutcome[]> {
  // A root, not the child of whatever handed the batch over (a create, in this process): a
  // batch serves many traces, and joins each by a link. Attributed and linked only when it
  // records: with tracing off, nothing is read from the events.
  const span = tracer.startSpan(`send ${exchange}`, PRODUCER);
  if (span.isRecording()) {
    span.setAttributes({
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'send',
      'messaging.destination.name': exchange,
      'messaging.batch.message_count': batch.length,
    });
    linkEach(span, batch);
  }
  try {
    const outcomes = await publish();
    const failure = outcomes.find((o) => !o.ok);
    if (failure && !failure.ok) failSpan(span, failure.error, failure.reason);
    return outcomes;
  } finally {
    span.end();
  }
}

const PRODUCER = { kind: SpanKind.PRODUCER, root: true } as const;

/** Links `span` to the span that created each event that carries one. */
function linkEach(span: Span, events: Iterable<ClaimedEvent>): void {
  for (const event of events) {
    const link = linkFrom(event.headers);
    if (link) span.addLink({ ...link, attributes: messageAttributes(event) });
  }
}

/** A message's id and routing key: on each link of a batch's span, since they differ per message. */
function messageAttributes(event: ClaimedEvent): Record<string, string> {
  return {
    'messaging.message.id': event.envelope.eventId,
    'messaging.rabbitmq.destination.routing_key': routingKeyOf(event.envelope.type),
  };
}

/**
 * Events the relay gave up on after their last attempt (dead, until an operator revives or skips
 * them): one span linked to the span that created each, ended with an error status and the
 * reason, so that each create's trace shows where its event stopped.
 */
export function traceDead(
  exchange: string,
  ids: readonly number[],
  batch: readonly ClaimedEvent[],
  failed: ReadonlyMap<string, number[]>,
): void {
  const span = tracer.startSpan(`dead ${exchange}`, { kind: SpanKind.INTERNAL, root: true });
  if (span.isRecording()) {
    const dead = new Set(ids);
    const reasons: string[] = [];
    for (const [error, failedIds] of failed) if (failedIds.some((id) => dead.has(id))) reasons.push(error);
    linkEach(
      span,
      batch.filter((event) => dead.has(event.id)),
    );
    span.setAttributes({
      'messaging.system': 'rabbitmq',
      'messaging.destination.name': exchange,
      'outbox.dead.count': ids.length,
    });
    failSpan(span, reasons.join('; ') || 'dead after its last attempt', 'dead');
  }
  span.end();
}
