import type { Logger } from '../log.js';
import { Condition } from './log-limit.js';
import { backoffDelay, sleep } from './sleep.js';

/** What one turn of a loop's body reports. */
export type Turn =
  /** There was work and may be more: go again at once. */
  | 'busy'
  /** Nothing to do: wait for the idle interval or a wake(). */
  | 'idle';

export interface LoopOptions {
  /** Names the loop in its log lines. */
  readonly name: string;
  /**
   * Names its failures in the log, shared by loops that fail together (a relay's lanes): one
   * line per interval for them all. Defaults to `name`.
   */
  readonly condition?: string;
  readonly log: Logger;
  /** Wait after an idle turn unless woken; omit for loops whose body waits by itself. */
  readonly idleMs?: number;
  /** Back-off after failed turns: base × 2^(failures-1), half-jittered, capped at max. */
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
}

/** Given to the body on every turn. */
export interface TurnContext {
  /** Aborts when stop() is called: pass it to every wait the body makes. */
  readonly signal: AbortSignal;
  /** Consecutive failed turns before this one (0 after a success). */
  readonly failures: number;
  /**
   * Says the loop works again before the turn ends, for a turn that lasts (a connection kept
   * open until it closes); other turns recover when they return.
   */
  recovered(): void;
}

/**
 * The one shape of every long-running loop in the service (relay lanes, the history feed, the
 * pruner, broker reconnects), after pg-boss: `while (!stopping)` run a turn; after a failure,
 * back off with jitter instead of spinning, counting consecutive failures; when idle, sleep
 * until the interval passes, wake() is called, or stop() is. stop() is idempotent, aborts the
 * sleeps and the body's waits through its signal, and resolves once the current turn finished.
 *
 * The body throws to report a failure; the loop logs it (warn) and backs off. A body that must
 * not back off on some error catches it itself.
 */
export class Loop {
  private readonly stopController = new AbortController();
  private wakeController = new AbortController();
  private running: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly options: LoopOptions,
    private readonly body: (context: TurnContext) => Promise<Turn>,
  ) {}

  /** Starts the loop; a second call does nothing. */
  start(): void {
    this.running ??= this.run();
  }

  get stopped(): boolean {
    return this.stopController.signal.aborted;
  }

  /** Aborted once stop() was called. */
  get signal(): AbortSignal {
    return this.stopController.signal;
  }

  /** There may be work: end an idle wait now. Cheap; call it as often as you like. */
  wake(): void {
    this.wakeController.abort();
  }

  /** Idempotent: every call returns the same promise, resolved when the loop has ended. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.stopController.abort();
      await this.running;
    })();
    return this.stopping;
  }

  private async run(): Promise<void> {
    const { log, name, idleMs, backoffBaseMs, backoffMaxMs } = this.options;
    const signal = this.stopController.signal;
    // One line per outage and then one per interval, not one per retry: a long network cut
    // must leave the logs readable.
    const failing = new Condition(log, this.options.condition ?? name);
    let failures = 0;
    const recovered = () => {
      if (failures > 0) failing.cleared({ loop: name, failures }, `${name} recovered`);
      failures = 0;
    };
    while (!signal.aborted) {
      // A wake() made before this turn is covered by it (also one made during a back-off, which
      // would otherwise skip the next idle wait for nothing)…
      if (this.wakeController.signal.aborted) this.wakeController = new AbortController();
      // …and one made while the body works must not be lost: the idle wait below ends at once.
      const wakeSignal = this.wakeController.signal;
      let turn: Turn;
      try {
        turn = await this.body({ signal, failures, recovered });
        recovered();
      } catch (error) {
        if (signal.aborted) break;
        failures++;
        const delay = backoffDelay(failures, backoffBaseMs, backoffMaxMs);
        failing.occurred(
          'warn',
          { err: error, loop: name, failures, retryInMs: delay },
          `${name} failed; backing off`,
        );
        await sleep(delay, signal);
        continue;
      }
      if (turn === 'idle' && idleMs !== undefined) {
        await sleep(idleMs, wakeSignal, signal);
      }
    }
  }
}
