import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { routingKeyOf } from '../../src/outbox/event.js';
import type { ClaimedEvent } from '../../src/outbox/rows.js';
import { toMessage } from '../../src/relay/message.js';
import { parseEnvelope } from '../../src/worker/envelope.js';

describe('routingKeyOf', () => {
  it.each([
    ['CustomerCreated', 'customer.created'],
    ['CustomerUpdated', 'customer.updated'],
    ['CustomerEmailChanged', 'customer.email.changed'],
    ['Created', 'created'],
    ['HTTPRequestFailed', 'http.request.failed'],
    ['Order2Shipped', 'order2.shipped'],
  ])('%s → %s', (type, key) => {
    expect(routingKeyOf(type)).toBe(key);
  });
});

function claimed(overrides: Partial<ClaimedEvent> = {}): ClaimedEvent {
  return {
    id: 7,
    envelope: {
      eventId: randomUUID(),
      type: 'CustomerCreated',
      aggregateType: 'customer',
      aggregateId: '42',
      sequence: 3,
      occurredAt: '2024-05-01T12:00:01.500Z',
    },
    payloadJson: '{"email":"ada@example.com","name":"Ada"}',
    headers: { correlationId: 'req-1', traceparent: '00-abc-def-01' },
    takenOver: false,
    ...overrides,
  };
}

describe('toMessage', () => {
  it('sets the contract properties: messageId is the eventId, persistent JSON, headers copied', () => {
    const event = claimed();
    const message = toMessage(event);
    expect(message.routingKey).toBe('customer.created');
    expect(message.properties).toEqual({
      messageId: event.envelope.eventId,
      type: 'CustomerCreated',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      persistent: true,
      // Seconds, as AMQP timestamps are.
      timestamp: Math.floor(Date.parse('2024-05-01T12:00:01.500Z') / 1000),
      correlationId: 'req-1',
      appId: 'graphql-outbox',
      headers: { correlationId: 'req-1', traceparent: '00-abc-def-01' },
    });
    // A copy: the publisher may add to its headers without touching the claimed event.
    expect(message.properties.headers).not.toBe(event.headers);
  });

  it('leaves correlationId unset for an event without one', () => {
    expect(toMessage(claimed({ headers: {} })).properties.correlationId).toBeUndefined();
  });

  it('writes the envelope with the stored payload JSON inlined, byte for byte', () => {
    const event = claimed({ payloadJson: '{"name":"Ada","email":"ada@example.com","n":1.50}' });
    const text = toMessage(event).body.toString('utf8');
    expect(text.endsWith(',"payload":{"name":"Ada","email":"ada@example.com","n":1.50}}')).toBe(true);
    expect(JSON.parse(text)).toEqual({
      ...event.envelope,
      payload: { name: 'Ada', email: 'ada@example.com', n: 1.5 },
    });
  });

  it.each(['null', '"text"', '[1,2]', '0'])('inlines a payload of %s', (payloadJson) => {
    const body = toMessage(claimed({ payloadJson })).body.toString('utf8');
    expect(JSON.parse(body).payload).toEqual(JSON.parse(payloadJson));
  });

  it('keeps non-ASCII text intact in the UTF-8 body', () => {
    const body = toMessage(claimed({ payloadJson: '{"name":"Zoë 🚀"}' })).body;
    expect(JSON.parse(body.toString('utf8')).payload).toEqual({ name: 'Zoë 🚀' });
  });

  it('is what the worker reads: the message parses as the contract envelope', () => {
    const event = claimed();
    const message = toMessage(event);
    const envelope = parseEnvelope(message.body, message.properties.messageId, 1024 * 1024);
    expect(envelope).toEqual({ ...event.envelope, payload: JSON.parse(event.payloadJson) });
  });
});
