import type { HarnessDb } from './harness-db.js';
import type { RecoveryTracker } from './recovery.js';
import { say } from './report.js';
import { handledEvents, readBacklog, readState } from './state.js';
import type { Subscriber } from './subscribers.js';
import type { SupervisedProcess } from './supervisor.js';
import { waitFor } from './wait.js';

/** Subscribers that received nothing new for this long are taken as done (they may never catch up). */
const SUBSCRIBER_QUIET_MS = 10_000;

/**
 * After the load and the faults: every process up, every event published, every customer
 * welcomed, every subscriber caught up, every recovery measured. Returns false when the deadline
 * passed first; the invariants are checked anyway and will say what is missing.
 */
export async function settle(options: {
  readonly db: HarnessDb;
  readonly processes: readonly SupervisedProcess[];
  readonly subscribers: readonly Subscriber[];
  readonly sentinelCustomers: ReadonlySet<string>;
  readonly recovery: RecoveryTracker;
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
}): Promise<boolean> {
  const deadline = Date.now() + options.timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  const step = async (what: string, check: () => Promise<boolean>) => {
    try {
      await waitFor(what, check, { timeoutMs: left(), intervalMs: 500, signal: options.signal });
      return true;
    } catch (error) {
      say(`settling: ${(error as Error).message}`);
      return false;
    }
  };

  let ok = await step('every process up and healthy', async () => {
    const health = await Promise.all(options.processes.map((p) => p.healthy()));
    return health.every(Boolean);
  });
  ok &&= await step('no pending event and every customer welcomed', async () => {
    const b = await options.db.with(readBacklog);
    return b.pending === 0 && b.welcomed >= b.customers;
  });
  let lastTotal = -1;
  let lastChange = Date.now();
  ok &&= await step('every subscriber caught up', async () => {
    const state = await options.db.with(readState);
    const expected = handledEvents(state).filter((h) => !options.sentinelCustomers.has(h.customerId));
    const total = options.subscribers.reduce((n, s) => n + s.received.length, 0);
    if (total !== lastTotal) {
      lastTotal = total;
      lastChange = Date.now();
    }
    const caughtUp = options.subscribers.every((s) => expected.every((h) => s.ids.has(h.eventId)));
    return caughtUp || Date.now() - lastChange > SUBSCRIBER_QUIET_MS;
  });
  ok &&= await step('every recovery measured', async () => options.recovery.open === 0);
  return ok;
}
