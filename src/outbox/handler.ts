import type { MySqlColumn } from 'drizzle-orm/mysql-core';
import type { z } from 'zod';
import type { Transaction } from '../db/client.js';
import type { NewEvent } from './event.js';

/** An event as the database holds it: what a handler works from, never the message's claims. */
export type StoredEvent<P = unknown> = Omit<NewEvent, 'payload' | 'headers'> & { readonly payload: P };

/** The columns a handler loads for a group (GroupLoad), by the name it reads each under. */
export type LoadColumns = Readonly<Record<string, MySqlColumn>>;

/** A loaded row: each column's value as the schema types it. */
export type LoadedRow<C extends LoadColumns> = {
  readonly [K in keyof C]: C[K]['_']['notNull'] extends true ? C[K]['_']['data'] : C[K]['_']['data'] | null;
};

/**
 * What a handler reads for a group of events, declared rather than written: the `columns` of
 * the rows of one table (the key column's) whose `key` column equals one of the group's
 * aggregate ids. The worker reads them with the group's stored events, in the same
 * transaction and round trip, and gives each `handle` call the rows by key (helpers.loaded):
 * one round trip for the group instead of one per event. Its keys are the ids the messages
 * claim, before they are checked against the stored events; `handle` looks up the stored
 * event's own aggregate id, so a claim that lies finds nothing, and `handle` reads the row
 * itself, as it must when the group read has none.
 */
export interface GroupLoad<C extends LoadColumns = LoadColumns> {
  readonly columns: C;
  readonly key: keyof C & string;
}

/** What the worker gives a handler besides the event. */
export interface HandlerHelpers<Row = never> {
  /** When the worker started handling; recorded in the history. */
  readonly handledAt: Date;
  /** Emits a follow-up event: written to the outbox in the handling transaction, moving after the commit. */
  emit(event: NewEvent): Promise<void>;
  /**
   * The rows of the handler's `loads` for the group this event came in, by key (its value as
   * decimal text for a numeric key); absent when the handler loads nothing or runs outside a
   * group (a test's own call).
   */
  readonly loaded?: ReadonlyMap<string, Row>;
}

/**
 * The worker's unit of work for one event type, after graphile-worker's `task(payload,
 * helpers)`: domain code (customers/handlers.ts) writes handlers; the worker knows none of them.
 * The contract lives beside the event envelope rather than in worker/, so a domain that adds a
 * handler imports nothing of the engine that will run it.
 * `handle` runs inside the worker's transaction, the same one that records the inbox row, the
 * aggregate's progress and the history row, so the effect and "handled" commit together or
 * not at all. `tx` is used as a Drizzle database while `handle` runs; once the transaction has
 * ended it refuses every call. The worker sends the writes a handler awaits with the COMMIT
 * (docs/worker.md): reads see them, and a write's result is known once committed.
 */
export interface Handler<P = unknown, C extends LoadColumns = never> {
  /** Recorded in the history, e.g. `welcome-email`. */
  readonly name: string;
  /** The payload's schema, checked on the stored event: a mismatch parks the message. */
  readonly payload: z.ZodType<P>;
  handle(tx: Transaction, event: StoredEvent<P>, helpers: HandlerHelpers<LoadedRow<C>>): Promise<void>;
  /**
   * Optional: what `handle` reads, loaded once for a whole group of messages (GroupLoad). A
   * handler that loads nothing (`C` left out) gets no rows and can pass its helpers on to one
   * that does, which then reads its own.
   */
  readonly loads?: [C] extends [never] ? undefined : GroupLoad<C>;
}

/** Event type → handler. */
// biome-ignore lint/suspicious/noExplicitAny: each handler has its own payload type; the worker passes each only what its own schema produced.
export type Handlers = Readonly<Record<string, Handler<any, any>>>;

/**
 * Thrown by a handler (or the worker) when the event can never be handled, whatever the
 * retries: the message is parked at once with this reason.
 */
export class PermanentFailure extends Error {
  override readonly name: string = 'PermanentFailure';
}

/**
 * A message that is no event of ours: no stored event has its id, or the stored one says
 * otherwise. Parked like any permanent failure, but it does not count as a step of any
 * aggregate, since it is not one.
 */
export class ForeignMessage extends PermanentFailure {}
