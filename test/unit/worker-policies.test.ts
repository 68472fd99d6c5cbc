import type { ConsumeMessage } from 'amqplib';
import { describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.js';
import { createLogger } from '../../src/log.js';
import { ForeignMessage, PermanentFailure } from '../../src/outbox/handler.js';
import type { CopyOptions, CopySender } from '../../src/worker/copies.js';
import { compose, type Delivery, type Outcome, type Policy, type Step } from '../../src/worker/pipeline.js';
import { orderWait } from '../../src/worker/policies/order-wait.js';
import { park } from '../../src/worker/policies/park.js';
import { parkRedelivered } from '../../src/worker/policies/redelivery.js';
import { retry } from '../../src/worker/policies/retry.js';

const log = createLogger('silent');

/** Records every copy instead of sending it; `fail` makes every send reject. */
function copySender(fail = false): CopySender & { sent: Array<{ queue: string } & CopyOptions> } {
  const sent: Array<{ queue: string } & CopyOptions> = [];
  return {
    sent,
    async send(queue, _message, options) {
      if (fail) throw new Error('not confirmed');
      sent.push({ queue, ...options });
    },
  };
}

const message = (headers: Record<string, unknown> = {}) =>
  ({
    content: Buffer.from('{}'),
    properties: { messageId: 'm', headers },
    fields: {},
  }) as unknown as ConsumeMessage;
const delivery = (headers?: Record<string, unknown>): Delivery => ({
  message: message(headers),
  attempts: 1,
  verified: false,
});
const failing =
  (error: unknown): Step =>
  async () => {
    throw error;
  };
const returning =
  (outcome: Outcome): Step =>
  async () =>
    outcome;
/** A database no statement may reach: parking an unverified copy must not touch it. */
const noDatabase = new Proxy(
  {},
  {
    get() {
      throw new Error('the database was used');
    },
  },
) as Database;

describe('compose', () => {
  it('runs the policies outermost first, around the last step', async () => {
    const seen: string[] = [];
    const tag =
      (name: string): Policy =>
      (next) =>
      async (d) => {
        seen.push(`${name} in`);
        const outcome = await next(d);
        seen.push(`${name} out`);
        return outcome;
      };
    const step = compose([tag('a'), tag('b')], async () => {
      seen.push('handle');
      return 'handled';
    });
    expect(await step(delivery())).toBe('handled');
    expect(seen).toEqual(['a in', 'b in', 'handle', 'b out', 'a out']);
  });
});

describe('retry', () => {
  /** The service's count of failures, by event id, as the database would keep it. */
  const counter = () => {
    const counts = new Map<string, number>();
    return {
      counts,
      countFailure: async (id: string) => {
        counts.set(id, (counts.get(id) ?? 0) + 1);
        return counts.get(id) as number;
      },
    };
  };
  const options = (copies: CopySender, count = counter()) => ({
    copies,
    retryQueue: 'q.retry',
    maxAttempts: 3,
    delayMs: 50,
    countFailure: count.countFailure,
    log,
  });
  const verified = (headers?: Record<string, unknown>): Delivery =>
    ({ ...delivery(headers), verified: true, claim: { eventId: 'e1' } }) as Delivery;

  it('a handler failure goes to the retry queue with its counted attempt and the delay', async () => {
    const copies = copySender();
    const outcome = await retry(options(copies))(failing(new Error('boom')))(verified());
    expect(outcome).toBe('retried');
    expect(copies.sent).toEqual([
      { queue: 'q.retry', attempts: 1, reason: expect.any(Error), expirationMs: 50 },
    ]);
  });

  it('the last attempt is given up on: a PermanentFailure whose cause is the handler error', async () => {
    const count = counter();
    count.counts.set('e1', 2);
    const error = new Error('boom');
    await expect(retry(options(copySender(), count))(failing(error))(verified())).rejects.toMatchObject({
      name: 'AttemptsExhausted',
      cause: error,
    });
  });

  it('the attempts are the service’s own: an x-attempts header a publisher set counts for nothing', async () => {
    const count = counter();
    const step = retry(options(copySender(), count))(failing(new Error('boom')));
    expect(await step(verified({ 'x-attempts': 99 }))).toBe('retried');
    expect(count.counts.get('e1')).toBe(1);
  });

  it('an outage does not spend an attempt, nor does a copy not verified to be its event', async () => {
    const copies = copySender();
    const count = counter();
    const outage = Object.assign(new Error('gone'), { code: 'ECONNREFUSED' });
    expect(await retry(options(copies, count))(failing(outage))(verified())).toBe('retried');
    expect(await retry(options(copies, count))(failing(new Error('boom')))(delivery())).toBe('retried');
    expect(count.counts.size).toBe(0);
    expect(copies.sent.map((c) => c.attempts)).toEqual([0, 0]);
  });

  it('a database outage is one line per interval for every message it fails, and one when handlers succeed again', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const outageLog = createLogger(
      'info',
      {},
      { write: (line: string) => lines.push(JSON.parse(line)) },
      60_000,
    );
    const outage = Object.assign(new Error('gone'), { code: 'ECONNREFUSED' });
    const policy = retry({ ...options(copySender()), log: outageLog });
    for (let i = 0; i < 50; i++) await policy(failing(outage))(verified());
    await policy(returning('handled'))(verified());
    // A handler's own error is about its event: one line each.
    await policy(failing(new Error('boom')))(verified());
    await policy(failing(new Error('boom')))(verified());
    expect(lines.map((l) => [l.msg, l.condition, l.suppressed, l.cleared])).toEqual([
      ['handler failed; retrying later', 'database unavailable to handlers', 0, undefined],
      ['handlers reach the database again', 'database unavailable to handlers', 49, true],
      ['handler failed; retrying later', undefined, undefined, undefined],
      ['handler failed; retrying later', undefined, undefined, undefined],
    ]);
  });

  it('a permanent failure passes through untouched', async () => {
    const error = new PermanentFailure('never');
    await expect(retry(options(copySender()))(failing(error))(verified())).rejects.toBe(error);
  });
});

