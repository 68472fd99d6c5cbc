import type { ServerResponse } from 'node:http';
import type { EventStreamPosition } from './context.js';
import { INTERNAL_ERROR_MESSAGE } from './errors.js';
import type { StreamFraming } from './framing.js';
import { OperationFailure, type OperationStream } from './pipeline.js';

/**
 * How long a stream may wait for its client to take what was written before the connection is
 * closed: a client that stopped reading (or vanished without a FIN) holds a connection slot and
 * a feed subscription, and should not for long.
 */
export const STALL_TIMEOUT_MS = 60_000;

/**
 * One subscription's response: results pulled from the pipeline only as fast as the client
 * reads. The next result is asked for only once the socket has taken the last one, so a client
 * that never reads holds one event and the socket's buffer, while the feed keeps at most its
 * bounded queue and then reads in pages from the cursor: memory stays flat however long the
 * client stalls, and nothing is skipped when it reads again.
 */
export class StreamWriter {
  private ended = false;
  private stopping = false;
  private wake: (() => void) | undefined;
  private readonly done: Promise<void>;

  constructor(
    private readonly res: ServerResponse,
    private readonly framing: StreamFraming,
    private readonly results: OperationStream,
    private readonly position: EventStreamPosition | undefined,
  ) {
    res.once('close', () => {
      this.ended = true;
      this.wake?.();
      // The client left: end the subscription even while it waits for a quiet customer's event.
      void results.return?.();
    });
    this.done = this.run();
  }

  /** Resolves when the response has ended, whichever way. */
  get finished(): Promise<void> {
    return this.done;
  }

  /** The server is stopping: end the stream so that the client comes back and resumes. */
  stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    void this.results.return?.();
    return this.done;
  }

  private async run(): Promise<void> {
    const { res, framing, position } = this;
    res.writeHead(200, {
      'content-type': framing.contentType,
      // no-transform: a proxy must neither compress nor rewrite it; nginx reads the other.
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
    });
    const heartbeat = setInterval(() => {
      // Skipped while the client is behind: a heartbeat would only add to an unread buffer.
      if (!res.writableNeedDrain) this.write(framing.heartbeat());
    }, framing.heartbeatMs);
    let ending: string;
    try {
      let lastId = position?.cursor;
      this.write(framing.open(lastId));
      for (;;) {
        const step = await this.results.next();
        if (this.ended) return;
        if (step.done || this.stopping) {
          ending = this.stopping ? framing.goingAway() : framing.complete();
          break;
        }
        // The resolver has just set the cursor of the event this result is made of.
        const id = position?.cursor !== lastId ? position?.cursor : undefined;
        lastId = position?.cursor;
        if (!this.write(framing.next(step.value, id))) await this.drained();
      }
    } catch (error) {
      if (this.ended) return;
      ending = framing.failed(
        error instanceof OperationFailure
          ? error.errors
          : [{ message: INTERNAL_ERROR_MESSAGE, extensions: { code: 'INTERNAL_SERVER_ERROR' } }],
      );
    } finally {
      clearInterval(heartbeat);
    }
    if (!this.ended) res.end(ending);
  }

  /** Writes unless the response has ended; false when the client is behind. */
  private write(chunk: string): boolean {
    if (this.ended || chunk === '') return true;
    return this.res.write(chunk);
  }

  /** Until the client has taken what was written, the response ends, or the server stops. */
  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.res.destroy(), STALL_TIMEOUT_MS);
      const done = () => {
        clearTimeout(timer);
        this.res.off('drain', done);
        this.wake = undefined;
        resolve();
      };
      this.res.on('drain', done);
      this.wake = done;
    });
  }
}
