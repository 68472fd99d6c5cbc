import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Logger } from '../../src/log.js';
import { DEFAULT_REPEAT_INTERVAL_MS as REPEAT_LOG_INTERVAL_MS } from '../../src/support/log-limit.js';
import { Loop, type LoopOptions, type Turn, type TurnContext } from '../../src/support/loop.js';

// Fake timers: every wait the loop makes is a setTimeout, so the clock says exactly how long the
// loop waited, and "at once" means "without the clock moving".

const IDLE_MS = 10_000;
const BASE_MS = 100;
const MAX_MS = 1_000;

interface Probe {
  readonly loop: Loop;
  /** Clock time at which each turn started. */
  readonly starts: number[];
  /** The context each turn was given. */
  readonly contexts: TurnContext[];
  readonly warn: ReturnType<typeof vi.fn>;
  readonly info: ReturnType<typeof vi.fn>;
}

/** A loop whose turns are played by `script` (called with the turn's index from 0). */
function probe(
  script: (turn: number, context: TurnContext) => Turn | Promise<Turn>,
  options: Partial<LoopOptions> = {},
): Probe {
  const starts: number[] = [];
  const contexts: TurnContext[] = [];
  const warn = vi.fn();
  const info = vi.fn();
  const log = { warn, info, bindings: () => ({}) } as unknown as Logger;
  const loop = new Loop(
    { name: 'test-loop', log, idleMs: IDLE_MS, backoffBaseMs: BASE_MS, backoffMaxMs: MAX_MS, ...options },
    async (context) => {
      starts.push(Date.now());
      contexts.push(context);
      return script(starts.length - 1, context);
    },
  );
  return { loop, starts, contexts, warn, info };
}

/** Runs what is ready now (promise callbacks and timers due at the current time); the clock stays. */
const settle = () => vi.advanceTimersByTimeAsync(0);

/** Whether a promise has settled, after letting everything that is ready run. */
async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  await settle();
  return settled;
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const loops: Loop[] = [];
function started(p: Probe): Probe {
  loops.push(p.loop);
  p.loop.start();
  return p;
}

let t0 = 0;
beforeEach(() => {
  vi.useFakeTimers();
  t0 = Date.now();
  // No jitter: the back-off of failure n is exactly half of min(max, base × 2^(n-1)).
  vi.spyOn(Math, 'random').mockReturnValue(0);
});

afterEach(async () => {
  // A loop left running would keep turning under the next test's clock.
  await Promise.all(loops.splice(0).map((loop) => loop.stop()));
  vi.restoreAllMocks();
  vi.useRealTimers();
});

const elapsed = (starts: readonly number[]) => starts.map((t) => t - t0);

