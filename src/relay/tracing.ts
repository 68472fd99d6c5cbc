import type { PublishOutcome } from '../broker/publisher.js';
import type { ClaimedEvent } from '../outbox/rows.js';
import { failSpan, type Link, linkFrom, SpanKind, tracer } from '../telemetry/tracer.js';

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
  const links: Link[] = [];
  for (const event of batch) {
    const link = linkFrom(event.headers);
    if (link) links.push({ ...link, attributes: { 'messaging.message.id': event.envelope.eventId } });
  }
  const span = tracer.startSpan(`send ${exchange}`, {
    kind: SpanKind.PRODUCER,
    // A root, not the child of whatever handed the batch over (a create, in this process): a
    // batch serves many traces, and joins each by a link.
    root: true,
    links,
    attributes: {
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'publish',
      'messaging.destination.name': exchange,
      'messaging.batch.message_count': batch.length,
    },
  });
  try {
    const outcomes = await publish();
    const failure = outcomes.find((o) => !o.ok);
    if (failure && !failure.ok) failSpan(span, failure.error, failure.reason);
    return outcomes;
  } finally {
    span.end();
  }
}
