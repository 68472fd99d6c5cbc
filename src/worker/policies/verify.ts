import type { Transaction } from '../../db/client.js';
import type { EventEnvelope } from '../../outbox/event.js';
import { ForeignMessage, PermanentFailure, type StoredEvent } from '../../outbox/handler.js';
import { canonicalJson } from '../../support/json.js';
import type { AnyHandler, Delivery } from '../pipeline.js';
import { wasHandled } from '../store.js';

/**
 * The stored event a message claims to be, checked field by field, inside the handling
 * transaction (../handling.ts, which read `stored` for its whole group). The handler gets the
 * stored event, so nothing a sender puts in a message reaches an effect. A message that matches
 * no stored event, or disagrees with it, or cannot even be compared with it, is a
 * ForeignMessage: parked, and never counted as a step of the real event's aggregate.
 */
export async function verifiedEvent(
  tx: Transaction,
  consumer: string,
  delivery: Delivery & { readonly claim: EventEnvelope; readonly handler: AnyHandler },
  stored: EventEnvelope | undefined,
): Promise<StoredEvent | 'handled before'> {
  const { claim, handler } = delivery;
  if (!stored) {
    // A late copy of a message handled long ago, whose outbox row retention has pruned: the
    // inbox, kept at least as long as the outbox (INBOX_RETENTION ≥ OUTBOX_RETENTION), knows it.
    if (await wasHandled(tx, consumer, claim.eventId)) return 'handled before';
    throw new ForeignMessage(
      'no stored event with this id (not written by this service, or pruned by OUTBOX_RETENTION)',
    );
  }
  compare(claim, stored);
  delivery.verified = true;
  const payload = handler.payload.safeParse(stored.payload);
  if (!payload.success) {
    const issue = payload.error.issues[0];
    throw new PermanentFailure(
      `${stored.type} payload ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return {
    eventId: stored.eventId,
    type: stored.type,
    aggregateType: stored.aggregateType,
    aggregateId: stored.aggregateId,
    sequence: stored.sequence,
    occurredAt: new Date(stored.occurredAt),
    payload: payload.data,
  };
}

function compare(claim: EventEnvelope, stored: EventEnvelope): void {
  for (const field of ['type', 'aggregateType', 'aggregateId', 'sequence'] as const) {
    if (stored[field] !== claim[field]) {
      throw new ForeignMessage(`message ${field} disagrees with the stored event`);
    }
  }
  // The same instant may be spelled with another offset; any other difference is a forgery.
  if (Date.parse(claim.occurredAt) !== Date.parse(stored.occurredAt)) {
    throw new ForeignMessage('message occurredAt disagrees with the stored event');
  }
  let same: boolean;
  try {
    // The relay sends the stored JSON as it is, so the texts are the same, keys in the same
    // order; only when they are not is key order left out of the comparison (it costs more).
    same =
      JSON.stringify(stored.payload) === JSON.stringify(claim.payload) ||
      canonicalJson(stored.payload) === canonicalJson(claim.payload);
  } catch (error) {
    // A payload nested too deep to walk (a RangeError), say: no event of ours is, so it is not
    // one of ours; taken for a handler's failure it would be retried and parked as the event.
    throw new ForeignMessage('message payload cannot be compared with the stored event', { cause: error });
  }
  if (!same) throw new ForeignMessage('message payload disagrees with the stored event');
}
