import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The deadline of the work in hand (a GraphQL request), carried through its async calls so that
 * the database can bound a pool checkout or a statement by it without every caller passing it
 * down. Once it passes, or the client goes away, `signal` aborts: what has not started is not
 * started, and what is waiting stops waiting. Work that outlives its request on purpose (a
 * subscription's stream) is released from it with `release()`.
 */
export class Deadline {
  /** Made when someone asks for `signal`: a request's work usually only asks whether it aborted. */
  private controller: AbortController | undefined;
  private aborted: { reason: Error } | undefined;
  private released = false;

  constructor(private readonly at: number) {}

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.aborted.reason);
    }
    return this.controller.signal;
  }

  /** Milliseconds left; Infinity once released, 0 once aborted. */
  remainingMs(): number {
    if (this.released) return Number.POSITIVE_INFINITY;
    if (this.aborted) return 0;
    return Math.max(0, this.at - Date.now());
  }

  /** The work is abandoned (deadline passed, client gone). No-op once released. */
  abort(reason: Error): void {
    if (this.released || this.aborted) return;
    this.aborted = { reason };
    this.controller?.abort(reason);
  }

  /** The work goes on without a deadline (it answered, or became a stream). */
  release(): void {
    this.released = true;
  }

  get isAborted(): boolean {
    return !this.released && this.aborted !== undefined;
  }
}

const storage = new AsyncLocalStorage<Deadline>();

/** Runs `work` (and everything it starts) under `deadline`. */
export function withDeadline<T>(deadline: Deadline, work: () => T): T {
  return storage.run(deadline, work);
}

/** The deadline of the work running now, if any. */
export function currentDeadline(): Deadline | undefined {
  return storage.getStore();
}

/**
 * The smaller of `limitMs` and what is left of the current deadline: how long a wait started now
 * may last.
 */
export function boundedBy(limitMs: number): number {
  return Math.min(limitMs, currentDeadline()?.remainingMs() ?? Number.POSITIVE_INFINITY);
}
