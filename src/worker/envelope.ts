import { z } from 'zod';
import type { EventEnvelope } from '../outbox/event.js';
import { PermanentFailure } from '../outbox/handler.js';

const envelopeSchema = z.strictObject({
  eventId: z.uuid(),
  type: z.string().min(1).max(128),
  aggregateType: z.string().min(1).max(64),
  aggregateId: z.string().min(1).max(64),
  sequence: z.number().int().positive().max(4_294_967_295),
  occurredAt: z.iso.datetime({ offset: true }),
  payload: z.unknown(),
});

/**
 * Reads a message body as the broker contract's envelope. Anything else (too large, not JSON,
 * fields missing, unknown or of the wrong type, a message id that disagrees with the event id)
 * cannot be fixed by retrying: the worker parks it at once. The envelope is only a claim; the
 * worker then compares it with the stored event (worker.ts).
 */
export function parseEnvelope(
  content: Buffer,
  messageId: string | undefined,
  maxBytes: number,
): EventEnvelope {
  if (content.length > maxBytes) {
    throw new PermanentFailure(`body is ${content.length} bytes, over the ${maxBytes} allowed`);
  }
  let json: unknown;
  try {
    json = JSON.parse(content.toString('utf8'));
  } catch {
    throw new PermanentFailure('body is not JSON');
  }
  const parsed = envelopeSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new PermanentFailure(`envelope ${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`);
  }
  if (messageId !== parsed.data.eventId) {
    throw new PermanentFailure('messageId does not match the envelope eventId');
  }
  return parsed.data as EventEnvelope;
}
