import { describe, expect, it } from 'vitest';
import { SharedFigure } from '../../src/support/shared-figure.js';

/** A computation the test finishes by hand, counting how often it was started. */
function controlled() {
  let started = 0;
  const pending: Array<{ resolve: (n: number) => void; reject: (e: Error) => void }> = [];
  const compute = () => {
    started++;
    return new Promise<number>((resolve, reject) => pending.push({ resolve, reject }));
  };
  return { compute, started: () => started, pending };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('SharedFigure', () => {
  it('computes once for any number of callers while one computation runs', async () => {
    const c = controlled();
    const figure = new SharedFigure(c.compute, 0);
    const callers = Array.from({ length: 450 }, () => figure.get());
    await settle();
    expect(c.started()).toBe(1);
    c.pending[0]?.resolve(7);
    const results = await Promise.all(callers);
    expect(results.every((r) => r.value === 7)).toBe(true);
  });

  it('serves the last figure until it is maxAgeMs old, with its age, then computes again', async () => {
    let now = 1_000;
    let n = 0;
    const figure = new SharedFigure(
      async () => ++n,
      500,
      () => now,
    );
    expect(await figure.get()).toEqual({ value: 1, ageMs: 0 });
    now += 499;
    expect(await figure.get()).toEqual({ value: 1, ageMs: 499 });
    now += 1;
    expect(await figure.get()).toEqual({ value: 2, ageMs: 0 });
  });

  it('with maxAgeMs 0 computes afresh for each caller that finds none running', async () => {
    let n = 0;
    const figure = new SharedFigure(async () => ++n, 0);
    expect((await figure.get()).value).toBe(1);
    expect((await figure.get()).value).toBe(2);
  });

  it('does not keep a failure: its waiters get the error, the next caller tries again', async () => {
    const c = controlled();
    const figure = new SharedFigure(c.compute, 60_000);
    const a = figure.get();
    const b = figure.get();
    await settle();
    c.pending[0]?.reject(new Error('database away'));
    await expect(a).rejects.toThrow('database away');
    await expect(b).rejects.toThrow('database away');
    const next = figure.get();
    await settle();
    expect(c.started()).toBe(2);
    c.pending[1]?.resolve(3);
    expect((await next).value).toBe(3);
  });
});
