import {
  bigint,
  boolean,
  char,
  datetime,
  index,
  int,
  json,
  mysqlTable,
  primaryKey,
  smallint,
  tinyint,
  uniqueIndex,
  varbinary,
  varchar,
} from 'drizzle-orm/mysql-core';

// Every datetime has millisecond precision and holds UTC: each connection sets
// `time_zone = '+00:00'` (see db/client.ts), so NOW(3) and the values we write agree.
const timestamp = (column: string) => datetime(column, { mode: 'date', fsp: 3 });

export const customers = mysqlTable(
  'customers',
  {
    /** Read and written as a bigint: ids above 2^53 are exact (db/ids.ts). */
    id: bigint('id', { mode: 'bigint', unsigned: true }).autoincrement().primaryKey(),
    /** As the customer typed it, trimmed. */
    email: varchar('email', { length: 254 }).notNull(),
    /**
     * Lower-cased copy that carries the uniqueness. Comparing in the application's terms rather
     * than through the column collation keeps MySQL 8 (accent-insensitive by default) and MariaDB
     * (accent-sensitive) in agreement about which addresses collide.
     */
    emailNormalized: varchar('email_normalized', { length: 254 }).notNull(),
    name: varchar('name', { length: 100 }).notNull(),
    createdAt: timestamp('created_at').notNull(),
    /**
     * The sequence of the customer's latest event (1 after CustomerCreated). The next event gets
     * version + 1, under this row's lock: the source of `sequence`, which survives the pruning of
     * old outbox rows, and what `expectedSequence` is compared with.
     */
    version: int('version', { unsigned: true }).notNull().default(1),
  },
  (t) => [uniqueIndex('customers_email_normalized_uq').on(t.emailNormalized)],
);

export const outbox = mysqlTable(
  'outbox',
  {
    id: bigint('id', { mode: 'number', unsigned: true }).autoincrement().primaryKey(),
    eventId: char('event_id', { length: 36 }).notNull(),
    aggregateType: varchar('aggregate_type', { length: 64 }).notNull(),
    aggregateId: varchar('aggregate_id', { length: 64 }).notNull(),
    /** 1, 2, 3 … per aggregate; unique, so two writers cannot both append event n. */
    sequence: int('sequence', { unsigned: true }).notNull(),
    type: varchar('type', { length: 128 }).notNull(),
    payload: json('payload').notNull(),
    headers: json('headers').notNull(),
    occurredAt: timestamp('occurred_at').notNull(),
    attempts: int('attempts', { unsigned: true }).notNull().default(0),
    /**
     * When the row may next be claimed. A claim moves it to the lease's expiry, a failure to the
     * end of its back-off, a release to now. One column for all three lets the claim query read a
     * single index range (see outbox/claim.ts).
     */
    nextAttemptAt: timestamp('next_attempt_at').notNull(),
    leaseOwner: varchar('lease_owner', { length: 128 }),
    leaseToken: char('lease_token', { length: 36 }),
    leaseExpiresAt: timestamp('lease_expires_at'),
    publishedAt: timestamp('published_at'),
    deadAt: timestamp('dead_at'),
    lastError: varchar('last_error', { length: 1000 }),
    /**
     * 1 while an earlier event of the same aggregate is unpublished: the row waits (its
     * next_attempt_at is far in the future, so the claim never reads it) and is released when
     * its predecessor is marked published. Keeps each aggregate's events in sequence order on
     * the exchange with any number of relays, without slowing the claim.
     */
    held: boolean('held').notNull().default(false),
  },
  (t) => [
    uniqueIndex('outbox_event_id_uq').on(t.eventId),
    uniqueIndex('outbox_aggregate_sequence_uq').on(t.aggregateType, t.aggregateId, t.sequence),
    // The claim: published_at IS NULL AND dead_at IS NULL AND next_attempt_at <= NOW(3)
    // ORDER BY next_attempt_at, id. Two equality parts, then a range that is also the sort order.
    index('outbox_claim_idx').on(t.publishedAt, t.deadAt, t.nextAttemptAt, t.id),
    // outboxStats and the dead-letter listing.
    index('outbox_dead_idx').on(t.deadAt),
    // Releasing the held successors of published events: with none held (the usual case) the
    // release reads an empty range instead of one row per published event.
    index('outbox_held_idx').on(t.held, t.aggregateType, t.aggregateId, t.sequence),
  ],
);

/** The worker's record of messages already handled: the idempotent receiver's memory. */
export const inbox = mysqlTable(
  'inbox',
  {
    consumer: varchar('consumer', { length: 64 }).notNull(),
    messageId: varchar('message_id', { length: 64 }).notNull(),
    handledAt: timestamp('handled_at').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.consumer, t.messageId] }),
    // Retention deletes by age.
    index('inbox_handled_at_idx').on(t.handledAt),
  ],
);

/** The worker's effect: welcome e-mails, recorded as sent. */
export const welcomeEmails = mysqlTable(
  'welcome_emails',
  {
    id: bigint('id', { mode: 'number', unsigned: true }).autoincrement().primaryKey(),
    customerId: bigint('customer_id', { mode: 'bigint', unsigned: true }).notNull(),
    eventId: char('event_id', { length: 36 }).notNull(),
    recipient: varchar('recipient', { length: 254 }).notNull(),
    subject: varchar('subject', { length: 200 }).notNull(),
    body: varchar('body', { length: 4000 }).notNull(),
    sentAt: timestamp('sent_at').notNull(),
  },
  (t) => [
    uniqueIndex('welcome_emails_event_id_uq').on(t.eventId),
    index('welcome_emails_customer_idx').on(t.customerId),
  ],
);

