import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import type { Capabilities } from './client.js';
import type { SupervisedProcess } from './supervisor.js';
import { delay } from './wait.js';

export interface ReceivedEvent {
  readonly eventId: string;
  readonly type: string;
  readonly customerId: string;
  readonly sequence: number | undefined;
  readonly cursor: string | undefined;
}

function subscriptionFor(capabilities: Capabilities): string {
  const extra = [capabilities.sequence ? 'sequence' : '', capabilities.cursors ? 'cursor' : '']
    .filter(Boolean)
    .join(' ');
  return capabilities.cursors
    ? `subscription ChaosFeed($after: String) { onCustomerEvent(after: $after) { eventId type customerId ${extra} } }`
    : `subscription ChaosFeed { onCustomerEvent { eventId type customerId ${extra} } }`;
}

const BACKOFF_MS = [100, 250, 500, 1000, 2000];

/**
 * A client of onCustomerEvent that keeps its place: it remembers the cursor of the last event
 * and, whenever the connection or the subscription ends, subscribes again after that cursor,
 * on the next app in turn (so a resume is proven across instances, not only on the same one).
 * The first subscription has no cursor and starts from "now".
 */
export class Subscriber {
  readonly received: ReceivedEvent[] = [];
  readonly ids = new Map<string, number>();
  /** Subscriptions after the first one. */
  resubscriptions = 0;
  /** Errors the server sent on the subscription (not closes), e.g. an unknown cursor. */
  readonly errors: string[] = [];
  private lastCursor: string | undefined;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private dispose: (() => void) | undefined;
  private readonly query: string;

  constructor(
    readonly name: string,
    private readonly apps: readonly SupervisedProcess[],
    private readonly home: number,
    private readonly capabilities: Capabilities,
  ) {
    this.query = subscriptionFor(capabilities);
  }

  start(): void {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    let turn = this.home;
    let failures = 0;
    let first = true;
    while (!this.abort.signal.aborted) {
      const app = this.apps[turn % this.apps.length] as SupervisedProcess;
      if (!first) this.resubscriptions++;
      first = false;
      const began = Date.now();
      await this.session(`ws://127.0.0.1:${app.spec.port}/graphql`);
      if (this.abort.signal.aborted) return;
      // A session that lasted was a healthy one: the next try starts quickly again.
      failures = Date.now() - began > 5000 ? 0 : failures + 1;
      await delay(BACKOFF_MS[Math.min(failures, BACKOFF_MS.length - 1)] ?? 2000, this.abort.signal);
      turn++;
    }
  }

  /** One connection and one subscription; resolves when either ends. */
  private session(url: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const client = createClient({
        url,
        webSocketImpl: WebSocket,
        lazy: true,
        retryAttempts: 0,
        connectionAckWaitTimeout: 5000,
        // Pings keep a half-open connection (a frozen or vanished peer) from hanging forever.
        keepAlive: 5000,
      });
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        this.dispose = undefined;
        void client.dispose();
        resolve();
      };
      this.dispose = end;
      const variables = this.capabilities.cursors && this.lastCursor ? { after: this.lastCursor } : {};
      client.subscribe<{ onCustomerEvent: Record<string, unknown> }>(
        { query: this.query, variables },
        {
          next: (result) => {
            if (result.errors?.length) {
              this.errors.push(result.errors.map((e) => e.message).join('; '));
              return;
            }
            const e = result.data?.onCustomerEvent;
            if (e) this.record(e);
          },
          error: (error) => {
            if (Array.isArray(error)) this.errors.push(error.map((e) => String(e.message)).join('; '));
            end();
          },
          complete: end,
        },
      );
    });
  }

  private record(e: Record<string, unknown>): void {
    const event: ReceivedEvent = {
      eventId: String(e.eventId),
      type: String(e.type),
      customerId: String(e.customerId),
      sequence: typeof e.sequence === 'number' ? e.sequence : undefined,
      cursor: typeof e.cursor === 'string' ? e.cursor : undefined,
    };
    this.received.push(event);
    this.ids.set(event.eventId, (this.ids.get(event.eventId) ?? 0) + 1);
    if (event.cursor) this.lastCursor = event.cursor;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.dispose?.();
    await this.loop;
  }
}

export function startSubscribers(
  apps: readonly SupervisedProcess[],
  perApp: number,
  capabilities: Capabilities,
): Subscriber[] {
  const subscribers: Subscriber[] = [];
  for (let a = 0; a < apps.length; a++) {
    for (let i = 1; i <= perApp; i++) {
      const subscriber = new Subscriber(`sub-${a + 1}.${i}`, apps, a, capabilities);
      subscriber.start();
      subscribers.push(subscriber);
    }
  }
  return subscribers;
}
