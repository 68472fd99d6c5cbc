import { type Claim, claimOf, stillConnected } from './claims.js';
import type { HarnessDb } from './harness-db.js';
import type { PrivateMariaDb } from './mariadb.js';
import type { PrivateRabbitMq } from './rabbitmq.js';
import type { RecoveryTracker } from './recovery.js';
import { say, seconds } from './report.js';
import { describe, type Fault, isServerFault } from './schedule.js';
import type { SupervisedProcess } from './supervisor.js';
import { delay } from './wait.js';

export interface FaultRun {
  readonly id: number;
  readonly fault: Fault;
  startedAt: number | undefined;
  endedAt: number | undefined;
  /** Why it did not happen as scheduled (e.g. the victim was between incarnations). */
  skipped: string | undefined;
  /** What else was seen, e.g. the server ending a frozen relay's claim. */
  note: string | undefined;
}

/**
 * How long a freeze tries to catch its relay holding a claim before freezing it anyway. A batch
 * is held for only tens of milliseconds when the relay keeps up, so it takes many quick tries.
 */
const CLAIM_WAIT_MS = 20_000;
const CLAIM_TRY_EVERY_MS = 50;
const SERVER_RECOVERY_WAIT_MS = 30_000;

export interface FaultTargets {
  readonly processes: readonly SupervisedProcess[];
  readonly dbServer: PrivateMariaDb;
  /** The harness's connection, to see what a frozen relay held. */
  readonly db: HarnessDb;
  readonly mq: PrivateRabbitMq;
  readonly recovery: RecoveryTracker;
}

/**
 * Plays the schedule: each fault at its time, process faults as they come, server faults one
 * after the other (a server fault waits for the previous one to be over, should a restart take
 * longer than its slot).
 */
export class FaultPlayer {
  readonly runs: FaultRun[];
  private readonly pending: Array<Promise<void>> = [];
  private serverChain: Promise<void> = Promise.resolve();
  private loop: Promise<void> | undefined;
  /** The first fault that could not be played or undone (a server that did not come back). */
  failure: unknown;

  constructor(
    schedule: readonly Fault[],
    private readonly targets: FaultTargets,
    private readonly signal: AbortSignal,
  ) {
    this.runs = schedule.map((fault, i) => ({
      id: i + 1,
      fault,
      startedAt: undefined,
      endedAt: undefined,
      skipped: undefined,
      note: undefined,
    }));
  }

  start(loadStartedAt: number): void {
    const halted = new AbortController();
    const waitSignal = AbortSignal.any([this.signal, halted.signal]);
    this.loop = (async () => {
      for (const run of this.runs) {
        await delay(Math.max(0, loadStartedAt + run.fault.at - Date.now()), waitSignal);
        // After a server did not come back the run is over; more faults would only muddy it.
        if (this.signal.aborted || this.failure !== undefined) return;
        let played: Promise<void>;
        if (isServerFault(run.fault)) {
          played = this.serverChain.then(() => this.play(run));
          this.serverChain = played;
        } else {
          played = this.play(run);
        }
        // Handled here so a failure is neither unhandled nor lost: finished() rethrows it, and
        // the run stops early when a server did not come back.
        played.catch((error: unknown) => {
          this.failure ??= error;
          halted.abort();
        });
        this.pending.push(played);
      }
    })();
  }

  /** Resolves when every fault has been played and undone; rejects if a server did not come back. */
  async finished(): Promise<void> {
    await this.loop;
    const results = await Promise.allSettled(this.pending);
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;
  }

  private find(name: string): SupervisedProcess {
    const proc = this.targets.processes.find((p) => p.name === name);
    if (!proc) throw new Error(`no process named ${name}`);
    return proc;
  }

