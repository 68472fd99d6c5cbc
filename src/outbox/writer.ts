import { randomUUID } from 'node:crypto';
import type { SQLWrapper } from 'drizzle-orm';
import { defersWrites, execute, type Transaction, writeAtCommit } from '../db/client.js';
import { insertedRowId } from '../db/ids.js';
import { appendEvent, predecessorUnpublished } from './append.js';
import type { NewEvent } from './event.js';
import type { Handoff, RelayHint } from './handoff.js';
import { type AppendedEvent, envelopeHead } from './rows.js';

export interface OutboxWriterOptions {
  /** The relay in this process, if any. */
  readonly handoff?: Handoff;
  /** Sends relays in other processes a hint. */
  readonly relayHint?: RelayHint;
  /** Largest payload, as JSON bytes, an event may carry. */
  readonly maxPayloadBytes: number;
  /**
   * Counts committed events by type (metrics/index.ts: outbox_events_written_total). Only the
   * shape it needs: metrics/ reads the outbox's stats, so the outbox does not import it back.
   */
  readonly metrics?: { readonly written: { inc(labels: { type: string }): void } };
}

/** An event whose payload is over OUTBOX_MAX_PAYLOAD_BYTES: a bug of the writer, not of the data. */
export class EventTooLargeError extends Error {
  override readonly name = 'EventTooLargeError';
}

/**
 * The one way to write an event: `append` (or `appendWithInsert`) inside the caller's
 * transaction, one call. The event gets moving once that transaction has committed
 * (Transaction.afterCommit runs afterCommit below), and never if it rolls back; so no writer
 * decides how: a relay in this process gets the row handed over (written leased to it), and
 * relays elsewhere get a hint. An event whose predecessor in its aggregate is not
 * published yet is written held (see append.ts) and moves when the predecessor is marked.
 */
export class OutboxWriter {
  constructor(private readonly options: OutboxWriterOptions) {}

  async append(tx: Transaction, event: NewEvent): Promise<AppendedEvent> {
    const payloadJson = JSON.stringify(event.payload);
    this.checkSize(event.type, payloadJson);
    const held = event.sequence > 1 && (await predecessorUnpublished(tx, event));
    return this.movingAfterCommit(
      tx,
      await appendEvent(tx, event, payloadJson, held ? 'held' : this.options.handoff?.lease),
    );
  }

  /** `event`, to be handed over or hinted once `tx` has committed, with the others appended in it. */
  private movingAfterCommit(tx: Transaction, event: AppendedEvent): AppendedEvent {
    tx.afterCommit(this, event, this.afterCommitStep);
    return event;
  }

  private readonly afterCommitStep = (events: readonly AppendedEvent[]) => this.afterCommit(events);

  /**
   * Inserts a new aggregate's row (`insert`, an INSERT that gives it an AUTO_INCREMENT id) and
   * appends its first event, `event(id)`, both sent with the COMMIT: nothing waits for the id
   * before it. The outbox row takes the id from LAST_INSERT_ID() in the statement right after
   * the insert; `event` is called with a token in its place, so it must put the id where it
   * goes as a string (the aggregate id, and payload fields), and is called again with the real
   * id once the transaction has committed, for the returned event and `insertedId()`. A failing
   * insert (a duplicate key, say) fails the COMMIT, and so the transaction. Where writes are not
   * deferred (a transaction not made by transaction()), the insert runs at once and the event is
   * appended with its id, as append() would.
   */
  async appendWithInsert(
    tx: Transaction,
    insert: SQLWrapper,
    event: (id: string) => NewEvent,
  ): Promise<{ event: AppendedEvent; insertedId: () => string }> {
    if (!defersWrites(tx)) {
      const id = insertedRowId((await execute(tx, insert)).insertId);
      return { event: await this.append(tx, event(id)), insertedId: () => id };
    }
    // Stands for the id until the database gives it. Made per call, after the caller's data, so
    // no value in the payload can hold it and be rewritten with the id. randomUUID, not
    // randomBytes: it draws from a buffered pool of the same CSPRNG instead of asking OpenSSL on
    // every call, which the write path would pay on every create.
    const token = `inserted-id-${randomUUID()}`;
    const template = event(token);
    const templateJson = JSON.stringify(template.payload);
    // As large as it can get: the token's place taken by the largest id there is.
    this.checkSize(
      template.type,
      templateJson.replaceAll(JSON.stringify(token), JSON.stringify('9'.repeat(20))),
    );
    // Both deferred in this same tick, so that no other write can come between them and move
    // LAST_INSERT_ID() (writeAtCommit and appendEvent queue their statement before they yield).
    const insertedPromise = writeAtCommit(tx, insert);
    const appendedPromise = appendEvent(tx, template, templateJson, this.options.handoff?.lease, token);
    const [inserted, appended] = await Promise.all([insertedPromise, appendedPromise]);
    const insertedId = () => insertedRowId(inserted().insertId);
    let committed: NewEvent | undefined;
    const final = () => {
      committed ??= event(insertedId());
      return committed;
    };
    const appendedEvent: AppendedEvent = {
      get id() {
        return appended.id;
      },
      takenOver: false,
      leased: appended.leased,
      headers: template.headers,
      get envelope() {
        return envelopeHead(final());
      },
      get payloadJson() {
        return JSON.stringify(final().payload);
      },
    };
    return { insertedId, event: this.movingAfterCommit(tx, appendedEvent) };
  }

  private checkSize(type: string, payloadJson: string): void {
    if (Buffer.byteLength(payloadJson) > this.options.maxPayloadBytes) {
      throw new EventTooLargeError(
        `${type} payload is ${Buffer.byteLength(payloadJson)} bytes, over the ${this.options.maxPayloadBytes} allowed`,
      );
    }
  }

  /**
   * Once the events' transaction committed (append registers it there): hand leased rows to the
   * local relay, and wake whoever must claim the rest. Public for its unit test; writers never
   * call it.
   */
  afterCommit(events: readonly AppendedEvent[]): void {
    if (events.length === 0) return;
    const { handoff, relayHint, metrics } = this.options;
    for (const event of events) metrics?.written.inc({ type: event.envelope.type });
    const handedOver = events.filter((e) => e.leased);
    if (handedOver.length > 0) handoff?.publish(handedOver);
    if (handedOver.length < events.length) {
      handoff?.wake();
      relayHint?.notify();
    } else if (!handoff) {
      relayHint?.notify();
    }
  }

  /** Rows became due outside a writer (revived or released by an operator): wake the relays. */
  wakeRelays(): void {
    this.options.handoff?.wake();
    this.options.relayHint?.notify();
  }
}
