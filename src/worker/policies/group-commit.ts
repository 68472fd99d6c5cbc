import { failedInDeferredWrite, rollbackFailureOf } from '../../db/client.js';
import { isTransientDatabaseError } from '../../db/errors.js';
import type { HistoryRow } from '../../history/store.js';
import type { Logger } from '../../log.js';
import type { EventEnvelope } from '../../outbox/event.js';
import { type Claimed, type Decision, type HandlingContext, handleGroup } from '../handling.js';
import type { Delivery, Step } from '../pipeline.js';
import { lastHandled } from '../store.js';

export interface GroupCommitOptions extends HandlingContext {
  /** Largest group: the prefetch, all a worker can hold at once. */
  readonly maxGroup: number;
  /** Given the history rows of every commit (live feeds fan them out, or read them). */
  readonly onHistory: (rows: readonly HistoryRow[]) => void;
  readonly log: Logger;
}

/** A message waiting for its group's transaction, with how to tell it the decision. */
interface Member {
  readonly delivery: Claimed;
  readonly resolve: (decision: Decision) => void;
  readonly reject: (error: unknown) => void;
}

/** The order a group handles its messages in: by aggregate, then sequence. */
function compareClaims(a: EventEnvelope, b: EventEnvelope): number {
  if (a.aggregateType !== b.aggregateType) return a.aggregateType < b.aggregateType ? -1 : 1;
  if (a.aggregateId !== b.aggregateId) return a.aggregateId < b.aggregateId ? -1 : 1;
  return a.sequence - b.sequence;
}

/**
 * The last step: the message handled in a transaction (../handling.ts), with others.
 *
 * Group commit. Messages that arrive while a handling transaction runs wait for it and are then
 * handled together, in one transaction: one read of their stored events, one history append and
 * one COMMIT for the group instead of for each message. Under light load a group is one message
 * and nothing waits that would not have; as load grows, groups grow and the database work per
 * message shrinks, instead of the queue growing. No message waits for a group to fill.
 *
 * If the group's transaction fails for any reason, nothing of it was written and each message
 * is handled again on its own, with no write deferred to the COMMIT, so a failure (a bad event,
 * a handler's error, a deadlock, an outage) is attributed to the message it belongs to and
 * retried, waited or parked exactly as it would have been alone. A group of one is handled
 * again only if a deferred write failed (see run).
 */
export class GroupCommit {
  private readonly waiting: Member[] = [];
  private running = false;

  constructor(private readonly options: GroupCommitOptions) {}

  readonly step: Step = async (delivery) => {
    const decision = await this.inGroup(delivery as Claimed);
    switch (decision.kind) {
      case 'handled':
        delivery.history = decision.history;
        this.options.onHistory(decision.history);
        return 'handled';
      case 'waiting':
        delivery.missing = decision.missing;
        return 'waiting';
      case 'duplicate':
        return 'duplicate';
    }
  };

  private inGroup(delivery: Delivery): Promise<Decision> {
    if (!delivery.claim || !delivery.handler) throw new Error('a delivery reached its handling unread');
    return new Promise<Decision>((resolve, reject) => {
      this.waiting.push({ delivery: delivery as Claimed, resolve, reject });
      this.next();
    });
  }

  private next(): void {
    if (this.running || this.waiting.length === 0) return;
    this.running = true;
    // In the order the group is handled in (handleGroup), so that members report their history
    // rows in position order and the live feed beside takes them without a read.
    const group = this.waiting
      .splice(0, this.options.maxGroup)
      .sort((a, b) => compareClaims(a.delivery.claim, b.delivery.claim));
    void this.run(group).finally(() => {
      this.running = false;
      this.next();
    });
  }

  private async run(group: readonly Member[]): Promise<void> {
    const alone = (member: Member) =>
      handleGroup(this.options, [member.delivery], { deferred: false }).then(
        (decisions) => member.resolve(decisions[0] as Decision),
        member.reject,
      );
    let decisions: readonly Decision[];
    const attempt = { firstDeferred: false };
    try {
      decisions = await handleGroup(
        this.options,
        group.map((m) => m.delivery),
        { deferred: true, attempt },
      );
    } catch (error) {
      // A message alone is handled again only if its deferred writes may be what failed, and not
      // for an outage or a deadlock, which the retry queue takes care of. Anything else (its
      // handler threw, say) is its own failure as it is, and its handler ran once.
      const deferredWriteFailed =
        failedInDeferredWrite(error) && !isTransientDatabaseError(error, rollbackFailureOf(error));
      const member = group[0] as Member;
      if (group.length === 1 && !deferredWriteFailed) {
        // Deferring, its handler ran before anything looked for a duplicate. A copy of an event
        // handled before is a duplicate, whatever its handler does now.
        if (attempt.firstDeferred && (await this.handledBefore(member.delivery.claim))) {
          member.resolve({ kind: 'duplicate' });
        } else member.reject(error);
        return;
      }
      this.options.log.debug(
        { err: error, messages: group.length },
        'group transaction failed; handling its messages one by one, each statement in its turn',
      );
      await Promise.all(group.map(alone));
      return;
    }
    for (const [i, member] of group.entries()) member.resolve(decisions[i] as Decision);
  }

  /** Whether the aggregate's progress is at `claim`'s sequence or past it; false if unknown. */
  private async handledBefore(claim: EventEnvelope): Promise<boolean> {
    const key = {
      consumer: this.options.consumer,
      aggregateType: claim.aggregateType,
      aggregateId: claim.aggregateId,
    };
    try {
      return ((await lastHandled(this.options.db, key)) ?? 0) >= claim.sequence;
    } catch {
      return false;
    }
  }
}
