import type { Channel } from 'amqplib';
import type { BrokerConnection } from '../broker/connection.js';
import { ChannelSession } from '../broker/session.js';
import type { Topology } from '../broker/topology.js';
import {
  CUSTOMER_AGGREGATE,
  CUSTOMER_EVENT_HANDLED,
  type CustomerEventHandledPayload,
} from '../customers/events.js';
import type { Database } from '../db/client.js';
import type { Logger } from '../log.js';
import { routingKeyOf } from '../outbox/event.js';
import { listAggregateEvents, listPublishedSince } from '../outbox/store.js';
import { backoffDelay, sleep } from '../support/sleep.js';

/** What onCustomerEvent and customerEvents return: one handled event. */
export interface CustomerEvent {
  readonly eventId: string;
  readonly type: string;
  readonly customerId: string;
  readonly occurredAt: string;
  readonly handledAt: string;
  readonly payload: unknown;
}

export function toCustomerEvent(notification: CustomerEventHandledPayload): CustomerEvent {
  return {
    eventId: notification.handledEventId,
    type: notification.handledEventType,
    customerId: notification.customerId,
    occurredAt: notification.handledEventOccurredAt,
    handledAt: notification.handledAt,
    payload: notification.handledEventPayload,
  };
}

/** A customer's handled events from the database, oldest first. */
export async function loadCustomerEvents(db: Database, customerId: string): Promise<CustomerEvent[]> {
  const envelopes = await listAggregateEvents(db, CUSTOMER_AGGREGATE, customerId, CUSTOMER_EVENT_HANDLED);
  return envelopes.map((e) => toCustomerEvent(e.payload as CustomerEventHandledPayload));
}

type Listener = (event: CustomerEvent) => void;

/** Slow subscribers are cut off rather than let the process buffer without bound. */
const MAX_BUFFERED_PER_SUBSCRIBER = 10_000;
/** Event ids remembered to drop broker redeliveries and relay duplicates. */
const RECENT_IDS = 50_000;
/** How far before the moment the broker was lost a catch-up starts reading. */
const CATCH_UP_MARGIN_MS = 10_000;

/**
 * The app instance's feed of handled events. Each instance consumes through an exclusive,
 * auto-deleted queue of its own bound to the exchange, so every instance sees every
 * notification and can serve any subscriber. A message seen twice (at-least-once delivery) is
 * passed on once.
 */
export class LiveEvents {
  private readonly listeners = new Set<Listener>();
  private readonly recent = new Set<string>();
  private readonly session: ChannelSession;

  constructor(
    broker: BrokerConnection,
    topology: Topology,
    private readonly db: Database,
    private readonly log: Logger,
  ) {
    this.session = new ChannelSession(broker, 'live events', log, async (channel: Channel) => {
      await channel.assertExchange(topology.exchange, 'topic', { durable: true });
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
      await channel.bindQueue(queue, topology.exchange, routingKeyOf(CUSTOMER_EVENT_HANDLED));
      await channel.consume(
        queue,
        (message) => {
          if (message) this.dispatch(message.content);
          else ChannelSession.cancelled(channel, log, 'live events');
        },
        { noAck: true },
      );
      channel.once('close', () => {
        this.lostAt ??= new Date();
        this.losses++;
      });
      // Back after losing the broker: the queue was exclusive, so it died with the connection
      // and every notification published meanwhile went past this instance. Read them from the
      // outbox; the duplicate filter drops the ones that were delivered after all.
      if (this.lostAt && !this.catchingUp) void this.catchUp();
    });
  }

  /** When the broker was first lost since the last complete catch-up. */
  private lostAt: Date | undefined;
  /** Counts losses, so a catch-up can tell whether another one happened while it ran. */
  private losses = 0;
  private catchingUp = false;
  private stopped = false;

