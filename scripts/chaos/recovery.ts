import type { Load } from './load.js';
import type { Role, SupervisedProcess } from './supervisor.js';
import { delay } from './wait.js';

/** The counter that moves when a process of this role does its job. */
const PROGRESS_METRIC: Record<Exclude<Role, 'app'>, string> = {
  relay: 'outbox_events_published_total',
  worker: 'worker_messages_total',
};

export interface Recovery {
  readonly fault: number;
  readonly process: string;
  /**
   * When the fault ended: the kill itself, the SIGCONT, the server ready again. For a fault
   * that ended while a server was away, the moment the server was back: a process cannot be
   * expected to work without its database or broker.
   */
  since: number;
  recoveredAt: number | undefined;
  /** A later fault hit the process before it recovered from this one; no time is counted. */
  supersededBy: number | undefined;
}

interface Watch extends Recovery {
  readonly proc: SupervisedProcess;
  baseline: { incarnation: number; value: number } | undefined;
  /** Opened while a server was away: the clock starts when it is back. */
  waitingForServer: boolean;
}

/**
 * How long each process took to work again after each fault. "Works" means more than "is up":
 * an app acknowledged a create again (once the load is over: answers /readyz, which checks its
 * dependencies), a relay published again, a worker handled again (their counters moved; once
 * the load is over and nothing is left to do, answering /healthz is enough). Measured from the
 * end of the fault.
 */
export class RecoveryTracker {
  private readonly watches: Watch[] = [];
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;

  /** True when the load is over and the system has nothing left to do; refreshed each round. */
  private idle = false;
  /** A broker or database fault is under way. */
  private serverAway = false;

  /** `nothingToDo`: no pending event and every customer handled (asked only after the load). */
  constructor(
    private readonly load: Load,
    private readonly nothingToDo: () => Promise<boolean>,
  ) {}

  get results(): readonly Recovery[] {
    return this.watches;
  }

  private get openWatches(): Watch[] {
    return this.watches.filter((w) => w.recoveredAt === undefined && w.supersededBy === undefined);
  }

  get open(): number {
    return this.openWatches.length;
  }

  /**
   * A new fault begins. Recoveries still open on what it hits are closed as superseded: their
   * time would measure the new fault, not theirs. A server fault hits every process.
   */
  faultStarted(fault: number, hits: SupervisedProcess | 'all'): void {
    for (const w of this.openWatches) {
      if (hits === 'all' || w.proc === hits) w.supersededBy = fault;
    }
    if (hits === 'all') this.serverAway = true;
  }

  /** The server is back: recoveries opened meanwhile start their clocks now. */
  serverBack(at: number): void {
    this.serverAway = false;
    for (const w of this.openWatches) {
      if (w.waitingForServer) {
        w.waitingForServer = false;
        w.since = at;
      }
    }
  }

  /** Resolves when every process hit by `fault` has recovered (or was hit again), or at the deadline. */
  async recovered(fault: number, timeoutMs: number, signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!signal.aborted && Date.now() < deadline && this.openWatches.some((w) => w.fault === fault)) {
      await delay(250, signal);
    }
  }

  /** Reads the progress counter now; call before freezing, when the process still answers. */
  async baselineOf(proc: SupervisedProcess): Promise<Watch['baseline']> {
    if (proc.role === 'app') return undefined;
    const incarnation = proc.incarnation;
    const value = await proc.counter(PROGRESS_METRIC[proc.role]);
    return value === undefined ? undefined : { incarnation, value };
  }

  async watch(fault: number, proc: SupervisedProcess, since: number, baseline?: Watch['baseline']) {
    const watch: Watch = {
      fault,
      process: proc.name,
      since,
      recoveredAt: undefined,
      supersededBy: undefined,
      proc,
      baseline: baseline ?? (await this.baselineOf(proc)),
      waitingForServer: this.serverAway,
    };
    this.watches.push(watch);
  }

  start(): void {
    this.loop = (async () => {
      while (!this.abort.signal.aborted) {
        this.idle = this.load.finished && (await this.nothingToDo().catch(() => false));
        await Promise.all(this.openWatches.filter((w) => !w.waitingForServer).map((w) => this.check(w)));
        await delay(250, this.abort.signal);
      }
    })();
  }

  private async check(w: Watch): Promise<void> {
    const { proc } = w;
    if (!proc.running || proc.frozen || !(await proc.healthy())) return;
    if (await this.progressed(w)) w.recoveredAt = Date.now();
  }

  private async progressed(w: Watch): Promise<boolean> {
    const { proc } = w;
    if (proc.role === 'app') return this.load.finished || (this.load.lastAckAt.get(proc.name) ?? 0) > w.since;
    if (this.idle) return true;
    const value = await proc.counter(PROGRESS_METRIC[proc.role]);
    if (value === undefined) return false;
    // A restarted process counts from zero; a baseline read while it was away is taken now.
    if (w.baseline === undefined) {
      w.baseline = { incarnation: proc.incarnation, value };
      return false;
    }
    return w.baseline.incarnation === proc.incarnation ? value > w.baseline.value : value > 0;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }
}
