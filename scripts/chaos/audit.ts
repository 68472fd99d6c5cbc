import { isDeepStrictEqual } from 'node:util';
import amqp, { type ChannelModel } from 'amqplib';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import type { Row } from './report.js';

/** What the audit queue saw of one event (the first copy; later copies are compared with it). */
interface Seen {
  readonly eventId: string;
  readonly aggregateType: string;
  readonly aggregateId: string;
  readonly sequence: number;
  readonly payload: unknown;
  /** A later copy that differed from the first: two different events under one id. */
  differing?: string;
}

/**
 * An audit queue bound to the outbox exchange with `#`: it records every message that reached
 * the exchange, whoever published it. It outlives broker stops and kills (durable queue,
 * persistent messages, acknowledged only once recorded, a new connection after a loss), so a
 * message published just before a fault is still seen after it.
 */
export class ExchangeAudit {
  private readonly seen = new Map<string, Seen>();
  private model: ChannelModel | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  messages = 0;
  unreadable = 0;
  private bound: () => void = () => {};
  /** Resolves once the queue is bound: every message from then on is seen. */
  readonly ready = new Promise<void>((resolve) => {
    this.bound = resolve;
  });

  constructor(
    private readonly url: string,
    private readonly exchange: string,
    private readonly queue = 'chaos.audit',
  ) {}

  start(): void {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        const model = await amqp.connect(this.url);
        this.model = model;
        const closed = new Promise<void>((resolve) => {
          model.on('close', () => resolve());
          model.on('error', () => resolve());
        });
        const channel = await model.createChannel();
        await channel.prefetch(500);
        await channel.assertQueue(this.queue, { durable: true });
        await channel.bindQueue(this.queue, this.exchange, '#');
        this.bound();
        await channel.consume(this.queue, (message) => {
          if (!message) return;
          this.record(message.content);
          channel.ack(message);
        });
        await closed;
      } catch {
        // The broker (or the exchange, before a relay declared it) is not there yet.
      }
      this.model = undefined;
      if (!this.stopped) await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  private record(content: Buffer): void {
    this.messages++;
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(content.toString('utf8')) as Record<string, unknown>;
    } catch {
      this.unreadable++;
      return;
    }
    const event: Seen = {
      eventId: String(body.eventId),
      aggregateType: String(body.aggregateType),
      aggregateId: String(body.aggregateId),
      sequence: Number(body.sequence),
      payload: body.payload,
    };
    const first = this.seen.get(event.eventId);
    if (!first) this.seen.set(event.eventId, event);
    else if (!sameEvent(first, event)) first.differing ??= `${event.aggregateId}#${event.sequence}`;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.model?.close().catch(() => undefined);
    await this.loop;
  }

  /** Every message seen must be a row the database has after recovery, the same in every field. */
  async check(db: Connection): Promise<Row> {
    const stored = new Map<string, Seen>();
    const ids = [...this.seen.keys()];
    for (let i = 0; i < ids.length; i += 1000) {
      const chunk = ids.slice(i, i + 1000);
      const [rows] = await db.query<RowDataPacket[]>(
        'SELECT event_id, aggregate_type, aggregate_id, sequence, payload FROM outbox WHERE event_id IN (?)',
        [chunk],
      );
      for (const r of rows) {
        stored.set(String(r.event_id), {
          eventId: String(r.event_id),
          aggregateType: String(r.aggregate_type),
          aggregateId: String(r.aggregate_id),
          sequence: Number(r.sequence),
          payload: typeof r.payload === 'string' ? JSON.parse(r.payload) : r.payload,
        });
      }
    }
    const bad: string[] = [];
    for (const event of this.seen.values()) {
      const row = stored.get(event.eventId);
      if (!row)
        bad.push(
          `${event.eventId} (${event.aggregateType} ${event.aggregateId}#${event.sequence}) not in the database`,
        );
      else if (!sameEvent(row, event)) bad.push(`${event.eventId} differs from its row`);
      else if (event.differing) bad.push(`${event.eventId} seen also as ${event.differing}`);
    }
    return {
      name: 'every message on the exchange is a row the database kept',
      expected: 'each event id seen by the audit queue: a row with the same aggregate, sequence, payload',
      observed: `${this.seen.size} events in ${this.messages} messages${this.unreadable ? `, ${this.unreadable} unreadable` : ''}; ${bad.length} without their row${bad.length ? ` e.g. ${bad.slice(0, 3).join('; ')}` : ''}`,
      ok: bad.length === 0 && this.unreadable === 0 && this.seen.size > 0,
    };
  }
}

function sameEvent(a: Seen, b: Seen): boolean {
  return (
    a.aggregateType === b.aggregateType &&
    a.aggregateId === b.aggregateId &&
    a.sequence === b.sequence &&
    isDeepStrictEqual(a.payload, b.payload)
  );
}
