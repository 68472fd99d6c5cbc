/** Polls `check` until it returns a truthy value or the deadline passes, then fails with `what`. */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  { timeoutMs = 20_000, intervalMs = 25 } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `Timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * Proves a subscription without a cursor is live. It starts at the end of the history when the
 * server takes it, which the protocol does not acknowledge, so an event made right after
 * subscribing may fall before that end. Makes an event and waits a little for it; if it does
 * not come, makes another; returns the first one that came (the subscription is live from then).
 */
export async function untilLive<T extends { eventId: string }>(
  what: string,
  make: () => Promise<T>,
  seen: (eventId: string) => boolean,
  { timeoutMs = 60_000, eachMs = 3_000 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const made = await make();
    try {
      await waitFor(what, () => seen(made.eventId), { timeoutMs: eachMs });
      return made;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
  }
}
