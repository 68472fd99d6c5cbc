import { randomUUID } from 'node:crypto';
import { type CreateInput, createCustomer } from '../client.js';
import { delay } from '../wait.js';

/** A create's story: each attempt's duration, and its final answer. */
export interface Create {
  readonly key: string;
  readonly input: CreateInput;
  readonly sentAt: number;
  readonly attempts: Array<{ at: number; ms: number; result: string }>;
  outcome: 'pending' | 'ok' | 'failed' | 'gave-up';
  customerId?: string;
  eventId?: string;
  doneAt?: number;
}

/** Long enough to see a hang for what it is, rather than cut it off as the client's own timeout. */
const ATTEMPT_TIMEOUT_MS = 120_000;
const GIVE_UP_AFTER_MS = 300_000;
const MAX_IN_FLIGHT = 100;

/**
 * Creates at a steady rate, each with an Idempotency-Key, retried with the same key after a
 * 503 or a transport failure until it is answered (bounded). Every attempt's duration is kept:
 * the longest is the longest request a client saw.
 */
export class Traffic {
  readonly creates: Create[] = [];
  /** Creates not sent because too many were unanswered. */
  heldBack = 0;
  private readonly abort = new AbortController();
  /** Ends requests in flight too: only for cleanup. */
  readonly hard = new AbortController();
  private readonly inFlight = new Set<Promise<void>>();
  private loop: Promise<void> | undefined;

  constructor(
    private readonly url: string,
    private readonly tag: string,
  ) {}

  start(ratePerSecond: number): void {
    this.loop = (async () => {
      const every = 1000 / ratePerSecond;
      for (let n = 0; !this.abort.signal.aborted; n++) {
        // A client with a bounded queue: past this many unanswered creates, it sends no more.
        if (this.inFlight.size >= MAX_IN_FLIGHT) {
          this.heldBack += 1;
          await delay(every, this.abort.signal);
          continue;
        }
        const work = this.send(`load-${n}`).then(
          () => {},
          () => {},
        );
        this.inFlight.add(work);
        void work.finally(() => this.inFlight.delete(work));
        await delay(every, this.abort.signal).catch(() => {});
      }
    })();
  }

  /** One create, retried until answered; resolves with its record. */
  async send(label: string, signal = this.hard.signal): Promise<Create> {
    const create: Create = {
      key: randomUUID(),
      input: { email: `${label}.${this.tag}.${randomUUID().slice(0, 8)}@partition.test`, name: `P ${label}` },
      sentAt: Date.now(),
      attempts: [],
      outcome: 'pending',
    };
    this.creates.push(create);
    for (let attempt = 0; ; attempt++) {
      const at = Date.now();
      const result = await createCustomer(this.url, create.input, create.key, ATTEMPT_TIMEOUT_MS, signal);
      create.attempts.push({
        at,
        ms: Date.now() - at,
        result: result.kind === 'retry' ? result.reason : result.kind,
      });
      if (result.kind === 'ok') {
        create.outcome = 'ok';
        create.customerId = result.customerId;
        create.eventId = result.eventId;
        create.doneAt = Date.now();
        return create;
      }
      if (result.kind === 'failed') {
        create.outcome = 'failed';
        return create;
      }
      if (signal.aborted || Date.now() - create.sentAt > GIVE_UP_AFTER_MS) {
        create.outcome = 'gave-up';
        return create;
      }
      // As a well-behaved client: exponential, jittered, so a heal is not met by a retry storm.
      const backoff = Math.min(8_000, 500 * 2 ** attempt);
      await delay(backoff / 2 + Math.random() * (backoff / 2), signal).catch(() => {});
    }
  }

  /** Stops sending and waits for the creates in flight to get their answers. */
  async stop(): Promise<void> {
    const pending = [...this.inFlight];
    this.abort.abort();
    await this.loop;
    await Promise.allSettled(pending);
  }
}

export interface ReadyzSample {
  readonly at: number;
  readonly ms: number;
  readonly status: number | 'no answer';
  readonly checks: Readonly<Record<string, string>>;
}

/** `/readyz` asked once a second; every answer kept with how long it took. */
export class ReadyzProbe {
  readonly samples: ReadyzSample[] = [];
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly url: string) {}

  start(): void {
    this.loop = (async () => {
      while (!this.abort.signal.aborted) {
        const at = Date.now();
        let sample: ReadyzSample;
        try {
          const response = await fetch(this.url, { signal: AbortSignal.timeout(10_000) });
          const body = (await response.json()) as { checks?: Record<string, string> };
          sample = { at, ms: Date.now() - at, status: response.status, checks: body.checks ?? {} };
        } catch {
          sample = { at, ms: Date.now() - at, status: 'no answer', checks: {} };
        }
        this.samples.push(sample);
        await delay(Math.max(0, 1_000 - (Date.now() - at)), this.abort.signal).catch(() => {});
      }
    })();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }
}
