import type { Channel, ConfirmChannel } from 'amqplib';
import type { Logger } from '../log.js';
import { Loop } from '../support/loop.js';
import { sleep, untilStopped } from '../support/sleep.js';
import type { BrokerConnection } from './connection.js';

const RETRY_BASE_MS = 200;
// Short: after a network cut heals, the next try must come within seconds.
const RETRY_MAX_MS = 2_000;
/** How long a stop waits for the broker to answer a channel's close. */
const CLOSE_WAIT_MS = 1_000;

/**
 * A channel that is opened again whenever it closes: a consumer's lifeline. `setup` declares
 * what it needs and starts consuming; it runs on every new channel, so after a broker restart
 * the consumer is back without anyone noticing but the logs.
 */
export class ChannelSession<C extends Channel = Channel> {
  private channel: C | undefined;
  private readonly loop: Loop;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly broker: BrokerConnection,
    private readonly name: string,
    private readonly log: Logger,
    private readonly setup: (channel: C) => Promise<void>,
    /** Confirm channels for sessions that publish what must not be lost (the worker's retries). */
    private readonly kind: C extends ConfirmChannel ? 'confirm' : 'plain' = 'plain' as never,
  ) {
    this.loop = new Loop(
      { name: `channel session "${name}"`, log, backoffBaseMs: RETRY_BASE_MS, backoffMaxMs: RETRY_MAX_MS },
      ({ signal, recovered }) => this.openOnce(signal, recovered),
    );
  }

  start(): void {
    this.loop.start();
  }

  /**
   * For consumers: amqplib reports a consumer the broker cancelled (its queue was deleted, say)
   * with a null message. The channel stays open, so nothing would ever consume again; closing it
   * makes the session reopen it and run setup, which declares the queue and consumes afresh.
   */
  static cancelled(channel: Channel, log: Logger, name: string): void {
    log.warn({ session: name }, 'the broker cancelled the consumer; reopening the channel');
    channel.close().catch(() => {});
  }

  /** The open channel, if any. */
  get current(): C | undefined {
    return this.channel;
  }

  /**
   * Idempotent. `beforeClose` runs on the open channel first (cancel consumers, wait for
   * in-flight work), then the channel closes.
   */
  stop(beforeClose?: (channel: C) => Promise<void>): Promise<void> {
    this.stopping ??= (async () => {
      const stopped = this.loop.stop();
      const channel = this.channel;
      if (channel && beforeClose) await beforeClose(channel).catch(() => {});
      // A broker behind a dead link never answers the close; the connection's stop ends it.
      await Promise.race([channel?.close().catch(() => {}), sleep(CLOSE_WAIT_MS)]);
      await stopped;
    })();
    return this.stopping;
  }

  /** One turn: open a channel, set it up, serve until it closes; the loop opens the next. */
  private async openOnce(signal: AbortSignal, recovered: () => void): Promise<'busy'> {
    let channel: C | undefined;
    try {
      const connection = await this.broker.connection(signal);
      channel = (
        this.kind === 'confirm' ? await connection.createConfirmChannel() : await connection.createChannel()
      ) as C;
      const opened = channel;
      const closed = new Promise<void>((resolve) => opened.once('close', () => resolve()));
      channel.on('error', (error: Error) =>
        this.log.warn({ err: error, session: this.name }, 'channel error'),
      );
      await this.setup(channel);
      if (signal.aborted) {
        // stop() came while the channel was being set up: it had no channel to close, so
        // close it here instead of starting to consume after the stop.
        await channel.close().catch(() => {});
        return 'busy';
      }
      this.channel = channel;
      recovered();
      // A stop closes the channel and waits a moment for the broker's answer; behind a dead link
      // 'close' would come only when the heartbeat gives the connection up, seconds later.
      await untilStopped(closed, signal);
      this.channel = undefined;
      if (!signal.aborted) this.log.warn({ session: this.name }, 'channel closed; reopening');
      return 'busy';
    } catch (error) {
      this.channel = undefined;
      await channel?.close().catch(() => {});
      throw error;
    }
  }
}
