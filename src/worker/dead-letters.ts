import { randomUUID } from 'node:crypto';
import type { ConfirmChannel, GetMessage, MessageProperties, Options } from 'amqplib';
import type { BrokerConnection } from '../broker/connection.js';
import { countMessages } from '../broker/queues.js';
import { UnavailableError } from '../errors.js';

/** Headers the worker writes on a parked copy (worker.ts); the requeue takes them off again. */
export const ATTEMPTS_HEADER = 'x-attempts';
export const ERROR_HEADER = 'x-last-error';
export const COPY_HEADER = 'x-copy-id';
export const PARKED_AT_HEADER = 'x-parked-at';

/**
 * Headers that describe a message's past failures. A requeued message starts afresh: left on,
 * `x-delivery-count` (copied from the worker queue's last delivery) would park it again at once.
 */
const FAILURE_HEADERS = [
  ATTEMPTS_HEADER,
  ERROR_HEADER,
  COPY_HEADER,
  PARKED_AT_HEADER,
  'x-delivery-count',
  // Ours, below.
  'x-dead-letters-pass',
];
/** On a message a pass put back: which pass (so it knows its own copies). */
const PASS_HEADER = 'x-dead-letters-pass';
/** The marker a pass puts at the queue's end before it starts. */
const END_HEADER = 'x-dead-letters-end';
const isFailureHeader = (name: string) =>
  FAILURE_HEADERS.includes(name) || name === 'x-death' || /^x-(first|last)-death-/.test(name);

/**
 * Messages one pass takes at most. A pass moves every message it reads (back to the end of the
 * dead-letter queue, or to the worker queue), so it costs two round trips per message; past
 * this many, the rest wait for the next pass.
 */
export const MAX_PASS = 10_000;
/** Bodies larger than this are not parsed for their event type and aggregate. */
const MAX_PARSED_BYTES = 1 << 20;

/** A message the worker parked, as an operator sees it. */
export interface DeadLetter {
  /** The parked copy's own id (x-copy-id): what requeue() takes. */
  readonly id: string;
  /** The message id: for this service's events, the event id. */
  readonly eventId: string | null;
  readonly type: string | null;
  readonly aggregateType: string | null;
  readonly aggregateId: string | null;
  /** The worker's last error: why it was parked. */
  readonly reason: string | null;
  /** When it was parked; null for copies parked before the worker recorded it. */
  readonly parkedAt: Date | null;
  /** Deliveries the worker counted before parking it. */
  readonly attempts: number;
}

export interface DeadLetterQueueOptions {
  readonly broker: BrokerConnection;
  /** The worker's dead-letter queue. */
  readonly queue: string;
  /** Where a requeued message goes: the worker queue. */
  readonly workerQueue: string;
  readonly confirmTimeoutMs: number;
}

/**
 * The worker's dead-letter queue as an operator works with it: list the parked messages,
 * requeue some or all of them into the worker queue.
 *
 * AMQP cannot read a queue without taking from it, and taking a message and giving it back
 * (nack, or closing the channel) counts as a delivery: RabbitMQ 4.0–4.2 drop a quorum-queue
 * message past 20 deliveries (the default delivery limit), and the dead-letter queue has nowhere
 * further to send it. So a pass takes each message and moves it: a copy is published (with a
 * confirm) to the worker queue when it is requeued, or else back to the end of the dead-letter
 * queue, and only then is the original acked. A marker published at the end before the pass
 * starts tells it where the queue it found ends, so a full pass keeps the queue's order.
 * Nothing is lost at any point; a pass cut off between a confirm and its ack leaves the message
 * twice, which the next pass removes (same x-copy-id), and which the worker's inbox makes
 * harmless if both were requeued. Passes in this process run one at a time; one in another
 * instance holds the messages it is moving, which this pass then does not see.
 */