  /**
   * Freezes the relay at a moment it holds a claim (row locks in an open transaction), so the
   * freeze tests what bounds a frozen claim: freezes, looks at what it holds, and if nothing,
   * lets it go and tries again a little later (until CLAIM_WAIT_MS, then it stays frozen with
   * nothing). Freezing first and looking second is the only order without a race: a running
   * relay may settle its batch between a look and a freeze.
   */
  private async freezeHoldingClaim(
    proc: SupervisedProcess,
  ): Promise<{ incarnation: number; pid: number; claim: Claim } | undefined> {
    const until = Date.now() + CLAIM_WAIT_MS;
    for (;;) {
      const pid = proc.pid;
      const incarnation = proc.freeze();
      if (incarnation === undefined || pid === undefined) return undefined;
      const claim = await claimOf(this.targets.db, pid).catch(() => ({ rows: 0, threads: [] }));
      if (claim.rows > 0 || Date.now() >= until || this.signal.aborted) return { incarnation, pid, claim };
      proc.thaw(incarnation);
      await delay(CLAIM_TRY_EVERY_MS, this.signal);
    }
  }

  private async play(run: FaultRun): Promise<void> {
    const { fault } = run;
    const { dbServer, mq, recovery, processes } = this.targets;
    if (this.signal.aborted) return;
    run.startedAt = Date.now();
    say(`fault #${run.id}: ${describe(fault)}`);
    switch (fault.kind) {
      case 'kill': {
        const proc = this.find(fault.target);
        const incarnation = proc.incarnation;
        if (!proc.kill()) {
          run.skipped = `${proc.name} was not running (between restarts)`;
          break;
        }
        recovery.faultStarted(run.id, proc);
        run.endedAt = Date.now();
        // The next incarnation counts from zero: any progress of it is recovery.
        await recovery.watch(run.id, proc, run.endedAt, { incarnation, value: 0 });
        break;
      }
      case 'freeze': {
        const proc = this.find(fault.target);
        if (proc.frozen) {
          // Two freezes of one relay would overlap; the second would thaw nothing of its own.
          run.skipped = `${proc.name} was already frozen by another fault`;
          break;
        }
        const baseline = await recovery.baselineOf(proc);
        const frozen = await this.freezeHoldingClaim(proc);
        if (!frozen) {
          run.skipped = `${proc.name} was not running (between restarts)`;
          break;
        }
        recovery.faultStarted(run.id, proc);
        await delay(fault.holdMs, this.signal);
        // Still frozen: has the server ended the claim (closed its connections) by now?
        const left = await stillConnected(this.targets.db, frozen.claim.threads).catch(
          (error: unknown) => `? (${error instanceof Error ? error.message : String(error)})`,
        );
        const thawed = proc.thaw(frozen.incarnation);
        run.endedAt = Date.now();
        run.note = [
          frozen.claim.rows === 0
            ? 'it held no claim when frozen'
            : left === 0
              ? `it held a claim (${frozen.claim.rows} row locks); the server ended it (wait_timeout) before the thaw`
              : `it held a claim (${frozen.claim.rows} row locks); ${left} of its ${frozen.claim.threads.length} claiming connections were still open at the thaw`,
          thawed ? '' : 'killed by a later fault while frozen',
        ]
          .filter(Boolean)
          .join('; ');
        // A relay killed while frozen is the kill's to recover from.
        if (thawed) await recovery.watch(run.id, proc, run.endedAt, baseline);
        break;
      }
      case 'broker-restart':
      case 'broker-kill':
      case 'db-kill': {
        const server = fault.kind === 'db-kill' ? 'MariaDB' : 'RabbitMQ';
        recovery.faultStarted(run.id, 'all');
        if (fault.kind === 'broker-restart') await mq.stop();
        else if (fault.kind === 'broker-kill') await mq.kill();
        else await dbServer.kill();
        const stoppedIn = Date.now() - run.startedAt;
        await delay(fault.downMs, this.signal);
        if (this.signal.aborted) return;
        const startAt = Date.now();
        if (fault.kind === 'db-kill') await dbServer.start();
        else await mq.start();
        run.endedAt = Date.now();
        recovery.serverBack(run.endedAt);
        run.note = `stopped in ${seconds(stoppedIn)}, started in ${seconds(run.endedAt - startAt)}`;
        say(`fault #${run.id}: ${server} is back (${run.note})`);
        await Promise.all(processes.map((p) => recovery.watch(run.id, p, run.endedAt ?? Date.now())));
        // The next server fault waits until the system is back from this one (bounded), so each
        // recovery is measured on its own instead of being cut short by the next outage.
        await recovery.recovered(run.id, SERVER_RECOVERY_WAIT_MS, this.signal);
        break;
      }
    }
  }
}
