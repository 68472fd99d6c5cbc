import type { ConsumeMessage } from 'amqplib';
import type { HistoryRow } from '../history/store.js';
import type { EventEnvelope } from '../outbox/event.js';
import type { Handlers } from '../outbox/handler.js';

export type AnyHandler = Handlers[string];

/** How the worker settled one delivery; `requeued` (given back to the queue) is the loop's. */
export type Outcome = 'handled' | 'duplicate' | 'waiting' | 'retried' | 'parked';

/**
 * One delivery as it passes through the policies: the message as it came, and what the steps
 * learn of it on the way in.
 */
export interface Delivery {
  readonly message: ConsumeMessage;
  /** What the message claims to be (policies/envelope.ts); the stored event decides. */
  claim?: EventEnvelope;
  handler?: AnyHandler;
  /** The event's attempt: 1, or the service's count of its failures (policies/retry.ts). */
  attempts: number;
  /**
   * The message's claims matched the stored event (policies/verify.ts): it is that event, and
   * only then may parking it move the event's aggregate on (policies/park.ts).
   */
  verified: boolean;
  /** With outcome `waiting`: earlier events of its aggregate not handled yet. */
  missing?: number;
  /**
   * The W3C traceparent of the span handling it, when tracing is on: stored with its history row
   * so that the delivery to each subscriber links to the handling (app/deliveries.ts).
   */
  readonly traceparent?: string;
  /** With outcome `handled`: the history rows its commit appended. */
  history?: readonly HistoryRow[];
}

/** Settles a delivery: returns its outcome, or throws to have it given back to the queue. */
export type Step = (delivery: Delivery) => Promise<Outcome>;

/**
 * One policy of the worker wrapped around the next step (Watermill's `HandlerMiddleware`): it
 * may act before it, look at its outcome, or catch what it throws.
 */
export type Policy = (next: Step) => Step;

/** `policies` around `last`, the first one outermost. */
export function compose(policies: readonly Policy[], last: Step): Step {
  return policies.reduceRight<Step>((next, policy) => policy(next), last);
}
