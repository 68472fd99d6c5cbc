import type { AppendedEvent, Lease } from './rows.js';

/**
 * The fast path from a writer to a relay in the same process, seen from the outbox: the relay
 * implements it, the outbox writer (writer.ts) uses it, and nothing above the outbox needs to
 * know it exists.
 *
 * A writer writes its row already leased to this relay, in its own transaction, and after the
 * commit hands it over; the relay publishes at once: no poll, no hint, no claim transaction
 * between the commit and the broker. Every guarantee still rests on the table: the row is
 * committed before it is published, marked published only under its lease token, and if the
 * process dies first, the lease expires and any relay claims it like any other.
 */
export interface Handoff {
  /** The lease to write with the row. */
  readonly lease: Lease;
  /** After the commit: publish these rows now (batched with others handed over meanwhile). */
  publish(events: readonly AppendedEvent[]): void;
  /** Rows were committed for the relay's lanes to claim (held-back or not handed over). */
  wake(): void;
}

/**
 * How a writer sends relays in other processes a hint that rows were committed (broker/hint.ts,
 * over the exchange `<OUTBOX_EXCHANGE>.wakeup`).
 */
export interface RelayHint {
  notify(): void;
}