/**
 * The worker's progress per aggregate: the highest sequence it has handled. A message whose
 * sequence is not the next one waits (its predecessor is still on its way); one at or below it
 * is a duplicate. Locked first in the handling transaction, so two workers handling events of
 * one customer take turns.
 */
export const workerProgress = mysqlTable(
  'worker_progress',
  {
    consumer: varchar('consumer', { length: 64 }).notNull(),
    aggregateType: varchar('aggregate_type', { length: 64 }).notNull(),
    aggregateId: varchar('aggregate_id', { length: 64 }).notNull(),
    lastSequence: int('last_sequence', { unsigned: true }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.consumer, t.aggregateType, t.aggregateId] })],
);

/**
 * The worker's count of failed attempts at one event, its own (never a header a publisher can
 * set): a handler failure increments it, WORKER_MAX_ATTEMPTS of them park the event. Pruned by
 * age with the inbox.
 */
export const workerAttempts = mysqlTable(
  'worker_attempts',
  {
    consumer: varchar('consumer', { length: 64 }).notNull(),
    messageId: varchar('message_id', { length: 64 }).notNull(),
    attempts: int('attempts', { unsigned: true }).notNull(),
    failedAt: timestamp('failed_at').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.consumer, t.messageId] }),
    index('worker_attempts_failed_at_idx').on(t.failedAt),
  ],
);

/**
 * The history of handled events: what customerEvents, Customer.events and onCustomerEvent read.
 * `position` is commit-ordered and gapless (see history/store.ts), though a read may show p + 1 a
 * moment before p (history/holes.ts). Kept for good; it is the product's data.
 */
export const handledEvents = mysqlTable(
  'handled_events',
  {
    position: bigint('position', { mode: 'number', unsigned: true }).primaryKey(),
    eventId: char('event_id', { length: 36 }).notNull(),
    type: varchar('type', { length: 128 }).notNull(),
    aggregateType: varchar('aggregate_type', { length: 64 }).notNull(),
    aggregateId: varchar('aggregate_id', { length: 64 }).notNull(),
    sequence: int('sequence', { unsigned: true }).notNull(),
    occurredAt: timestamp('occurred_at').notNull(),
    handledAt: timestamp('handled_at').notNull(),
    handler: varchar('handler', { length: 64 }).notNull(),
    payload: json('payload').notNull(),
    /**
     * The W3C traceparent of the worker's span that handled the event, when tracing was on: the
     * delivery to each subscriber links to it (app/deliveries.ts). Null when it was off.
     */
    traceparent: varchar('traceparent', { length: 55 }),
  },
  (t) => [
    uniqueIndex('handled_events_event_id_uq').on(t.eventId),
    // One aggregate's history, in order.
    index('handled_events_aggregate_idx').on(t.aggregateType, t.aggregateId, t.position),
  ],
);

/**
 * One row per history: the last position handed out. Incremented at the very end of the
 * handling transaction, so its row lock orders the commits (history/store.ts).
 */
export const historyPositions = mysqlTable('history_positions', {
  id: tinyint('id', { unsigned: true }).primaryKey(),
  position: bigint('position', { mode: 'number', unsigned: true }).notNull(),
});

/** E-mails the CustomerUpdated handler sends to a customer's old address when it changed. */
export const emailChangeNotices = mysqlTable(
  'email_change_notices',
  {
    id: bigint('id', { mode: 'number', unsigned: true }).autoincrement().primaryKey(),
    customerId: bigint('customer_id', { mode: 'bigint', unsigned: true }).notNull(),
    eventId: char('event_id', { length: 36 }).notNull(),
    recipient: varchar('recipient', { length: 254 }).notNull(),
    newEmail: varchar('new_email', { length: 254 }).notNull(),
    sentAt: timestamp('sent_at').notNull(),
  },
  (t) => [uniqueIndex('email_change_notices_event_id_uq').on(t.eventId)],
);

/**
 * Idempotency keys of mutations: a retry with the same key and input returns the stored result.
 * Written in the mutation's own transaction, so a key exists if and only if its effect does.
 */
export const idempotencyKeys = mysqlTable(
  'idempotency_keys',
  {
    /**
     * Bytes, compared byte for byte: under the table's case-insensitive collation `Key-A` and
     * `key-a` were one key, and the second request got the first's stored answer. Keys are
     * printable ASCII (app/context.ts), so 128 bytes hold any of them.
     */
    key: varbinary('key', { length: 128 }).primaryKey(),
    operation: varchar('operation', { length: 64 }).notNull(),
    /** SHA-256 of the operation and its input: the same key with another input is refused. */
    requestHash: char('request_hash', { length: 64 }).notNull(),
    response: json('response').notNull(),
    createdAt: timestamp('created_at').notNull(),
  },
  (t) => [index('idempotency_keys_created_idx').on(t.createdAt)],
);

/**
 * The relays' durability barrier (outbox/durability.ts): a relay adds one to a slot's counter
 * after its claim has read a batch and before it publishes it. That write's durable commit
 * flushes the redo log past every commit the claim saw, so nothing it publishes can be undone
 * by crash recovery. One row per slot, so relays rarely wait on each other's barrier.
 */
export const outboxFlushes = mysqlTable('outbox_flushes', {
  slot: smallint('slot', { unsigned: true }).primaryKey(),
  flushes: bigint('flushes', { mode: 'number', unsigned: true }).notNull(),
});
