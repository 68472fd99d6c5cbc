import type { MessageProperties } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { afresh, describe as describeLetter } from '../../src/worker/dead-letters.js';

const properties = (headers: Record<string, unknown>): MessageProperties =>
  ({ messageId: 'e-1', type: 'CustomerCreated', headers }) as unknown as MessageProperties;

describe('a parked message as the operator sees it', () => {
  it('reads the id, reason, attempts and parking time from the headers, the aggregate from the body', () => {
    const letter = describeLetter({
      properties: properties({
        'x-copy-id': 'copy-1',
        'x-last-error': 'PermanentFailure: no template',
        'x-attempts': 3,
        'x-parked-at': '2026-12-07T10:00:00.000Z',
      }),
      content: Buffer.from(JSON.stringify({ aggregateType: 'Customer', aggregateId: '42' })),
    });
    expect(letter).toEqual({
      id: 'copy-1',
      eventId: 'e-1',
      type: 'CustomerCreated',
      aggregateType: 'Customer',
      aggregateId: '42',
      reason: 'PermanentFailure: no template',
      parkedAt: new Date('2026-12-07T10:00:00.000Z'),
      attempts: 3,
    });
  });

  it('survives a body that is no JSON and headers that are nonsense', () => {
    const letter = describeLetter({
      properties: properties({ 'x-attempts': 'many', 'x-parked-at': 'yesterday' }),
      content: Buffer.from('{not json'),
    });
    expect(letter).toMatchObject({ id: 'e-1', aggregateId: null, parkedAt: null, attempts: 0 });
  });
});

describe('a requeued message starts afresh', () => {
  it('loses the record of its failures, including the delivery count that would park it again, and keeps the rest', () => {
    const options = afresh(
      properties({
        'x-attempts': 5,
        'x-last-error': 'boom',
        'x-copy-id': 'c',
        'x-parked-at': 'now',
        'x-delivery-count': 10,
        'x-dead-letters-pass': 'p',
        'x-death': [],
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      }),
    );
    expect(options.headers).toEqual({
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    expect(options).toMatchObject({
      messageId: 'e-1',
      type: 'CustomerCreated',
      persistent: true,
      mandatory: true,
    });
  });
});
