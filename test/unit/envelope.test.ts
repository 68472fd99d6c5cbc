import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PermanentFailure } from '../../src/outbox/handler.js';
import { parseEnvelope } from '../../src/worker/envelope.js';

const MAX_BYTES = 4096;

function envelope(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    eventId: randomUUID(),
    type: 'CustomerCreated',
    aggregateType: 'customer',
    aggregateId: '42',
    sequence: 1,
    occurredAt: '2024-05-01T12:00:00.000Z',
    payload: { customerId: '42', email: 'ada@example.com' },
    ...overrides,
  };
}

const body = (value: unknown) => Buffer.from(JSON.stringify(value));

/** parseEnvelope's PermanentFailure message for a body; fails the test if it parses. */
function parkReason(content: Buffer, messageId: string | undefined, maxBytes = MAX_BYTES): string {
  try {
    parseEnvelope(content, messageId, maxBytes);
  } catch (error) {
    // Permanent: the worker parks it at once rather than retrying what cannot get better.
    expect(error).toBeInstanceOf(PermanentFailure);
    return (error as Error).message;
  }
  throw new Error(`parseEnvelope accepted ${content.toString()}`);
}

describe('parseEnvelope', () => {
  it('reads a contract envelope whose eventId is the messageId', () => {
    const value = envelope();
    expect(parseEnvelope(body(value), value.eventId as string, MAX_BYTES)).toEqual(value);
  });

  it('accepts any JSON payload, null included, and an occurredAt with an offset', () => {
    for (const payload of [null, 0, 'text', [1, 2], { nested: { deep: true } }]) {
      const value = envelope({ payload, occurredAt: '2024-05-01T14:00:00.000+02:00' });
      expect(parseEnvelope(body(value), value.eventId as string, MAX_BYTES).payload).toEqual(payload);
    }
  });

  it('parks a body over maxBytes before reading it, and takes one of exactly maxBytes', () => {
    const value = envelope();
    const content = body(value);
    expect(parkReason(content, value.eventId as string, content.length - 1)).toBe(
      `body is ${content.length} bytes, over the ${content.length - 1} allowed`,
    );
    expect(parseEnvelope(content, value.eventId as string, content.length).eventId).toBe(value.eventId);
  });

  it.each([
    ['empty', ''],
    ['plain text', 'hello'],
    ['truncated JSON', '{"eventId":'],
  ])('parks a body that is not JSON (%s)', (_what, text) => {
    expect(parkReason(Buffer.from(text), undefined)).toBe('body is not JSON');
  });

  it.each([
    ['null', null],
    ['an array', [envelope()]],
    ['a string', 'CustomerCreated'],
  ])('parks JSON that is not an object (%s)', (_what, value) => {
    expect(parkReason(body(value), undefined)).toMatch(/^envelope body: /);
  });

  it.each(['eventId', 'type', 'aggregateType', 'aggregateId', 'sequence', 'occurredAt', 'payload'])(
    'parks an envelope without %s, naming it',
    (field) => {
      const value = envelope();
      const eventId = value.eventId as string;
      delete value[field];
      expect(parkReason(body(value), eventId)).toMatch(new RegExp(`^envelope ${field}: `));
    },
  );

  it('parks an envelope with a field the contract does not have', () => {
    const value = envelope({ priority: 'high' });
    expect(parkReason(body(value), value.eventId as string)).toMatch(/^envelope /);
    expect(parkReason(body(value), value.eventId as string)).toContain('priority');
  });

  it.each([
    ['not a uuid', 'not-a-uuid'],
    ['a uuid without dashes', randomUUID().replaceAll('-', '')],
    ['a number', 42],
  ])('parks an eventId that is %s', (_what, eventId) => {
    expect(parkReason(body(envelope({ eventId })), String(eventId))).toMatch(/^envelope eventId: /);
  });

  it.each([
    ['zero', 0],
    ['negative', -1],
    ['a fraction', 1.5],
    ['a string', '1'],
    ['above 2^32 - 1', 4_294_967_296],
  ])('parks a sequence that is %s', (_what, sequence) => {
    const value = envelope({ sequence });
    expect(parkReason(body(value), value.eventId as string)).toMatch(/^envelope sequence: /);
  });

  it.each([
    ['empty type', { type: '' }, 'type'],
    ['type over 128 characters', { type: 'T'.repeat(129) }, 'type'],
    ['aggregateId over 64 characters', { aggregateId: '1'.repeat(65) }, 'aggregateId'],
    ['occurredAt that is a date only', { occurredAt: '2024-05-01' }, 'occurredAt'],
    ['occurredAt that is not a date', { occurredAt: 'yesterday' }, 'occurredAt'],
  ])('parks an envelope with %s', (_what, overrides, field) => {
    const value = envelope(overrides);
    expect(parkReason(body(value), value.eventId as string)).toMatch(new RegExp(`^envelope ${field}: `));
  });

  it('parks a message whose messageId is missing or is not the eventId', () => {
    const value = envelope();
    expect(parkReason(body(value), undefined)).toBe('messageId does not match the envelope eventId');
    expect(parkReason(body(value), randomUUID())).toBe('messageId does not match the envelope eventId');
    expect(parkReason(body(value), (value.eventId as string).toUpperCase())).toBe(
      'messageId does not match the envelope eventId',
    );
  });
});
