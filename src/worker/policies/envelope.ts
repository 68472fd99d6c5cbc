import type { Handlers } from '../../outbox/handler.js';
import { PermanentFailure } from '../../outbox/handler.js';
import { parseEnvelope } from '../envelope.js';
import type { Policy } from '../pipeline.js';

/**
 * Reads the message as the broker contract's envelope and finds its handler; anything else
 * (too large, not JSON, not the contract, a type we do not handle) is a PermanentFailure, parked
 * at once. The envelope is only a claim, checked against the stored event later (verify.ts).
 */
export const readEnvelope =
  (handlers: Handlers, maxMessageBytes: number): Policy =>
  (next) =>
  async (delivery) => {
    const { content, properties } = delivery.message;
    const claim = parseEnvelope(content, properties.messageId, maxMessageBytes);
    const handler = handlers[claim.type];
    if (!handler) throw new PermanentFailure(`no handler for event type "${claim.type}"`);
    delivery.claim = claim;
    delivery.handler = handler;
    return next(delivery);
  };
