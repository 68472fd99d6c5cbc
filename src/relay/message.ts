import type { OutgoingMessage } from '../broker/publisher.js';
import { routingKeyOf } from '../outbox/event.js';
import type { ClaimedEvent } from '../outbox/rows.js';

/**
 * An outbox row as the broker contract describes it: routing key from the type, the event id
 * as messageId (consumers deduplicate on it), persistent, JSON envelope, event headers as AMQP
 * headers.
 */
export function toMessage(event: ClaimedEvent): OutgoingMessage {
  const { envelope, headers } = event;
  // {"eventId":…,"occurredAt":"…"} + ,"payload":<the stored JSON text>}
  const head = JSON.stringify(envelope);
  return {
    routingKey: routingKeyOf(envelope.type),
    body: Buffer.from(`${head.slice(0, -1)},"payload":${event.payloadJson}}`),
    properties: {
      messageId: envelope.eventId,
      type: envelope.type,
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      persistent: true,
      timestamp: Math.floor(Date.parse(envelope.occurredAt) / 1000),
      correlationId: headers.correlationId,
      appId: 'graphql-outbox',
      headers: { ...headers },
    },
  };
}
