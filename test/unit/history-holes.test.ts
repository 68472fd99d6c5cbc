import { describe, expect, it } from 'vitest';
import { contiguousRows, HoleWait } from '../../src/history/holes.js';

const at = (...positions: number[]) => positions.map((position) => ({ position }));
const positions = (rows: Array<{ position: number }>) => rows.map((row) => row.position);

describe('contiguousRows', () => {
  it('hands out a read whose positions follow on from where the reader stands', () => {
    const { ready, hole } = contiguousRows(at(5, 6, 7), 4);
    expect(positions(ready)).toEqual([5, 6, 7]);
    expect(hole).toBeUndefined();
  });

  it('stops before a missing position and names the hole up to the next row', () => {
    // The reported case: 15371 not yet visible to a read that shows 15372 and 15373.
    const { ready, hole } = contiguousRows(at(15369, 15370, 15372, 15373), 15368);
    expect(positions(ready)).toEqual([15369, 15370]);
    expect(hole).toEqual({ from: 15371, to: 15371 });
  });

  it('hands out nothing when the first row is already past a hole', () => {
    const { ready, hole } = contiguousRows(at(8, 9), 4);
    expect(ready).toEqual([]);
    expect(hole).toEqual({ from: 5, to: 7 });
  });

  it('skips rows the reader has already handed out while the read was on its way', () => {
    const { ready, hole } = contiguousRows(at(5, 6, 7, 8), 6);
    expect(positions(ready)).toEqual([7, 8]);
    expect(hole).toBeUndefined();
  });

  it('an empty read, or one ending early, is no hole: nothing later is visible yet', () => {
    expect(contiguousRows([], 4)).toEqual({ ready: [] });
    expect(positions(contiguousRows(at(5), 4).ready)).toEqual([5]);
  });
});

describe('HoleWait', () => {
  function clock() {
    let now = 1_000;
    return { now: () => now, advance: (ms: number) => (now += ms) };
  }

  it('reads again at once on a new hole, then backs off, and reports the wait once it fills', () => {
    const time = clock();
    const wait = new HoleWait(5_000, time.now);
    expect(wait.met(10)).toEqual({ action: 'reread', delayMs: 0, first: true });
    expect(wait.met(10)).toEqual({ action: 'reread', delayMs: 1, first: false });
    expect(wait.met(10)).toEqual({ action: 'reread', delayMs: 2, first: false });
    expect(wait.met(10)).toEqual({ action: 'reread', delayMs: 4, first: false });
    time.advance(3);
    expect(wait.passed(9)).toBeUndefined();
    expect(wait.passed(10)).toBe(3);
    expect(wait.passed(11)).toBeUndefined();
  });

  it('caps the back-off, so a hole is looked at again every 100 ms at most', () => {
    const wait = new HoleWait(60_000, clock().now);
    const delays = Array.from({ length: 12 }, () => wait.met(3)).map((v) =>
      v.action === 'reread' ? v.delayMs : -1,
    );
    expect(Math.max(...delays)).toBe(100);
  });

  it('calls a hole permanent only after the timeout, and then starts afresh', () => {
    const time = clock();
    const wait = new HoleWait(5_000, time.now);
    wait.met(10);
    time.advance(4_999);
    expect(wait.met(10).action).toBe('reread');
    time.advance(1);
    expect(wait.met(10)).toEqual({ action: 'skip', waitedMs: 5_000 });
    expect(wait.passed(10)).toBeUndefined();
    expect(wait.met(10)).toEqual({ action: 'reread', delayMs: 0, first: true });
  });

  it('a hole further on is a new hole with a wait of its own', () => {
    const time = clock();
    const wait = new HoleWait(5_000, time.now);
    wait.met(10);
    time.advance(4_000);
    expect(wait.met(12)).toEqual({ action: 'reread', delayMs: 0, first: true });
    time.advance(4_000);
    expect(wait.met(12).action).toBe('reread');
  });
});
