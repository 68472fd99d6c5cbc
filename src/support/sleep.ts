/** Resolves after `ms`, or at once when `signal` aborts. Never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
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
