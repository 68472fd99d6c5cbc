import { describe, expect, it } from 'vitest';
import { isOutage, type PublishFailure } from '../../src/broker/publisher.js';

describe('isOutage', () => {
  it.each<[PublishFailure, boolean]>([
    ['no_channel', true],
    ['channel_closed', true],
    ['nacked', false],
    ['unroutable', false],
    ['timeout', false],
    ['encoding', false],
  ])('%s → %s: only a lost connection hands leases back without counting an attempt', (reason, outage) => {
    expect(isOutage({ ok: false, reason, error: 'x' })).toBe(outage);
  });

  it('is false for a success', () => {
    expect(isOutage({ ok: true })).toBe(false);
  });
});
