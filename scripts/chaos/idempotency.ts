import { createCustomer } from './client.js';
import type { RequestRecord } from './load.js';
import type { Random } from './random.js';
import type { DbState } from './state.js';

export interface FailedRequestCheck {
  readonly total: number;
  readonly wroteNothing: number;
  readonly recovered: number;
  /** `#n: why`, for the requests that wrote something and could not be recovered with their key. */
  readonly broken: string[];
}

export interface ReplayCheck {
  readonly replayed: number;
  /** `#n: why`, for replays that did not return the original result. */
  readonly broken: string[];
  /** Customers written by the replays (must be 0). */
  readonly written: number;
}

const TIMEOUT_MS = 10_000;

/**
 * Every request without an acknowledged result (a final error, or retries given up) either
 * wrote nothing, or a retry with its idempotency key now returns what it wrote.
 */
export async function checkFailedRequests(
  url: string,
  ledger: readonly RequestRecord[],
  state: DbState,
): Promise<FailedRequestCheck> {
  const byEmail = new Map(state.customers.map((c) => [c.email, c]));
  const failed = ledger.filter((r) => r.outcome === 'failed' || r.outcome === 'gave-up');
  let wroteNothing = 0;
  let recovered = 0;
  const broken: string[] = [];
  for (const record of failed) {
    const written = byEmail.get(record.input.email);
    if (!written) {
      wroteNothing++;
      continue;
    }
    const outcome = await createCustomer(url, record.input, record.key, TIMEOUT_MS);
    if (outcome.kind === 'ok' && outcome.customerId === written.id) recovered++;
    else
      broken.push(
        `#${record.n} (${record.code}): retry with key got ${
          outcome.kind === 'ok'
            ? `customer ${outcome.customerId}, not ${written.id}`
            : describeOutcome(outcome)
        }`,
      );
  }
  return { total: failed.length, wroteNothing, recovered, broken };
}

/**
 * Sends acknowledged creates again with their keys: each must return the original customer
 * and event, and nothing new may be written. Retried requests come first (their first attempt
 * may have committed unseen), then a seeded sample of the rest.
 */
export async function replayAcknowledged(
  url: string,
  ledger: readonly RequestRecord[],
  count: number,
  random: Random,
  customerCount: () => Promise<number>,
): Promise<ReplayCheck> {
  const acked = ledger.filter((r) => r.outcome === 'ok');
  const retried = acked.filter((r) => r.attempts > 1);
  const rest = random.shuffle(acked.filter((r) => r.attempts === 1));
  const sample = [...retried, ...rest].slice(0, count);
  const before = await customerCount();
  const broken: string[] = [];
  for (const record of sample) {
    const outcome = await createCustomer(url, record.input, record.key, TIMEOUT_MS);
    if (outcome.kind !== 'ok') broken.push(`#${record.n}: ${describeOutcome(outcome)}`);
    else if (outcome.customerId !== record.customerId || outcome.eventId !== record.eventId)
      broken.push(
        `#${record.n}: a different result (customer ${outcome.customerId}, event ${outcome.eventId})`,
      );
  }
  const after = await customerCount();
  return { replayed: sample.length, broken, written: after - before };
}

function describeOutcome(outcome: Awaited<ReturnType<typeof createCustomer>>): string {
  if (outcome.kind === 'ok') return 'ok';
  if (outcome.kind === 'retry') return `a temporary failure (${outcome.reason})`;
  return `${outcome.code}`;
}
