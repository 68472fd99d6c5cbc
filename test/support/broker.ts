import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import amqp, { type ChannelModel, type ConsumeMessage } from 'amqplib';
import { topologyFor } from '../../src/broker/topology.js';
import { TEST_AMQP_URL } from './env.js';

const run = promisify(execFile);

export interface ReceivedMessage {
  readonly routingKey: string;
  readonly properties: ConsumeMessage['properties'];
  readonly body: Record<string, unknown>;
}

export interface TestQueue {
  readonly name: string;
  readonly received: ReceivedMessage[];
  /** How many times each messageId arrived. */
  counts(): Map<string, number>;
  close(): Promise<void>;
}

/**
 * A queue of the test's own, bound to `exchange` with `bindingKey`, consuming into memory: a
 * stand-in for "another service that binds its own queue to the exchange". Declares the
 * exchange as the broker contract says, so it can be created before any relay runs.
 */
export async function bindTestQueue(exchange: string, bindingKey = '#'): Promise<TestQueue> {
  const connection: ChannelModel = await amqp.connect(TEST_AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'topic', { durable: true });
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(queue, exchange, bindingKey);
  const received: ReceivedMessage[] = [];
  await channel.consume(
    queue,
    (message) => {
      if (!message) return;
      received.push({
        routingKey: message.fields.routingKey,
        properties: message.properties,
        body: JSON.parse(message.content.toString('utf8')),
      });
    },
    { noAck: true },
  );
  return {
    name: queue,
    received,
    counts() {
      const counts = new Map<string, number>();
      for (const m of received) {
        const id = String(m.properties.messageId);
        counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      return counts;
    },
    async close() {
      await connection.close().catch(() => {});
    },
  };
}

/**
 * Every queue and exchange a service with this exchange and worker queue declares (the worker's
 * retry, wait and dead-letter queues, the relay and history hint exchanges), for
 * deleteBrokerObjects.
 */
export function brokerObjectsOf(
  exchange: string,
  workerQueue: string,
): { exchanges: string[]; queues: string[] } {
  const t = topologyFor(exchange, workerQueue, []);
  return {
    queues: [t.workerQueue, t.workerRetryQueue, t.workerWaitQueue, t.workerDeadLetterQueue],
    exchanges: [t.exchange, t.relayHintExchange, t.historyHintExchange],
  };
}

/** Deletes the exchanges and queues a test file declared, so reruns start clean. */
export async function deleteBrokerObjects(objects: {
  exchanges?: string[];
  queues?: string[];
}): Promise<void> {
  const connection = await amqp.connect(TEST_AMQP_URL);
  try {
    for (const queue of objects.queues ?? []) {
      const channel = await connection.createChannel();
      await channel.deleteQueue(queue).catch(() => {});
      await channel.close().catch(() => {});
    }
    for (const exchange of objects.exchanges ?? []) {
      const channel = await connection.createChannel();
      await channel.deleteExchange(exchange).catch(() => {});
      await channel.close().catch(() => {});
    }
  } finally {
    await connection.close();
  }
}

/**
 * Force-closes, on the broker side, every AMQP connection whose client-given name contains
 * `fragment`, as `rabbitmqctl close_all_connections` would, but without touching the
 * connections of test files running in parallel. Returns how many were closed.
 */
export async function closeBrokerConnections(fragment: string): Promise<number> {
  const { stdout } = await run('rabbitmqctl', ['-q', 'list_connections', 'pid', 'client_properties']);
  const pids = stdout
    .split('\n')
    .filter((line) => line.includes(fragment))
    .map((line) => line.split('\t')[0] ?? '')
    .filter((pid) => pid.startsWith('<'));
  for (const pid of pids) {
    await run('rabbitmqctl', ['-q', 'close_connection', pid, 'closed by test']);
  }
  return pids.length;
}

/** The queues bound to `exchange` (from rabbitmqctl, so it sees every connection's bindings). */
export async function bindingsFrom(exchange: string): Promise<string[]> {
  const { stdout } = await run('rabbitmqctl', ['-q', 'list_bindings', 'source_name', 'destination_name']);
  return stdout
    .split('\n')
    .map((line) => line.split('\t'))
    .filter(([source]) => source === exchange)
    .map(([, destination]) => destination ?? '');
}

/** The type of an exchange (fanout, topic, …), or undefined when it does not exist. */
export async function exchangeType(exchange: string): Promise<string | undefined> {
  const { stdout } = await run('rabbitmqctl', ['-q', 'list_exchanges', 'name', 'type']);
  for (const line of stdout.split('\n')) {
    const [name, type] = line.split('\t');
    if (name === exchange) return type;
  }
  return undefined;
}
