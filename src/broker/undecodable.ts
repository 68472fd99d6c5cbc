import type { Channel } from 'amqplib';

/**
 * Set, in place of all other properties, on a delivered message whose properties amqplib could
 * not decode; its value says why. The worker parks such a message at once (worker/policies/
 * redelivery.ts).
 */
export const UNDECODABLE_HEADER = 'x-undecodable-properties';

/** AMQP frame type of a content header (a message's properties) and the frame-end octet. */
const FRAME_HEADER = 2;
const FRAME_END = 0xce;

interface FrameReader {
  rest: Buffer;
  recvFrame(): unknown;
}

const guarded = new WeakSet<object>();

/**
 * amqplib decodes a message's header table recursively: a table nested some thousands of levels
 * deep (any publisher can send one; RabbitMQ passes it on) throws RangeError in the decoder,
 * which closes the whole connection. The message goes back to the queue unacked, the consumer
 * reconnects and receives it again, for ever on RabbitMQ 3 (no delivery limit), and everything
 * behind it waits; no code of ours ever sees it, so no redelivery count can park it.
 *
 * This wraps amqplib's frame reader (Connection.prototype.recvFrame, once per process): a
 * content-header frame it fails to decode is delivered with its properties replaced by
 * UNDECODABLE_HEADER, its body as it came, so the consumer can set it aside at the first
 * delivery, on any RabbitMQ version and without changing any queue. Every other failure is
 * amqplib's as before. Internal API: test/hostile-amqp.test.ts sends such a message, and fails
 * (it times out) if an amqplib upgrade moves the reader.
 */
export function guardPropertyDecoding(channel: Channel): void {
  const connection = (channel as unknown as { connection?: object }).connection;
  const reader = connection ? (Object.getPrototypeOf(connection) as FrameReader) : undefined;
  if (!reader || typeof reader.recvFrame !== 'function') {
    throw new Error('amqplib has no Connection.prototype.recvFrame to guard (was it upgraded?)');
  }
  if (guarded.has(reader)) return;
  guarded.add(reader);
  const recvFrame = reader.recvFrame;
  reader.recvFrame = function (this: FrameReader) {
    const before = this.rest;
    try {
      return recvFrame.call(this);
    } catch (error) {
      const frame = undecodedHeader(before, this.rest);
      if (!frame) throw error;
      const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      return { ...frame, fields: { headers: { [UNDECODABLE_HEADER]: reason.slice(0, 200) } } };
    }
  };
}

/**
 * The content-header frame at the start of `before`, if that is the frame the reader just took
 * (it left `after`, the bytes behind it): its channel, class id and body size, which is all the
 * channel needs to collect the body.
 */
function undecodedHeader(
  before: Buffer,
  after: Buffer,
): { channel: number; id: number; size: number } | undefined {
  if (before.length < 7 || before[0] !== FRAME_HEADER) return undefined;
  const payloadSize = before.readUInt32BE(3);
  const frameSize = 7 + payloadSize + 1;
  if (payloadSize < 12 || before.length < frameSize || before[frameSize - 1] !== FRAME_END) return undefined;
  if (after.length !== before.length - frameSize) return undefined;
  const payload = before.subarray(7, 7 + payloadSize);
  return {
    channel: before.readUInt16BE(1),
    id: payload.readUInt16BE(0),
    size: Number(payload.readBigUInt64BE(4)),
  };
}
