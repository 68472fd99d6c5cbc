import type { Channel } from 'amqplib';
import type { BrokerConnection } from '../broker/connection.js';
import { ChannelSession } from '../broker/session.js';
import type { Logger } from '../log.js';

/**
 * How standalone relays learn of new outbox rows within milliseconds without polling fast.
 *
 * MySQL has no LISTEN/NOTIFY, so the hint travels over the broker we already have: after a
 * commit, the app publishes an empty, transient message to a fanout exchange; every relay
 * listens on an exclusive queue of its own and wakes up. Hints are only hints: a lost one costs
 * one poll interval, never an event, because the relay's correctness rests on the outbox table
 * alone. Bursts are coalesced to one hint per window per app instance.
 */
export class WakeupNotifier {
  private lastSentAt = 0;
  private trailing: NodeJS.Timeout | undefined;
  private readonly session: ChannelSession;

  constructor(
    broker: BrokerConnection,
    private readonly exchange: string,
    log: Logger,
    private readonly windowMs = 20,
  ) {
    this.session = new ChannelSession(broker, 'wakeup notifier', log, async (channel) => {
      await channel.assertExchange(exchange, 'fanout', { durable: false });
    });
  }

  start(): void {
    this.session.start();
  }

  notify(): void {
    if (this.trailing) return;
    const wait = this.lastSentAt + this.windowMs - Date.now();
    if (wait <= 0) {
      this.send();
      return;
    }
    this.trailing = setTimeout(() => {
      this.trailing = undefined;
      this.send();
    }, wait);
  }

  async stop(): Promise<void> {
    clearTimeout(this.trailing);
    this.trailing = undefined;
    await this.session.stop();
  }

  private send(): void {
    this.lastSentAt = Date.now();
    try {
      this.session.current?.publish(this.exchange, '', Buffer.alloc(0), { persistent: false });
    } catch {
      // A closed channel: the relays will poll. Nothing is lost.
    }
  }
}

/** A relay's side of the hint: an exclusive, auto-deleted queue on the fanout exchange. */
export class WakeupListener {
  private readonly session: ChannelSession;

  constructor(broker: BrokerConnection, exchange: string, log: Logger, onWake: () => void) {
    this.session = new ChannelSession(broker, 'wakeup listener', log, async (channel: Channel) => {
      await channel.assertExchange(exchange, 'fanout', { durable: false });
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
      await channel.bindQueue(queue, exchange, '');
      await channel.consume(
        queue,
        (message) => {
          if (message) onWake();
          else ChannelSession.cancelled(channel, log, 'wakeup listener');
        },
        { noAck: true },
      );
    });
  }

  start(): void {
    this.session.start();
  }

  stop(): Promise<void> {
    return this.session.stop();
  }
}