describe('Loop turns', () => {
  it('runs the next turn at once after a busy turn', async () => {
    const p = started(probe((turn) => (turn < 3 ? 'busy' : 'idle')));
    await settle();
    expect(elapsed(p.starts)).toEqual([0, 0, 0, 0]);
  });

  it('waits idleMs after an idle turn', async () => {
    const p = started(probe(() => 'idle'));
    await settle();
    expect(p.starts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(IDLE_MS - 1);
    expect(p.starts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(elapsed(p.starts)).toEqual([0, IDLE_MS]);
  });

  it('goes again at once after an idle turn when it has no idleMs (the body waits by itself)', async () => {
    const waitForStop = (signal: AbortSignal) =>
      new Promise<Turn>((resolve) => signal.addEventListener('abort', () => resolve('idle'), { once: true }));
    const p = started(
      probe((turn, { signal }) => (turn < 2 ? 'idle' : waitForStop(signal)), { idleMs: undefined }),
    );
    await settle();
    expect(elapsed(p.starts)).toEqual([0, 0, 0]);
  });

  it('a second start() does not start a second loop', async () => {
    const p = probe(() => 'idle');
    started(p);
    p.loop.start();
    await settle();
    expect(p.starts).toHaveLength(1);
  });
});

describe('Loop.wake()', () => {
  it('ends an idle wait at once', async () => {
    const p = started(probe(() => 'idle'));
    await vi.advanceTimersByTimeAsync(1_000);
    p.loop.wake();
    await settle();
    expect(elapsed(p.starts)).toEqual([0, 1_000]);
  });

  it('is not lost when it comes during a turn: the idle wait after that turn is skipped', async () => {
    const gate = deferred<Turn>();
    const p = started(probe((turn) => (turn === 0 ? gate.promise : 'idle')));
    await vi.advanceTimersByTimeAsync(500);
    // The turn is still working (say, its query ran before the event was committed).
    p.loop.wake();
    await vi.advanceTimersByTimeAsync(500);
    gate.resolve('idle');
    await settle();
    expect(elapsed(p.starts)).toEqual([0, 1_000]);
  });

  it('is consumed by the turn it caused: the idle wait after that one is a full one', async () => {
    const p = started(probe(() => 'idle'));
    await settle();
    p.loop.wake();
    p.loop.wake();
    await settle();
    expect(p.starts).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(IDLE_MS - 1);
    expect(p.starts).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(elapsed(p.starts)).toEqual([0, 0, IDLE_MS]);
  });

  it('does not cut a back-off short, and the turn after the back-off covers a wake-up made during it', async () => {
    const p = started(
      probe((turn) => {
        if (turn === 0) throw new Error('database down');
        return 'idle';
      }),
    );
    await settle();
    p.loop.wake();
    await vi.advanceTimersByTimeAsync(BASE_MS / 2 - 1);
    expect(p.starts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(elapsed(p.starts)).toEqual([0, BASE_MS / 2]);
    // That turn started after the wake-up, so it saw whatever the wake-up was about: a full wait.
    await vi.advanceTimersByTimeAsync(IDLE_MS - 1);
    expect(p.starts).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(elapsed(p.starts)).toEqual([0, BASE_MS / 2, BASE_MS / 2 + IDLE_MS]);
  });
});

describe('Loop failures', () => {
  it('backs off with growing delays, capped at backoffMaxMs, counting consecutive failures', async () => {
    const p = started(
      probe((turn) => {
        if (turn < 6) throw new Error(`failure ${turn + 1}`);
        return 'idle';
      }),
    );
    await vi.advanceTimersByTimeAsync(10_000);
    // Half of 100, 200, 400, 800, 1000 (capped), 1000: Math.random() is 0 here.
    const gaps = elapsed(p.starts)
      .slice(1)
      .map((t, i) => t - (elapsed(p.starts)[i] ?? 0));
    expect(gaps.slice(0, 6)).toEqual([50, 100, 200, 400, 500, 500]);
    expect(p.contexts.slice(0, 7).map((c) => c.failures)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    // One line for the outage, not one per retry (REPEAT_LOG_INTERVAL_MS is far above 10 s).
    expect(p.warn).toHaveBeenCalledTimes(1);
    expect(p.warn.mock.calls[0]?.[0]).toMatchObject({ loop: 'test-loop', retryInMs: 50, failures: 1 });
  });

  it('says so again once per REPEAT_LOG_INTERVAL_MS while it keeps failing, with the count of failures', async () => {
    const p = started(
      probe(() => {
        throw new Error('down');
      }),
    );
    await vi.advanceTimersByTimeAsync(REPEAT_LOG_INTERVAL_MS * 3 + 100);
    const failures = p.warn.mock.calls.map(([fields]) => (fields as { failures: number }).failures);
    expect(failures.length).toBeGreaterThanOrEqual(3);
    expect(failures.length).toBeLessThanOrEqual(4);
    expect(failures[0]).toBe(1);
    // Each later line counts every failure since the outage began.
    expect(failures.at(-1)).toBeGreaterThan(REPEAT_LOG_INTERVAL_MS / MAX_MS);
    await p.loop.stop();
  });

  it('resets the failure count after a successful turn, so the next failure backs off from the base again', async () => {
    const outcomes: Array<Turn | 'throw'> = ['throw', 'throw', 'throw', 'busy', 'throw', 'idle'];
    const p = started(
      probe((turn) => {
        const outcome = outcomes[turn] ?? 'idle';
        if (outcome === 'throw') throw new Error('flaky');
        return outcome;
      }),
    );
    await vi.advanceTimersByTimeAsync(1_000);
    expect(p.contexts.slice(0, 6).map((c) => c.failures)).toEqual([0, 1, 2, 3, 0, 1]);
    // Failures 1-3: 50, 100, 200; then the busy turn goes on at once; the failure after it waits 50.
    expect(elapsed(p.starts).slice(0, 6)).toEqual([0, 50, 150, 350, 350, 400]);
    // One line when it failed and one when it recovered; the flap after it, within the
    // interval, is only counted (in the next line).
    expect(p.warn).toHaveBeenCalledTimes(1);
    expect(p.info.mock.calls).toEqual([
      [
        { loop: 'test-loop', failures: 3, condition: 'test-loop', cleared: true, suppressed: 2 },
        'test-loop recovered',
      ],
    ]);
  });

  it('keeps running after a body that rejects with something that is not an Error', async () => {
    const p = started(
      probe((turn) => {
        if (turn === 0) return Promise.reject('a string');
        return 'idle';
      }),
    );
    await vi.advanceTimersByTimeAsync(BASE_MS);
    expect(p.starts).toHaveLength(2);
  });
});

describe('Loop.stop()', () => {
  it('returns the same promise on every call', async () => {
    const p = started(probe(() => 'idle'));
    await settle();
    const first = p.loop.stop();
    expect(p.loop.stop()).toBe(first);
    await first;
    expect(p.loop.stop()).toBe(first);
    expect(p.loop.stopped).toBe(true);
  });

  it('ends an idle wait at once and runs no further turn', async () => {
    const p = started(probe(() => 'idle'));
    await settle();
    expect(await isSettled(p.loop.stop())).toBe(true);
    await vi.advanceTimersByTimeAsync(IDLE_MS * 3);
    expect(p.starts).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('ends a back-off wait at once', async () => {
    const p = started(
      probe(
        () => {
          throw new Error('down');
        },
        { backoffBaseMs: 60_000, backoffMaxMs: 60_000 },
      ),
    );
    await settle();
    expect(p.warn).toHaveBeenCalledTimes(1);
    expect(await isSettled(p.loop.stop())).toBe(true);
    expect(p.starts).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('aborts the running turn through its signal and resolves only once that turn has ended', async () => {
    const finish = deferred<Turn>();
    const p = started(probe(() => finish.promise));
    await settle();
    const stopping = p.loop.stop();
    expect(p.contexts[0]?.signal.aborted).toBe(true);
    expect(p.loop.signal.aborted).toBe(true);
    expect(await isSettled(stopping)).toBe(false);
    finish.resolve('busy');
    expect(await isSettled(stopping)).toBe(true);
    // A busy turn would go again at once, but not after stop().
    expect(p.starts).toHaveLength(1);
  });

  it('does not report a turn that failed because stop() aborted it, nor back off', async () => {
    const p = started(
      probe(
        (_turn, { signal }) =>
          new Promise<Turn>((_resolve, reject) => {
            signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
          }),
      ),
    );
    await settle();
    expect(await isSettled(p.loop.stop())).toBe(true);
    expect(p.warn).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('before start() resolves at once, and a later start() runs no turn', async () => {
    const p = probe(() => 'idle');
    expect(await isSettled(p.loop.stop())).toBe(true);
    p.loop.start();
    await settle();
    expect(p.starts).toHaveLength(0);
  });
});
