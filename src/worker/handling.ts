import type { SQLWrapper } from 'drizzle-orm';
import {
  type Database,
  defersWrites,
  flushDeferredWrites,
  type Transaction,
  transaction,
} from '../db/client.js';
import { appendHistoryAndCommit, type HistoryRow, type NewHistoryRow } from '../history/store.js';
import type { EventEnvelope } from '../outbox/event.js';
import type { GroupLoad, StoredEvent } from '../outbox/handler.js';
import { countPredecessors, findEventsWith } from '../outbox/stored.js';
import type { OutboxWriter } from '../outbox/writer.js';
import { traceHistoryWrite } from '../telemetry/database.js';
import { loadedRows, loadStatement } from './group-loads.js';
import type { AnyHandler, Delivery } from './pipeline.js';
import { verifiedEvent } from './policies/verify.js';
import {
  type AggregateKey,
  FirstEventsAtCommit,
  type Progress,
  recordFirstEvent,
  recordInbox,
  setProgress,
  takeProgress,
} from './store.js';
import { linkGroup } from './tracing.js';

/** A delivery that has its claim and its handler (policies/envelope.ts set them). */
export type Claimed = Delivery & { readonly claim: EventEnvelope; readonly handler: AnyHandler };

/** What one handling transaction decided for one message. */
export type Decision =
  | { readonly kind: 'handled'; readonly history: readonly HistoryRow[] }
  | { readonly kind: 'duplicate' }
  | { readonly kind: 'waiting'; readonly missing: number };

export interface HandlingContext {
  readonly db: Database;
  /** The inbox's consumer name. */
  readonly consumer: string;
  /** Event types handled: the order check counts only predecessors of these. */
  readonly types: readonly string[];
  /** Follow-up events handlers append go through it. */
  readonly writer: OutboxWriter;
}

export interface HandlingOptions {
  /** Defer what can go with the COMMIT (see handleGroup). */
  readonly deferred: boolean;
  /** Learns whether a first event's progress and inbox rows were deferred. */
  readonly attempt?: { firstDeferred: boolean };
}

/**
 * One transaction for a group of messages, given in the order of their aggregates and sequences
 * (policies/group-commit.ts sorts them, so every worker locks progress rows in one order, and a group
 * holding an aggregate's next events handles them in turn). For each message:
 *   1. the stored event with the message's id, read once for the group, is compared with the
 *      message's claims (policies/verify.ts);
 *   2. its turn (takeTurn): a sequence already handled is a duplicate; one whose predecessor is
 *      not handled yet is `waiting` (policies/order-wait.ts sends it to wait);
 *   3. the inbox row, the handler, the progress;
 * and, last, the group's history rows with the COMMIT (history/store.ts explains why last).
 *
 * `deferred`: the first events of aggregates record their progress and inbox rows with the
 * COMMIT, two statements for the group (FirstEventsAtCommit), so they cost no round trip of
 * their own. Any other step first sends what was deferred, since it reads the progress rows
 * those writes make. A failure among deferred writes stops the COMMIT; the
 * caller then handles each message again without deferring (policies/group-commit.ts).
 */
export function handleGroup(
  context: HandlingContext,
  group: readonly Claimed[],
  { deferred, attempt }: HandlingOptions,
): Promise<readonly Decision[]> {
  const handledAt = new Date();
  return transaction(context.db, async (tx) => {
    linkGroup(group);
    // What first events write goes with the COMMIT, two statements for the group.
    const firstEvents = deferred && defersWrites(tx) ? new FirstEventsAtCommit(tx, handledAt) : undefined;
    // The handlers' own reads for the group (Handler.loads) go with the stored events'.
    const reads = groupReads(group);
    const { events: stored, alongside } = await findEventsWith(
      tx,
      group.map((d) => d.claim.eventId),
      reads.map((r) => r.statement),
    );
    const loaded = new Map(reads.map((r, i) => [r.handler, loadedRows(r.load, alongside[i] ?? [])]));
    const decisions: Decision[] = new Array(group.length);
    const handled: number[] = [];
    const rows: NewHistoryRow[] = [];
    for (const [index, delivery] of group.entries()) {
      const event = await verifiedEvent(tx, context.consumer, delivery, stored.get(delivery.claim.eventId));
      const result =
        event === 'handled before'
          ? ({ kind: 'duplicate' } as const)
          : await handleOne(
              context,
              tx,
              { event, delivery, handledAt, loaded: loaded.get(delivery.handler) },
              firstEvents,
              attempt,
            );
      if ('kind' in result) {
        decisions[index] = result;
        continue;
      }
      handled.push(index);
      rows.push(result.row);
    }
    await firstEvents?.queue();
    // Last, right before the commit: the counter's lock orders commits (history/store.ts).
    const history = await traceHistoryWrite(rows.length, () => appendHistoryAndCommit(tx, rows));
    handled.forEach((index, i) => {
      decisions[index] = { kind: 'handled', history: [history[i] as HistoryRow] };
    });
    return decisions;
  });
}

