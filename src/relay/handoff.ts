import type { ClaimedEvent, Lease } from '../outbox/store.js';

/**
 * The fast path from a writer to the relay in the same process.
 *
 * A writer (createCustomer, the worker) writes its outbox row already leased to this relay,
 * in its own transaction, and after the commit hands the row to the relay, which publishes it
 * at once: no poll, no wake-up, no claim transaction between the commit and the broker. Every
 * guarantee still rests on the table: the row is committed before it is published, it is
 * marked published only under its lease token, and if this process dies before that, the lease
 * expires and any relay claims the row like any other.
 */
export interface Handoff {
  /** The lease to write with the row. */
  readonly lease: Lease;
  /** After the commit: publish these rows now (batched with others handed over meanwhile). */
  publish(events: readonly ClaimedEvent[]): void;
}
