import { z } from 'zod';
import type { EventEnvelope } from '../outbox/event.js';

const envelopeSchema = z.object({
  eventId: z.string().min(1).max(64),
  type: z.string().min(1).max(128),
  aggregateType: z.string().min(1).max(64),
  aggregateId: z.string().min(1).max(64),
  sequence: z.number().int().positive(),
  occurredAt: z.iso.datetime({ offset: true }),
  payload: z.unknown(),
});

export class MalformedMessageError extends Error {
  override readonly name = 'MalformedMessageError';
}

/**
 * Reads a message body as the broker contract's envelope. Anything else (not JSON, fields
 * missing or of the wrong type, a message id that disagrees with the event id) is malformed:
 * retrying cannot fix it, so the worker parks it at once.
 */
export function parseEnvelope(content: Buffer, messageId: string | undefined): EventEnvelope {
  let json: unknown;
  try {
    json = JSON.parse(content.toString('utf8'));
  } catch {
    throw new MalformedMessageError('body is not JSON');
  }
  const parsed = envelopeSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new MalformedMessageError(
      `envelope ${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  if (messageId !== undefined && messageId !== parsed.data.eventId) {
    throw new MalformedMessageError('messageId does not match the envelope eventId');
  }
  return parsed.data as EventEnvelope;
}
