import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backoffDelay, sleep } from '../../src/support/sleep.js';

describe('sleep', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Resolves `promise`'s state after running what is ready now; the clock stays. */
  async function isSettled(promise: Promise<unknown>): Promise<boolean> {
    let settled = false;
    void promise.then(() => {
      settled = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    return settled;
  }

  it('resolves after ms and not before', async () => {
    const done = sleep(1_000);
    await vi.advanceTimersByTimeAsync(999);
    expect(await isSettled(done)).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await isSettled(done)).toBe(true);
  });

  it('resolves at once when any one of several signals aborts, and clears its timer', async () => {
    const stop = new AbortController();
    const wake = new AbortController();
    const done = sleep(60_000, stop.signal, undefined, wake.signal);
    expect(await isSettled(done)).toBe(false);
    wake.abort();
    expect(await isSettled(done)).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('resolves (never rejects) without a timer when a signal is already aborted', async () => {
    const done = sleep(60_000, AbortSignal.abort(new Error('stopped')));
    expect(vi.getTimerCount()).toBe(0);
    await expect(done).resolves.toBeUndefined();
  });

  it('removes its listeners from every signal when the time is up', async () => {
    // A long-lived stop signal collects a listener per sleep unless each is removed.
    const stop = new AbortController();
    const removed = vi.spyOn(stop.signal, 'removeEventListener');
    const done = sleep(10, stop.signal);
    await vi.advanceTimersByTimeAsync(10);
    await done;
    expect(removed).toHaveBeenCalledWith('abort', expect.any(Function));
  });

  it('removes its listeners from the other signals when one aborts', async () => {
    const stop = new AbortController();
    const wake = new AbortController();
    const removed = vi.spyOn(stop.signal, 'removeEventListener');
    const done = sleep(60_000, stop.signal, wake.signal);
    wake.abort();
    await done;
    expect(removed).toHaveBeenCalledWith('abort', expect.any(Function));
  });
});

describe('backoffDelay', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('stays within half and all of min(max, base × 2^(n-1)) for every failure count', () => {
    for (let failures = 1; failures <= 40; failures++) {
      const exponential = Math.min(60_000, 100 * 2 ** (failures - 1));
      for (let i = 0; i < 20; i++) {
        const delay = backoffDelay(failures, 100, 60_000);
        expect(delay).toBeGreaterThanOrEqual(exponential / 2);
        expect(delay).toBeLessThanOrEqual(exponential);
        expect(Number.isInteger(delay)).toBe(true);
      }
    }
  });

  it('doubles with every failure until the cap', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, 100, 2_000))).toEqual([
      50, 100, 200, 400, 800, 1_000, 1_000,
    ]);
  });

  it('reaches all of the exponential delay at the top of the jitter', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.999_999);
    expect([1, 2, 3].map((n) => backoffDelay(n, 100, 60_000))).toEqual([100, 200, 400]);
  });

  it('is jittered: retries of many clients do not line up', () => {
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(3, 1_000, 60_000)));
    expect(delays.size).toBeGreaterThan(1);
  });

  it('treats 0 failures like the first and stays capped however many failures there were', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.999_999);
    expect(backoffDelay(0, 100, 60_000)).toBe(100);
    // 2^(n-1) overflows to Infinity long before this; the cap still holds.
    expect(backoffDelay(100_000, 100, 60_000)).toBe(60_000);
  });
});
