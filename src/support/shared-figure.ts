/**
 * A figure that costs real work to compute (a count over every published outbox row, a broker
 * round trip), computed at most once per `maxAgeMs` and never twice at once: a caller gets the
 * computation in flight, or the last result while it is younger than `maxAgeMs`, or starts a
 * new one. So 450 aliases of one field in one request, or a thousand clients asking together,
 * cost one computation, not 450 or a thousand one after the other; the database does the work
 * at most once per interval per process, however often it is asked. With `maxAgeMs` 0 every
 * request that finds none in flight computes afresh (and still shares it with those that come
 * while it runs).
 *
 * A failed computation is not kept: the callers waiting on it get its error, the next caller
 * tries again.
 */
export class SharedFigure<T> {
  private inFlight: Promise<Computed<T>> | undefined;
  private last: Computed<T> | undefined;

  constructor(
    private readonly compute: () => Promise<T>,
    private readonly maxAgeMs: number,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /** The figure and how old it is, in milliseconds (0 for one computed for this call). */
  async get(): Promise<{ readonly value: T; readonly ageMs: number }> {
    const now = this.clock();
    if (this.last && now - this.last.at < this.maxAgeMs) {
      return { value: this.last.value, ageMs: now - this.last.at };
    }
    this.inFlight ??= this.run();
    const computed = await this.inFlight;
    return { value: computed.value, ageMs: Math.max(0, this.clock() - computed.at) };
  }

  private async run(): Promise<Computed<T>> {
    try {
      const value = await this.compute();
      // Its age counts from when it was read, not from when it was asked for.
      this.last = { value, at: this.clock() };
      return this.last;
    } finally {
      this.inFlight = undefined;
    }
  }
}

interface Computed<T> {
  readonly value: T;
  readonly at: number;
}
