/**
 * Resolves after `ms`, or at once when any of `signals` aborts. Never rejects.
 *
 * Several signals rather than AbortSignal.any(): a loop that sleeps every second would create a
 * dependent signal on its long-lived stop signal each time, which Node 20 keeps alive.
 */
export function sleep(ms: number, ...signals: Array<AbortSignal | undefined>): Promise<void> {
  if (signals.some((signal) => signal?.aborted)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      for (const signal of signals) signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    for (const signal of signals) signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Exponential back-off with half jitter: failure n (from 1) waits between half and all of
 * min(max, base × 2^(n-1)). Used wherever a loop retries a dependency that is down, so a
 * restart of MySQL or RabbitMQ is met by spaced-out retries rather than a spinning CPU.
 */
export function backoffDelay(failures: number, baseMs: number, maxMs: number): number {
  const exponential = Math.min(maxMs, baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(exponential * (0.5 + Math.random() / 2));
}

/**
 * `promise`, or nothing as soon as `signal` aborts, whichever comes first; the listener goes
 * with it. For a loop's turn that waits on an event a stop must not wait for (a channel's
 * 'close', which a broker behind a dead link never sends).
 */
export async function untilStopped(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  let onAbort: (() => void) | undefined;
  try {
    await Promise.race([
      promise,
      new Promise<void>((resolve) => {
        onAbort = resolve;
        signal.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}
