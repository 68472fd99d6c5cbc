import type { BrokerConnection } from './connection.js';

/** Messages waiting in a queue, or null when the broker cannot be asked right now. */
export async function countMessages(broker: BrokerConnection, queue: string): Promise<number | null> {
  // Not waiting for a connection: a scrape of /metrics asks this, and must answer at once.
  if (!broker.isConnected) return null;
  try {
    const connection = await broker.connection(AbortSignal.timeout(1000));
    const channel = await connection.createChannel();
    // A missing queue closes the channel with an error event; without a listener it would throw.
    channel.on('error', () => {});
    try {
      return (await channel.checkQueue(queue)).messageCount;
    } finally {
      await channel.close().catch(() => {});
    }
  } catch {
    return null;
  }
}
