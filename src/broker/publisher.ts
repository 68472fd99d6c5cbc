import { once } from 'node:events';
import type { ConfirmChannel, Options } from 'amqplib';
import type { Logger } from '../log.js';
import type { BrokerConnection } from './connection.js';

export interface OutgoingMessage {
  readonly routingKey: string;
  readonly body: Buffer;
  readonly properties: Options.Publish & { readonly messageId: string };
}

/**
 * Why a publish failed, as a closed set: metrics label by it and the relay decides by it.
 * `no_channel` and `channel_closed` are outages (the connection went away), not the event's
 * fault; `nacked`, `unroutable`, `timeout` and `encoding` count as a failed attempt.
 */
export type PublishFailure =
  | 'nacked'
  | 'unroutable'
  | 'timeout'
  | 'channel_closed'
  | 'encoding'
  | 'no_channel';

export type PublishOutcome =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly reason: PublishFailure;
      /** What happened, for last_error and the logs. */
      readonly error: string;
    };

const OK: PublishOutcome = { ok: true };
/** How long a close waits for the broker's answer (nothing is lost by not waiting longer). */
const CLOSE_WAIT_MS = 1_000;
const failed = (reason: PublishFailure, error: string): PublishOutcome => ({ ok: false, reason, error });

/**
 * Failures that say the broker or the connection is away, not that the event is bad. A confirm
 * that never came is one: behind a link that drops packets nothing comes back, and counting it
 * against the events would park a whole backlog as dead during one long network cut.
 */
export const isOutage = (outcome: PublishOutcome): boolean =>
  !outcome.ok &&
  (outcome.reason === 'no_channel' || outcome.reason === 'channel_closed' || outcome.reason === 'timeout');

/** What the relay needs of a publisher; tests substitute one to inject a single fault. */
export interface Publisher {
  /** A channel is open now. */
  readonly isReady: boolean;
  /** Resolves once a channel is open (reopening one if needed); rejects when `signal` aborts. */
  ready(signal?: AbortSignal): Promise<void>;
  /** One outcome per message, in order. Never rejects. */
  publishAll(messages: readonly OutgoingMessage[], signal?: AbortSignal): Promise<PublishOutcome[]>;
}

export interface PublisherOptions {
  readonly broker: BrokerConnection;
  readonly exchange: string;
  readonly confirmTimeoutMs: number;
  readonly log: Logger;
  /** Declarations to run on every new channel before its first publish. */
  readonly setup: (channel: ConfirmChannel) => Promise<void>;
}

/**
 * Publishes with publisher confirms on one confirm channel, many messages in flight at once:
 * a batch is written out in one go and then each message's own confirm is awaited, so a batch
 * costs one round trip, not one per message.
 *
 * Every message is `mandatory`. Without it, RabbitMQ confirms a message that no queue is bound
 * for and drops it, and the relay would mark a lost event as published. A `basic.return`
 * always arrives before the `basic.ack` of the same message, so a message id seen in a return
 * turns its later ack into a failure.
 *
 * Each message gets its own outcome: a nack, a return, a confirm timeout, an encoding error or
 * the channel closing fails exactly the messages it affects.
 */
export class ConfirmPublisher implements Publisher {
  private channel: ConfirmChannel | undefined;
  private opening: Promise<ConfirmChannel> | undefined;
  private readonly returned = new Set<string>();

  constructor(private readonly options: PublisherOptions) {}

  get isReady(): boolean {
    return this.channel !== undefined;
  }

  /**
   * Bounded by the confirm timeout as well as by `signal`: a channel that cannot be opened
   * because the broker stopped answering fails this wait, and the caller backs off and tries
   * again, instead of waiting as long as TCP takes to give up.
   */
  async ready(signal?: AbortSignal): Promise<void> {
    const deadline = AbortSignal.timeout(this.options.confirmTimeoutMs);
    await untilAborted(this.openChannel(signal), deadline);
  }

  /**
   * Waiting for a channel is bounded by the confirm timeout and by `signal`, so a broker that
   * vanished between a claim and its publish cannot hold the caller (and its stop) forever.
   */
  async publishAll(messages: readonly OutgoingMessage[], signal?: AbortSignal): Promise<PublishOutcome[]> {
    if (messages.length === 0) return [];
    let channel: ConfirmChannel;
    const giveUp = new AbortController();
    const timer = setTimeout(() => giveUp.abort(), this.options.confirmTimeoutMs);
    const onAbort = () => giveUp.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      channel = await this.openChannel(signal?.aborted ? AbortSignal.abort() : giveUp.signal);
    } catch (error) {
      const outcome = failed('no_channel', `no broker channel: ${(error as Error).message}`);
      return messages.map(() => outcome);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
    return this.publishOn(channel, messages, signal);
  }

