import type { Executor } from '../db/client.js';
import type { NewEvent } from './event.js';
import type { Handoff, Waker } from './handoff.js';
import { type AppendedEvent, appendEvent, predecessorUnpublished } from './store.js';

export interface OutboxWriterOptions {
  /** The relay in this process, if any. */
  readonly handoff?: Handoff;
  /** Wakes relays in other processes. */
  readonly waker?: Waker;
  /** Largest payload, as JSON bytes, an event may carry. */
  readonly maxPayloadBytes: number;
}

/** An event whose payload is over OUTBOX_MAX_PAYLOAD_BYTES: a bug of the writer, not of the data. */
export class EventTooLargeError extends Error {
  override readonly name = 'EventTooLargeError';
}

/**
 * The one way to write an event: `append` inside the caller's transaction, then `committed`
 * once that transaction committed. Between them they decide how the event gets moving, so no
 * writer has to: a relay in this process gets the row handed over (written leased to it), and
 * relays elsewhere get a wake-up hint. An event whose predecessor in its aggregate is not
 * published yet is written held (see store.ts) and moves when the predecessor is marked.
 */
export class OutboxWriter {
  constructor(private readonly options: OutboxWriterOptions) {}

  async append(tx: Executor, event: NewEvent): Promise<AppendedEvent> {
    const payloadJson = JSON.stringify(event.payload);
    if (Buffer.byteLength(payloadJson) > this.options.maxPayloadBytes) {
      throw new EventTooLargeError(
        `${event.type} payload is ${Buffer.byteLength(payloadJson)} bytes, over the ${this.options.maxPayloadBytes} allowed`,
      );
    }
    const held = event.sequence > 1 && (await predecessorUnpublished(tx, event));
    return appendEvent(tx, event, payloadJson, held ? 'held' : this.options.handoff?.lease);
  }

  /** After the commit: hand leased rows to the local relay, and wake whoever must claim the rest. */
  committed(events: readonly AppendedEvent[]): void {
    if (events.length === 0) return;
    const { handoff, waker } = this.options;
    const handedOver = events.filter((e) => e.leased);
    if (handedOver.length > 0) handoff?.publish(handedOver);
    if (handedOver.length < events.length) {
      handoff?.wake();
      waker?.notify();
    } else if (!handoff) {
      waker?.notify();
    }
  }

  /** Rows became due outside a writer (revived or released by an operator): wake the relays. */
  nudge(): void {
    this.options.handoff?.wake();
    this.options.waker?.notify();
  }
}