describe('park', () => {
  const options = (copies: CopySender) => ({
    copies,
    deadLetterQueue: 'q.dead',
    db: noDatabase,
    consumer: 'c',
    log,
  });

  it('parks a PermanentFailure with its reason, and an unverified copy never touches the database', async () => {
    const copies = copySender();
    const d = {
      ...delivery(),
      claim: { aggregateType: 'Customer', aggregateId: '1', sequence: 1 },
    } as Delivery;
    const outcome = await park(options(copies))(failing(new ForeignMessage('forged')))(d);
    expect(outcome).toBe('parked');
    expect(copies.sent).toEqual([
      {
        queue: 'q.dead',
        attempts: 1,
        reason: expect.any(ForeignMessage),
        headers: { 'x-parked-at': expect.any(String) },
      },
    ]);
  });

  it('anything else goes on to the loop, which gives the message back to the queue', async () => {
    const error = new Error('copy not confirmed');
    await expect(park(options(copySender()))(failing(error))(delivery())).rejects.toBe(error);
  });

  it('a dead-letter copy that fails is not a settlement', async () => {
    await expect(
      park(options(copySender(true)))(failing(new PermanentFailure('x')))(delivery()),
    ).rejects.toThrow('not confirmed');
  });
});

describe('parkRedelivered and orderWait', () => {
  it('a message the broker redelivered ten times is a PermanentFailure before anything else runs', async () => {
    let ran = false;
    const step = parkRedelivered()(async () => {
      ran = true;
      return 'handled';
    });
    await expect(step(delivery({ 'x-delivery-count': 10 }))).rejects.toThrow(/redelivered 10 times/);
    expect(ran).toBe(false);
    expect(await step(delivery({ 'x-delivery-count': 9 }))).toBe('handled');
  });

  it('a waiting message is sent to the wait queue without spending an attempt', async () => {
    const copies = copySender();
    const policy = orderWait({ copies, waitQueue: 'q.wait', waitMs: 200, log });
    expect(await policy(returning('waiting'))(delivery())).toBe('waiting');
    expect(await policy(returning('handled'))(delivery())).toBe('handled');
    expect(copies.sent).toEqual([
      { queue: 'q.wait', attempts: 0, reason: expect.any(String), expirationMs: 200 },
    ]);
  });
});
