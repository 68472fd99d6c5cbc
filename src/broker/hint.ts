import type { Channel } from 'amqplib';
import type { Logger } from '../log.js';
import type { BrokerConnection } from './connection.js';
import { ChannelSession } from './session.js';

/**
 * "Something new is in the database": how pollers in other processes learn of new rows within
 * milliseconds without polling fast. Relays are told of new outbox rows, app instances' live
 * feeds of new history rows.
 *
 * MySQL has no LISTEN/NOTIFY, so the hint travels over the broker we already have: after a
 * commit, the writer publishes an empty, transient message to a fanout exchange; every listener
 * has an exclusive queue of its own on it and wakes up. Hints are only hints: not mandatory, so
 * one nobody listens to (no app running during a deploy) is simply dropped, and a lost one
 * costs one poll interval, never an event, because the truth is the table. Bursts are coalesced
 * to one hint per window per process.
 *
 * A hint carries its sender's instance name (appId) and listeners skip their own: whatever a
 * process commits it also tells its own relay or live feed in-process, so its own hint would only
 * cost the listener a read that finds nothing new.
 */
export class HintNotifier {
  private lastSentAt = 0;
  private trailing: NodeJS.Timeout | undefined;
  private readonly session: ChannelSession;

  constructor(
    broker: BrokerConnection,
    private readonly exchange: string,
    /** This process's instance name, sent as appId so that its own listeners skip the hint. */
    private readonly instance: string,
    log: Logger,
    private readonly windowMs = 20,
  ) {
    this.session = new ChannelSession(broker, `${exchange} notifier`, log, async (channel) => {
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
      this.session.current?.publish(this.exchange, '', Buffer.alloc(0), {
        persistent: false,
        appId: this.instance,
      });
    } catch {
      // A closed channel: the relays will poll. Nothing is lost.
    }
  }
}

/** A listener's side of the hint: an exclusive, auto-deleted queue on the fanout exchange. */
export class HintListener {
  private readonly session: ChannelSession;

  /** `instance`: this process's name; hints it sent itself are skipped (see HintNotifier). */
  constructor(broker: BrokerConnection, exchange: string, instance: string, log: Logger, onWake: () => void) {
    this.session = new ChannelSession(broker, `${exchange} listener`, log, async (channel: Channel) => {
      await channel.assertExchange(exchange, 'fanout', { durable: false });
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
      await channel.bindQueue(queue, exchange, '');
      await channel.consume(
        queue,
        (message) => {
          if (message) {
            if (message.properties.appId !== instance) onWake();
          } else ChannelSession.cancelled(channel, log, `${exchange} listener`);
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
