import { describe, expect, it } from 'vitest';
import type { BrokerConnection } from '../../src/broker/connection.js';
import { ConfirmPublisher, isOutage, type PublishFailure } from '../../src/broker/publisher.js';
import { createLogger } from '../../src/log.js';

describe('isOutage', () => {
  it.each<[PublishFailure, boolean]>([
    ['no_channel', true],
    ['channel_closed', true],
    ['nacked', false],
    ['unroutable', false],
    ['timeout', true],
    ['encoding', false],
  ])(
    '%s → %s: only a lost connection or a missing confirm hands leases back without counting an attempt',
    (reason, outage) => {
      expect(isOutage({ ok: false, reason, error: 'x' })).toBe(outage);
    },
  );

  it('is false for a success', () => {
    expect(isOutage({ ok: true })).toBe(false);
  });
});

describe('ConfirmPublisher with the broker away', () => {
  it('publishAll gives up at its own deadline even when another caller started the wait for a channel', async () => {
    // A broker that never connects (the wait ends only when the caller's signal aborts).
    const broker = {
      connection: (signal?: AbortSignal) =>
        new Promise<never>((_, reject) =>
          signal?.addEventListener('abort', () => reject(new Error('aborted'))),
        ),
    } as unknown as BrokerConnection;
    const publisher = new ConfirmPublisher({
      broker,
      exchange: 'x',
      confirmTimeoutMs: 100,
      log: createLogger('silent'),
      setup: async () => {},
    });
    // An idle relay lane waits for the broker with a signal that aborts only at stop.
    const stop = new AbortController();
    const idle = publisher.ready(stop.signal).catch(() => {});
    const started = performance.now();
    const outcomes = await publisher.publishAll([
      { routingKey: 'k', body: Buffer.from('{}'), properties: { messageId: 'm' } },
    ]);
    expect(outcomes).toEqual([expect.objectContaining({ ok: false, reason: 'no_channel' })]);
    expect(performance.now() - started).toBeLessThan(1000);
    stop.abort();
    await idle;
  });
});
