/**
 * Waiting on conditions with deadlines, never on fixed sleeps: every wait here names what it
 * waits for, so a run that hangs says what it was waiting on when the deadline passes.
 */

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

export class DeadlineError extends Error {
  constructor(what: string, timeoutMs: number, options?: ErrorOptions) {
    super(`timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for ${what}`, options);
    this.name = 'DeadlineError';
  }
}

export interface WaitOptions {
  readonly timeoutMs: number;
  readonly intervalMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * Polls `check` until it returns something other than undefined/false, or throws a
 * DeadlineError naming `what`. A check that throws counts as "not yet" (servers that are still
 * starting refuse connections); the last such error becomes the deadline error's cause.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs, intervalMs = 200, signal }: WaitOptions,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    if (signal?.aborted) throw new Error(`aborted while waiting for ${what}`);
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) throw new DeadlineError(what, timeoutMs, { cause: lastError });
    await delay(Math.min(intervalMs, Math.max(0, deadline - Date.now())), signal);
  }
}
