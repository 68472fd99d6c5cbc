/**
 * The deadline of the work in hand (a GraphQL request), handed to the database with the work
 * (db/deadline.ts) so that a pool checkout or a statement is bounded by it. Once it passes, or
 * the client goes away, `signal` aborts: what has not started is not started, and what is
 * waiting stops waiting. Work that outlives its request on purpose (a subscription's stream)
 * is released from it with `release()`.
 *
 * Passed by hand rather than found through AsyncLocalStorage: once any store is in use, Node
 * runs a hook for every promise the process makes, a cost every role of the process pays
 * (docs/performance.md).
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

/** The smaller of `limitMs` and what is left of `deadline`: how long a wait started now may last. */
export function boundedBy(limitMs: number, deadline: Deadline | undefined): number {
  return deadline === undefined ? limitMs : Math.min(limitMs, deadline.remainingMs());
}
