import { randomUUID } from 'node:crypto';
import { type CreateInput, createCustomer } from './client.js';
import type { SupervisedProcess } from './supervisor.js';
import { delay } from './wait.js';

export interface RequestRecord {
  readonly n: number;
  readonly key: string;
  readonly input: CreateInput;
  /** Warm-up creates that prove every subscriber is live; not part of the subscriber check. */
  readonly sentinel: boolean;
  readonly firstAt: number;
  attempts: number;
  /** Why each retried attempt was retried (`ECONNREFUSED`, `SERVICE_UNAVAILABLE`, …). */
  readonly retries: string[];
  outcome: 'pending' | 'ok' | 'failed' | 'gave-up';
  customerId?: string;
  eventId?: string;
  /** The final error code when `failed`. */
  code?: string;
  message?: string;
  /** The app that acknowledged it. */
  app?: string;
}

/** Per attempt; a frozen or overloaded app must not hold a request for long. */
const ATTEMPT_TIMEOUT_MS = 10_000;
/** Past this, a request that only ever failed in transport is given up (and checked at the end). */
const RETRY_DEADLINE_MS = 60_000;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000];

/**
 * A steady stream of createCustomer calls, each with a unique e-mail and its own idempotency
 * key, spread over the apps round-robin. A request that failed in transport or answered
 * SERVICE_UNAVAILABLE is sent again with the same key and input, to the next app, until it gets
 * a final answer or its retry deadline passes; the ledger keeps every request's story.
 */
export class Load {
  readonly ledger: RequestRecord[] = [];
  /** When each app last acknowledged a create: the "app works again" signal after a fault. */
  readonly lastAckAt = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private next = 0;
  private loop: Promise<void> | undefined;
  skipped = 0;
  private stopped = false;

  constructor(
    private readonly apps: readonly SupervisedProcess[],
    private readonly runId: string,
    /** The run's interrupt: requests give up their retries at once when it aborts. */
    private readonly interrupted: AbortSignal,
  ) {}

  get finished(): boolean {
    return this.stopped && this.inFlight.size === 0;
  }

  counts() {
    let ok = 0;
    let failed = 0;
    let gaveUp = 0;
    let retried = 0;
    for (const r of this.ledger) {
      if (r.outcome === 'ok') ok++;
      else if (r.outcome === 'failed') failed++;
      else if (r.outcome === 'gave-up') gaveUp++;
      if (r.attempts > 1) retried++;
    }
    return { sent: this.ledger.length, ok, failed, gaveUp, retried, pending: this.inFlight.size };
  }

  /** One create, retried as needed; resolves with its record once it has a final outcome. */
  async send(sentinel = false): Promise<RequestRecord> {
    const n = this.ledger.length + 1;
    const record: RequestRecord = {
      n,
      key: randomUUID(),
      input: { email: `c${n}.${this.runId}@chaos.example.com`, name: `Chaos ${n}` },
      sentinel,
      firstAt: Date.now(),
      attempts: 0,
      retries: [],
      outcome: 'pending',
    };
    this.ledger.push(record);
    const work = this.drive(record);
    this.inFlight.add(work);
    await work.finally(() => this.inFlight.delete(work));
    return record;
  }

  private async drive(record: RequestRecord): Promise<void> {
    let app = this.next++ % this.apps.length;
    for (;;) {
      const target = this.apps[app] as SupervisedProcess;
      record.attempts += 1;
      const outcome = await createCustomer(
        `http://127.0.0.1:${target.spec.port}/graphql`,
        record.input,
        record.key,
        ATTEMPT_TIMEOUT_MS,
        this.interrupted,
      );
      if (outcome.kind === 'ok') {
        record.outcome = 'ok';
        record.customerId = outcome.customerId;
        record.eventId = outcome.eventId;
        record.app = target.name;
        this.lastAckAt.set(target.name, Date.now());
        return;
      }
      if (outcome.kind === 'failed') {
        record.outcome = 'failed';
        record.code = outcome.code;
        record.message = outcome.message;
        return;
      }
      record.retries.push(outcome.reason);
      if (Date.now() - record.firstAt > RETRY_DEADLINE_MS || this.interrupted.aborted) {
        record.outcome = 'gave-up';
        record.code = outcome.reason;
        return;
      }
      const wait = BACKOFF_MS[Math.min(record.attempts - 1, BACKOFF_MS.length - 1)] ?? 2000;
      // Retries are not cut short by stop(), only by an interrupt: every request must end with
      // a final answer for the checks.
      await delay(wait, this.interrupted);
      app = (app + 1) % this.apps.length;
    }
  }

  /**
   * Sends `rate` creates per second until stop(). At most five seconds' worth are in flight
   * (retries included): a bounded client population, as in real life, rather than a retry storm
   * that measures the harness instead of the service. What the cap holds back is counted.
   */
  start(rate: number): void {
    const maxInFlight = Math.max(50, rate * 5);
    const startedAt = Date.now();
    let issued = 0;
    this.loop = (async () => {
      while (!this.abort.signal.aborted) {
        const due = Math.floor((rate * (Date.now() - startedAt)) / 1000);
        while (issued < due) {
          issued++;
          if (this.inFlight.size >= maxInFlight) this.skipped++;
          else void this.send().catch(() => {});
        }
        await delay(20, this.abort.signal);
      }
    })();
  }

  /** Stops sending and waits for every request already sent to reach a final outcome. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.loop;
    await Promise.allSettled([...this.inFlight]);
  }
}
