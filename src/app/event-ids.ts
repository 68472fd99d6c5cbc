import { InvalidInputError } from '../errors.js';

/** An event id as the outbox writes it (a UUID, 36 characters: the column's width). */
const EVENT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Event ids per operator call: reviveDead and skipDead lock the rows they name, in one
 * statement each, so a list of a million ids would be one statement of tens of megabytes and
 * one long transaction. Omitting the list (reviveDeadEvents) revives all, in chunks.
 */
export const MAX_EVENT_IDS = 1_000;

/**
 * The `eventIds` argument of the dead-event operations, checked: each an event id (a typo or a
 * customer id is BAD_USER_INPUT naming its place, `eventIds.2`, rather than an id that
 * silently matches nothing), and at most MAX_EVENT_IDS of them.
 */
export function parseEventIds(ids: readonly string[], field = 'eventIds'): string[] {
  if (ids.length > MAX_EVENT_IDS) {
    throw new InvalidInputError(
      field,
      `At most ${MAX_EVENT_IDS} event ids per call; send the rest in another`,
    );
  }
  ids.forEach((id, i) => {
    if (!EVENT_ID.test(id)) throw new InvalidInputError(`${field}.${i}`, 'Not an event id (a UUID)');
  });
  return [...ids];
}
