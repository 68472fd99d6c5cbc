import amqp, {
  type Channel,
  type ChannelModel,
  type ConfirmChannel,
  type ConsumeMessage,
  type GetMessage,
  type Options,
} from 'amqplib';
import { TEST_AMQP_URL } from './env.js';

/**
 * A test's own AMQP connection: publishes with confirms (so "published" means "the broker has
 * it"), reads queues, and captures raw messages (body bytes and all properties), which
 * bindTestQueue does not keep.
 */
export interface TestBroker {
  /** Publishes to an exchange and waits for the broker's confirm. */
  publish(exchange: string, routingKey: string, content: Buffer, options?: Options.Publish): Promise<void>;
  /** Sends straight to a queue (default exchange) and waits for the broker's confirm. */
  sendToQueue(queue: string, content: Buffer, options?: Options.Publish): Promise<void>;
  /** Ready messages in a queue (RabbitMQ's queue.declare-ok count). */
  messageCount(queue: string): Promise<number>;
  /** Consumers on a queue; 0 when the queue does not exist yet. */
  consumerCount(queue: string): Promise<number>;
  /** Takes every message now in `queue`, acked (the queue is empty afterwards). */
  drain(queue: string): Promise<GetMessage[]>;
  /** An exclusive queue bound to `exchange` with `bindingKey`, keeping each message as received. */
  capture(exchange: string, bindingKey: string): Promise<ConsumeMessage[]>;
  close(): Promise<void>;
}

export async function connectTestBroker(): Promise<TestBroker> {
  const connection: ChannelModel = await amqp.connect(TEST_AMQP_URL);
  const confirm: ConfirmChannel = await connection.createConfirmChannel();
  const plain: Channel = await connection.createChannel();
  // A refused publish (e.g. to a missing exchange) closes the channel; the confirm callback
  // reports it, and the 'error' event must not become an uncaught exception.
  confirm.on('error', () => {});
  plain.on('error', () => {});
  const check = async (queue: string) => {
    // A missing queue closes the channel it was asked on: ask on a throwaway one.
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    try {
      return await channel.checkQueue(queue);
    } finally {
      await channel.close().catch(() => {});
    }
  };
  const confirmed = (send: (done: (error: unknown) => void) => void) =>
    new Promise<void>((resolve, reject) => send((error) => (error ? reject(error) : resolve())));
  return {
    publish: (exchange, routingKey, content, options = {}) =>
      confirmed((done) => confirm.publish(exchange, routingKey, content, options, done)),
    sendToQueue: (queue, content, options = {}) =>
      confirmed((done) => confirm.sendToQueue(queue, content, options, done)),
    messageCount: async (queue) => (await check(queue)).messageCount,
    consumerCount: async (queue) => (await check(queue).catch(() => ({ consumerCount: 0 }))).consumerCount,
    async drain(queue) {
      const taken: GetMessage[] = [];
      for (;;) {
        const message = await plain.get(queue, { noAck: true });
        if (!message) return taken;
        taken.push(message);
      }
    },
    async capture(exchange, bindingKey) {
      const messages: ConsumeMessage[] = [];
      await plain.assertExchange(exchange, 'topic', { durable: true });
      const { queue } = await plain.assertQueue('', { exclusive: true, autoDelete: true });
      await plain.bindQueue(queue, exchange, bindingKey);
      await plain.consume(queue, (message) => message && messages.push(message), { noAck: true });
      return messages;
    },
    async close() {
      await connection.close().catch(() => {});
    },
  };
}

/** The publish options that reproduce a received message's properties exactly. */
export function sameProperties(message: ConsumeMessage): Options.Publish {
  const p = message.properties;
  const options: Options.Publish = {
    messageId: p.messageId,
    type: p.type,
    contentType: p.contentType,
    contentEncoding: p.contentEncoding,
    correlationId: p.correlationId,
    appId: p.appId,
    timestamp: p.timestamp,
    headers: p.headers,
    persistent: p.deliveryMode === 2,
  };
  // amqplib sends an explicit `undefined` property as absent; drop them to keep that obvious.
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
}