  /** Idempotent. Unconfirmed messages on the channel fail with "channel closed". */
  async close(): Promise<void> {
    const channel = this.channel ?? (await this.opening?.catch(() => undefined));
    this.channel = undefined;
    // A broker behind a dead link never answers the close: do not wait for it past the timeout.
    await untilAborted(channel?.close() ?? Promise.resolve(), AbortSignal.timeout(CLOSE_WAIT_MS)).catch(
      () => {},
    );
  }

  private async publishOn(
    channel: ConfirmChannel,
    messages: readonly OutgoingMessage[],
    signal?: AbortSignal,
  ): Promise<PublishOutcome[]> {
    const { exchange, confirmTimeoutMs } = this.options;
    const outcomes: Array<PublishOutcome | undefined> = new Array(messages.length);
    let pending = messages.length;
    let allSettled!: () => void;
    const done = new Promise<void>((resolve) => {
      allSettled = resolve;
    });
    const settle = (index: number, outcome: PublishOutcome) => {
      if (outcomes[index] !== undefined) return;
      outcomes[index] = outcome;
      if (--pending === 0) allSettled();
    };
    const failPending = (reason: PublishFailure, error: string) => {
      for (let i = 0; i < messages.length; i++) settle(i, failed(reason, error));
    };
    let closed = false;
    const onClose = () => {
      closed = true;
      failPending('channel_closed', 'channel closed before the broker confirmed');
    };
    channel.once('close', onClose);
    // A stop does not wait for confirms a broker behind a dead link will never send: what is
    // unconfirmed is handed back, due again, as for a closed channel.
    const onAbort = () => failPending('channel_closed', 'stopped before the broker confirmed');
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => {
      failPending('timeout', `no confirm within ${confirmTimeoutMs} ms`);
      // Late confirms on this channel can no longer be matched to a decision; start afresh.
      this.discard(channel);
    }, confirmTimeoutMs);

    for (let i = 0; i < messages.length && !closed; i++) {
      const message = messages[i] as OutgoingMessage;
      const messageId = message.properties.messageId;
      try {
        const writable = channel.publish(
          exchange,
          message.routingKey,
          message.body,
          { ...message.properties, mandatory: true },
          (error) => {
            const wasReturned = this.returned.delete(messageId);
            // amqplib also calls back with an error for every unconfirmed message when the channel
            // closes, from a 'close' listener that runs just before ours. Deciding a tick later
            // lets onClose settle those as channel_closed (the connection died): only a real
            // basic.nack is left to count as the broker refusing the message.
            if (error) queueMicrotask(() => settle(i, failed('nacked', 'nacked by the broker')));
            else if (wasReturned)
              settle(i, failed('unroutable', `unroutable: no queue is bound for "${message.routingKey}"`));
            else settle(i, OK);
          },
        );
        if (!writable) await Promise.race([once(channel, 'drain'), done]);
      } catch (error) {
        // amqplib throws synchronously for a message it cannot encode (e.g. headers over 64 KiB):
        // that one message fails; the rest of the batch goes on.
        settle(
          i,
          failed(closed ? 'channel_closed' : 'encoding', `could not publish: ${(error as Error).message}`),
        );
      }
    }
    await done;
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    channel.off('close', onClose);
    return outcomes as PublishOutcome[];
  }

  private discard(channel: ConfirmChannel): void {
    if (this.channel === channel) this.channel = undefined;
    channel.close().catch(() => {});
  }

  /**
   * The channel, opened once for all callers; each caller's wait is bounded by its own signal.
   * (The opening is shared: without the race below, a caller whose deadline passed would still
   * wait for an opening another caller started, with no deadline, as long as the broker is away,
   * and a relay lane holds its claim meanwhile.)
   */
  private async openChannel(signal?: AbortSignal): Promise<ConfirmChannel> {
    if (this.channel) return this.channel;
    return untilAborted(this.startOpening(signal), signal);
  }

  private startOpening(signal?: AbortSignal): Promise<ConfirmChannel> {
    this.opening ??= (async () => {
      try {
        const connection = await this.options.broker.connection(signal);
        const channel = await connection.createConfirmChannel();
        // Every batch in flight listens for 'close'; many may be in flight at once.
        channel.setMaxListeners(0);
        channel.on('error', (error: Error) =>
          this.options.log.warn({ err: error }, 'publisher channel error'),
        );
        channel.on('return', (message: { properties: { messageId?: string } }) => {
          // An empty id is an id too: the worker's copy of a message that came without one.
          if (message.properties.messageId !== undefined) this.returned.add(message.properties.messageId);
        });
        channel.once('close', () => {
          if (this.channel === channel) this.channel = undefined;
        });
        await this.options.setup(channel);
        this.channel = channel;
        return channel;
      } finally {
        this.opening = undefined;
      }
    })();
    return this.opening;
  }
}

/** `promise`, or a rejection as soon as `signal` aborts (the promise itself goes on). */
function untilAborted<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(new Error('aborted'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