/** Each handler's load for the ids its messages in the group claim. */
function groupReads(
  group: readonly Claimed[],
): Array<{ handler: AnyHandler; load: GroupLoad; statement: SQLWrapper }> {
  const ids = new Map<AnyHandler, string[]>();
  for (const { handler, claim } of group) {
    if (!handler.loads) continue;
    const list = ids.get(handler);
    if (list) list.push(claim.aggregateId);
    else ids.set(handler, [claim.aggregateId]);
  }
  const reads: Array<{ handler: AnyHandler; load: GroupLoad; statement: SQLWrapper }> = [];
  for (const [handler, aggregateIds] of ids) {
    const load = handler.loads as GroupLoad;
    const statement = loadStatement(load, aggregateIds);
    if (statement) reads.push({ handler, load, statement });
  }
  return reads;
}

type Turn = { readonly progress: Progress } | Exclude<Decision, { kind: 'handled' }>;

/**
 * Whether it is the event's turn: its aggregate's progress row locked (the next handler of the
 * same aggregate, in any worker, waits for our commit), the inbox row recorded.
 */
async function takeTurn(
  context: HandlingContext,
  tx: Transaction,
  event: StoredEvent,
  handledAt: Date,
  firstEvents: FirstEventsAtCommit | undefined,
  attempt?: { firstDeferred: boolean },
): Promise<Turn> {
  const key: AggregateKey = {
    consumer: context.consumer,
    aggregateType: event.aggregateType,
    aggregateId: event.aggregateId,
  };
  // The common case, an aggregate's first event seen for the first time: with the COMMIT when
  // deferred, else one round trip of its own.
  let first = false;
  if (firstEvents && event.sequence === 1) {
    firstEvents.add(key, event.eventId);
    first = true;
    if (attempt) attempt.firstDeferred = true;
  } else {
    // What this turn reads: the progress rows earlier first events of the group make.
    await firstEvents?.queue();
    await flushDeferredWrites(tx);
    first = event.sequence === 1 && (await recordFirstEvent(tx, key, event.eventId, handledAt));
  }
  const taken: Progress | 'handled' = first
    ? { last: 0, written: true }
    : await takeProgress(tx, key, event.sequence);
  // Past the progress mark with no inbox row: an event parked and passed (passParked), then
  // requeued by an operator (dead-letters.ts). It is handled now, after its successors, and
  // the mark stays where they left it. Anything else past the mark has its inbox row (inbox
  // rows outlive the outbox's), so this insert finds the duplicate.
  let passed = false;
  if (taken === 'handled') {
    if (!(await recordInbox(tx, context.consumer, event.eventId, handledAt))) return { kind: 'duplicate' };
    passed = true;
  }
  const progress: Progress = taken === 'handled' ? { last: event.sequence, written: true } : taken;
  if (event.sequence > progress.last + 1) {
    const { aggregateType, aggregateId, sequence } = event;
    const missing = await countPredecessors(
      tx,
      aggregateType,
      aggregateId,
      progress.last,
      sequence,
      context.types,
    );
    if (missing > 0) return { kind: 'waiting', missing };
  }
  if (!first && !passed && !(await recordInbox(tx, context.consumer, event.eventId, handledAt))) {
    return { kind: 'duplicate' };
  }
  return { progress };
}

/** Decides one verified event inside the group's transaction; a handled one returns its history row. */
async function handleOne(
  context: HandlingContext,
  tx: Transaction,
  {
    event,
    delivery,
    handledAt,
    loaded,
  }: {
    event: StoredEvent;
    delivery: Claimed;
    handledAt: Date;
    loaded: ReadonlyMap<string, unknown> | undefined;
  },
  firstEvents: FirstEventsAtCommit | undefined,
  attempt?: { firstDeferred: boolean },
): Promise<Exclude<Decision, { kind: 'handled' }> | { row: NewHistoryRow }> {
  const turn = await takeTurn(context, tx, event, handledAt, firstEvents, attempt);
  if ('kind' in turn) return turn;
  const { handler } = delivery;
  const handle = () =>
    handler.handle(tx, event, {
      handledAt,
      // The rows of this handler's own load (group-loads.ts maps them as its columns say).
      loaded: loaded as ReadonlyMap<string, never> | undefined,
      // Moving once the group's transaction commits (the writer sees to it).
      emit: async (next) => {
        await context.writer.append(tx, next);
      },
    });
  // The handler's writes ride on the COMMIT; handled again statement by statement (not
  // deferred), a failing write fails where the handler sent it.
  await (firstEvents ? tx.deferringWrites(handle) : handle());
  const key = {
    consumer: context.consumer,
    aggregateType: event.aggregateType,
    aggregateId: event.aggregateId,
  };
  await setProgress(tx, key, event.sequence, turn.progress);
  return {
    row: {
      eventId: event.eventId,
      type: event.type,
      aggregateType: event.aggregateType,
      aggregateId: event.aggregateId,
      sequence: event.sequence,
      occurredAt: event.occurredAt,
      handledAt,
      handler: handler.name,
      payload: event.payload,
      traceparent: delivery.traceparent ?? null,
    },
  };
}