export class DeadLetterQueue {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: DeadLetterQueueOptions) {}

  /** Messages parked now, or null when the broker cannot be asked. */
  count(): Promise<number | null> {
    return countMessages(this.options.broker, this.options.queue);
  }

  /**
   * The parked messages, oldest first, at most `first`. By when they were parked, not by their
   * place in the queue: a message parked while a pass runs lands before the ones it puts back.
   */
  async list(first: number): Promise<DeadLetter[]> {
    const letters: DeadLetter[] = [];
    await this.pass((letter) => {
      letters.push(letter);
      return 'keep';
    });
    const at = (letter: DeadLetter) => letter.parkedAt?.getTime() ?? 0;
    return letters.sort((a, b) => at(a) - at(b)).slice(0, first);
  }

  /** Moves the given parked messages (every one when `ids` is absent) to the worker queue; their ids. */
  async requeue(ids?: readonly string[]): Promise<string[]> {
    const wanted = ids && new Set(ids);
    const moved: string[] = [];
    await this.pass((letter) => {
      if (wanted && !wanted.has(letter.id)) return 'keep';
      moved.push(letter.id);
      return 'requeue';
    });
    return moved;
  }

  private pass(decide: (letter: DeadLetter) => 'keep' | 'requeue'): Promise<void> {
    const run = this.tail.then(() => this.passNow(decide));
    this.tail = run.catch(() => {});
    return run;
  }

  private async passNow(decide: (letter: DeadLetter) => 'keep' | 'requeue'): Promise<void> {
    const { broker, queue, workerQueue, confirmTimeoutMs } = this.options;
    let channel: ConfirmChannel;
    try {
      const connection = await broker.connection(AbortSignal.timeout(1000));
      channel = await connection.createConfirmChannel();
    } catch (error) {
      throw new UnavailableError('The broker is not reachable; retry later', { cause: error });
    }
    let returned = false;
    channel.on('return', () => {
      returned = true;
    });
    // A failed operation closes the channel with an 'error' event; the awaited call rejects too.
    channel.on('error', () => {});
    const send = async (target: string, content: Buffer, options: Options.Publish) => {
      returned = false;
      await confirmed(channel, target, content, options, confirmTimeoutMs);
      if (returned) throw new Error(`queue ${target} does not exist`);
    };
    const pass = randomUUID();
    try {
      // The end of this pass: a queue's message count can lag behind its last acks and
      // publishes, and a pass that trusted it could stop early (and turn the order around)
      // or read its own copies as duplicates.
      await send(queue, Buffer.alloc(0), {
        persistent: true,
        mandatory: true,
        headers: { [END_HEADER]: pass },
      });
      const seen = new Set<string>();
      for (let taken = 0; taken < MAX_PASS; taken++) {
        const message = await channel.get(queue, { noAck: false });
        if (!message) break;
        const headers = message.properties.headers ?? {};
        if (headers[END_HEADER] !== undefined) {
          // Ours: the pass is done. Another's: left by a pass cut off, or taken from one running
          // elsewhere, which then stops at its own copies instead.
          channel.ack(message);
          if (headers[END_HEADER] === pass) break;
          continue;
        }
        if (headers[PASS_HEADER] === pass) {
          // Round the whole queue (our end marker was taken elsewhere): put it back and stop.
          await send(queue, message.content, same(message.properties, pass));
          channel.ack(message);
          break;
        }
        const letter = describe(message);
        if (seen.has(letter.id)) {
          // The second copy a cut-off pass left: this pass already moved the first one.
          channel.ack(message);
          continue;
        }
        seen.add(letter.id);
        if (decide(letter) === 'requeue')
          await send(workerQueue, message.content, afresh(message.properties));
        else await send(queue, message.content, same(message.properties, pass));
        channel.ack(message);
      }
    } catch (error) {
      throw new UnavailableError('The dead-letter queue could not be read; retry later', { cause: error });
    } finally {
      // Unacked messages (a pass cut off) go back to the queue with the channel.
      await channel.close().catch(() => {});
    }
  }
}

/** What an operator sees of a parked message; its body is read only for the envelope's fields. */
export function describe(message: Pick<GetMessage, 'content' | 'properties'>): DeadLetter {
  const { properties, content } = message;
  const headers = properties.headers ?? {};
  const body = parseBody(content);
  const text = (value: unknown) => (typeof value === 'string' && value !== '' ? value : null);
  const attempts = Number(headers[ATTEMPTS_HEADER] ?? 0);
  const parkedAt = text(headers[PARKED_AT_HEADER]);
  const parked = parkedAt === null ? null : new Date(parkedAt);
  return {
    id: text(headers[COPY_HEADER]) ?? text(properties.messageId) ?? 'unidentified',
    eventId: text(properties.messageId),
    type: text(properties.type) ?? text(body.type),
    aggregateType: text(body.aggregateType),
    aggregateId: text(body.aggregateId),
    reason: text(headers[ERROR_HEADER]),
    parkedAt: parked && !Number.isNaN(parked.getTime()) ? parked : null,
    attempts: Number.isSafeInteger(attempts) && attempts >= 0 ? attempts : 0,
  };
}

function parseBody(content: Buffer): Record<string, unknown> {
  if (content.length > MAX_PARSED_BYTES) return {};
  try {
    const value: unknown = JSON.parse(content.toString('utf8'));
    return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** The publish options that put a message back as it was (marked as moved by `pass`). */
function same(properties: MessageProperties, pass?: string): Options.Publish {
  return {
    messageId: properties.messageId,
    type: properties.type,
    contentType: properties.contentType,
    contentEncoding: properties.contentEncoding,
    correlationId: properties.correlationId,
    appId: properties.appId,
    timestamp: properties.timestamp,
    headers: pass === undefined ? properties.headers : { ...properties.headers, [PASS_HEADER]: pass },
    persistent: true,
    mandatory: true,
  };
}

/** The same, without the record of its failures: the worker counts its attempts from zero. */
export function afresh(properties: MessageProperties): Options.Publish {
  const headers = Object.fromEntries(
    Object.entries(properties.headers ?? {}).filter(([name]) => !isFailureHeader(name)),
  );
  return { ...same(properties), headers };
}

function confirmed(
  channel: ConfirmChannel,
  queue: string,
  content: Buffer,
  options: Options.Publish,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no confirm from the broker within ${timeoutMs} ms`)),
      timeoutMs,
    );
    try {
      channel.sendToQueue(queue, content, options, (error) => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      });
    } catch (error) {
      clearTimeout(timer);
      reject(error);
    }
  });
}
