import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LogLimiter } from '../../src/support/log-limit.js';

describe('LogLimiter', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('lets one line per key through per interval and counts the ones it held back', () => {
    const limiter = new LogLimiter(1_000);
    expect(limiter.allow('a')).toEqual({ log: true, suppressed: 0 });
    for (let i = 0; i < 5; i++) expect(limiter.allow('a').log).toBe(false);
    // Another condition is not held back by the first.
    expect(limiter.allow('b')).toEqual({ log: true, suppressed: 0 });
    vi.advanceTimersByTime(1_000);
    expect(limiter.allow('a')).toEqual({ log: true, suppressed: 5 });
    expect(limiter.allow('a').log).toBe(false);
  });

  it('says once that a condition cleared; flapping, it says at most once per interval that it happens', () => {
    const limiter = new LogLimiter(1_000);
    // Nothing to clear: no line.
    expect(limiter.clear('a').log).toBe(false);
    expect(limiter.allow('a')).toEqual({ log: true, suppressed: 0 });
    limiter.allow('a');
    expect(limiter.clear('a')).toEqual({ log: true, suppressed: 1 });
    expect(limiter.clear('a').log).toBe(false);
    // Back within the interval: counted, and its clearing is not said again.
    for (let i = 0; i < 3; i++) {
      expect(limiter.allow('a').log).toBe(false);
      expect(limiter.clear('a').log).toBe(false);
    }
    vi.advanceTimersByTime(1_000);
    expect(limiter.allow('a')).toEqual({ log: true, suppressed: 3 });
    expect(limiter.clear('a')).toEqual({ log: true, suppressed: 0 });
  });
});
