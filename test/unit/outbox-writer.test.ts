import { describe, expect, it } from 'vitest';
import type { Handoff } from '../../src/outbox/handoff.js';
import type { AppendedEvent } from '../../src/outbox/rows.js';
import { OutboxWriter } from '../../src/outbox/writer.js';

/** What afterCommit reads of an appended event: whether it was written leased, and its type. */
const appended = (leased: boolean, type = 'CustomerCreated') =>
  ({ leased, envelope: { type } }) as unknown as AppendedEvent;

function recorder(withHandoff: boolean) {
  const calls = { handedOver: [] as AppendedEvent[][], wakes: 0, hints: 0, written: [] as string[] };
  const handoff: Handoff = {
    lease: { owner: 'relay-1', token: 'token', durationMs: 30_000 },
    publish: (events) => calls.handedOver.push([...events]),
    wake: () => calls.wakes++,
  };
  const writer = new OutboxWriter({
    maxPayloadBytes: 1024,
    ...(withHandoff ? { handoff } : {}),
    relayHint: { notify: () => calls.hints++ },
    metrics: { written: { inc: ({ type }) => calls.written.push(type) } },
  });
  return { writer, calls };
}

describe('OutboxWriter.afterCommit', () => {
  it('hands leased rows to the relay in this process and wakes no one', () => {
    const { writer, calls } = recorder(true);
    const events = [appended(true), appended(true)];
    writer.afterCommit(events);
    expect(calls.handedOver).toEqual([events]);
    expect([calls.wakes, calls.hints]).toEqual([0, 0]);
  });

  it('a row written held (or not leased) wakes the local lanes and hints the relays elsewhere', () => {
    const { writer, calls } = recorder(true);
    const leased = appended(true);
    writer.afterCommit([leased, appended(false, 'CustomerUpdated')]);
    expect(calls.handedOver).toEqual([[leased]]);
    expect([calls.wakes, calls.hints]).toEqual([1, 1]);
  });

  it('with no relay in this process, every commit hints the relays elsewhere', () => {
    const { writer, calls } = recorder(false);
    writer.afterCommit([appended(false)]);
    expect(calls.hints).toBe(1);
    expect(calls.handedOver).toEqual([]);
  });

  it('counts each committed event by type, and an empty commit not at all', () => {
    const { writer, calls } = recorder(true);
    writer.afterCommit([]);
    expect(calls).toMatchObject({ written: [], wakes: 0, hints: 0 });
    writer.afterCommit([appended(true, 'CustomerCreated'), appended(false, 'CustomerUpdated')]);
    expect(calls.written).toEqual(['CustomerCreated', 'CustomerUpdated']);
  });
});
