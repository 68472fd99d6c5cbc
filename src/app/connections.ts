/**
 * The long-lived connections of this process, whatever carries them (WebSocket, SSE,
 * multipart), against one cap (WS_MAX_CONNECTIONS): each holds a socket, a feed subscription
 * and its queue, so the cap bounds memory and file descriptors only if every transport counts.
 */
export class ConnectionBudget {
  private taken = 0;

  constructor(readonly max: number) {}

  /** Open connections, counted from the moment a slot is taken. */
  get size(): number {
    return this.taken;
  }

  /**
   * A slot, or undefined at the cap. The release it returns may be called any number of times
   * (a close and an error may both report one end) and frees the slot once.
   */
  take(): (() => void) | undefined {
    if (this.taken >= this.max) return undefined;
    this.taken++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.taken--;
    };
  }
}
