/**
 * One log line per condition per interval: during a long outage every request fails the same
 * way, and a line each would bury everything else. `allow(key)` says whether to log now, and
 * how many lines of that key it held back since the last one (to put in the line).
 */
export class LogLimiter {
  private readonly last = new Map<string, { at: number; held: number }>();

  constructor(private readonly intervalMs: number) {}

  allow(key: string): { readonly log: boolean; readonly suppressed: number } {
    const now = Date.now();
    const seen = this.last.get(key);
    if (seen && now - seen.at < this.intervalMs) {
      seen.held += 1;
      return { log: false, suppressed: 0 };
    }
    this.last.set(key, { at: now, held: 0 });
    return { log: true, suppressed: seen?.held ?? 0 };
  }
}