  /**
   * Replays the notifications published since the loss (by published_at: a notification handled
   * long before, but published during the outage, was missed as well), retrying while the
   * database is unavailable. The margin absorbs clock skew between this machine and the
   * database's.
   */
  private async catchUp(): Promise<void> {
    this.catchingUp = true;
    try {
      for (let failures = 0; this.lostAt && !this.stopped; ) {
        const losses = this.losses;
        const since = new Date(this.lostAt.getTime() - CATCH_UP_MARGIN_MS);
        try {
          const missed = await listPublishedSince(this.db, CUSTOMER_EVENT_HANDLED, since, RECENT_IDS);
          for (const envelope of missed) this.dispatchNotification(envelope.eventId, envelope.payload);
          this.log.info({ since, replayed: missed.length }, 'live events caught up after reconnecting');
          // Lost again meanwhile: go round once more from the same moment.
          if (this.losses === losses) this.lostAt = undefined;
        } catch (error) {
          failures++;
          const delay = backoffDelay(failures, 200, 10_000);
          this.log.warn({ err: error, retryInMs: delay }, 'could not catch up on live events');
          await sleep(delay);
        }
      }
    } finally {
      this.catchingUp = false;
    }
  }

  start(): void {
    this.session.start();
  }

  stop(): Promise<void> {
    this.stopped = true;
    return this.session.stop();
  }

  /**
   * Subscribes to handled events, optionally of one customer. With a customer, that customer's
   * already-handled events come first, from the database, then live ones. The live listener is
   * registered before the database is read, and live events already sent from the history are
   * skipped, so an event handled while the history loads is neither missed nor sent twice.
   */
  subscribe(customerId: string | undefined): AsyncIterableIterator<CustomerEvent> {
    const buffer: CustomerEvent[] = [];
    let wake: (() => void) | undefined;
    let closed = false;
    let overflow = false;
    const listener: Listener = (event) => {
      if (customerId !== undefined && event.customerId !== customerId) return;
      if (buffer.length >= MAX_BUFFERED_PER_SUBSCRIBER) overflow = true;
      else buffer.push(event);
      wake?.();
    };
    this.listeners.add(listener);
    const listeners = this.listeners;
    const db = this.db;

    const stream = (async function* () {
      const history = new Set<string>();
      try {
        if (customerId !== undefined) {
          for (const event of await loadCustomerEvents(db, customerId)) {
            history.add(event.eventId);
            yield event;
          }
        }
        while (!closed) {
          if (overflow) throw new Error('Subscriber too slow: events were dropped');
          const event = buffer.shift();
          if (event === undefined) {
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
            wake = undefined;
          } else if (!history.has(event.eventId)) {
            yield event;
          }
        }
      } finally {
        listeners.delete(listener);
      }
    })();

    // An async generator waiting inside `await` only sees return() at its next yield, which for
    // a quiet customer may be never; so return() first ends the wait, then the generator.
    const close = () => {
      closed = true;
      listeners.delete(listener);
      wake?.();
    };
    return {
      next: () => stream.next(),
      return: (value?: unknown) => {
        close();
        return stream.return(value as undefined);
      },
      throw: (error?: unknown) => {
        close();
        return stream.throw(error);
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  private dispatch(content: Buffer): void {
    let envelope: { eventId?: unknown; payload?: unknown };
    try {
      envelope = JSON.parse(content.toString('utf8'));
    } catch (error) {
      this.log.warn({ err: error }, 'ignored a live event that is not JSON');
      return;
    }
    this.dispatchNotification(envelope.eventId, envelope.payload);
  }

  private dispatchNotification(eventId: unknown, payload: unknown): void {
    const notification = payload as Partial<CustomerEventHandledPayload> | undefined;
    if (typeof eventId !== 'string' || typeof notification?.handledEventId !== 'string') {
      this.log.warn({ eventId }, 'ignored a malformed live event');
      return;
    }
    if (this.recent.has(eventId)) return;
    this.remember(eventId);
    const event = toCustomerEvent(notification as CustomerEventHandledPayload);
    for (const listener of this.listeners) listener(event);
  }

  private remember(id: string): void {
    this.recent.add(id);
    if (this.recent.size > RECENT_IDS) {
      // Sets iterate in insertion order: the first entry is the oldest.
      const oldest = this.recent.values().next().value;
      if (oldest !== undefined) this.recent.delete(oldest);
    }
  }
}
