import type { RequestHandler } from 'express';

/** Every check must have answered by then: /readyz answers within 2 s, whatever hangs. */
export const READINESS_TIMEOUT_MS = 1_500;

/** A dependency's check: resolves when the dependency answered now; rejects or hangs when not. */
export type ReadinessCheck = () => Promise<unknown>;

/**
 * `/readyz`: 200 only when every dependency answered within READINESS_TIMEOUT_MS, else 503 with
 * the ones that did not marked "down". A check that hangs (a link that drops packets) counts as
 * down at the deadline; it is not waited for, so a probe never outlasts its load balancer's.
 */
export function readinessHandler(checks: Readonly<Record<string, ReadinessCheck>>): RequestHandler {
  const entries = Object.entries(checks);
  return async (_req, res) => {
    const results = await Promise.all(
      entries.map(async ([name, check]) => [name, await answersWithin(check, READINESS_TIMEOUT_MS)] as const),
    );
    const ready = results.every(([, ok]) => ok);
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'unavailable',
      checks: Object.fromEntries(results.map(([name, ok]) => [name, ok ? 'up' : 'down'])),
    });
  };
}

function answersWithin(check: ReadinessCheck, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    check().then(
      (answer) => {
        clearTimeout(timer);
        resolve(answer !== false);
      },
      () => {
        clearTimeout(timer);
        resolve(false);
      },
    );
  });
}
