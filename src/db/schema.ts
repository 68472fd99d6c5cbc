import {
  bigint,
  char,
  datetime,
  index,
  int,
  json,
  mysqlTable,
  primaryKey,
  uniqueIndex,
  varchar,
} from 'drizzle-orm/mysql-core';

// Every datetime has millisecond precision and holds UTC: each connection sets
// `time_zone = '+00:00'` (see db/client.ts), so NOW(3) and the values we write agree.
const timestamp = (column: string) => datetime(column, { mode: 'date', fsp: 3 });

export const customers = mysqlTable(
  'customers',
  {
    id: bigint('id', { mode: 'number', unsigned: true }).autoincrement().primaryKey(),
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
     * single index range (see outbox/store.ts).
     */
    nextAttemptAt: timestamp('next_attempt_at').notNull(),
    leaseOwner: varchar('lease_owner', { length: 128 }),
    leaseToken: char('lease_token', { length: 36 }),
    leaseExpiresAt: timestamp('lease_expires_at'),
    publishedAt: timestamp('published_at'),
    deadAt: timestamp('dead_at'),
    lastError: varchar('last_error', { length: 1000 }),
  },
  (t) => [
    uniqueIndex('outbox_event_id_uq').on(t.eventId),
    uniqueIndex('outbox_aggregate_sequence_uq').on(t.aggregateType, t.aggregateId, t.sequence),
    // The claim: published_at IS NULL AND dead_at IS NULL AND next_attempt_at <= NOW(3)
    // ORDER BY next_attempt_at, id. Two equality parts, then a range that is also the sort order.
    index('outbox_claim_idx').on(t.publishedAt, t.deadAt, t.nextAttemptAt, t.id),
    // outboxStats and the dead-letter listing.
    index('outbox_dead_idx').on(t.deadAt),
    // A customer's handled events, by type.
    index('outbox_aggregate_type_idx').on(t.aggregateType, t.aggregateId, t.type),
    // Events of a type published since a moment: live subscribers catching up after losing the broker.
    index('outbox_type_published_idx').on(t.type, t.publishedAt),
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
  (t) => [primaryKey({ columns: [t.consumer, t.messageId] })],
);

/** The worker's effect: welcome e-mails, recorded as sent. */
export const welcomeEmails = mysqlTable(
  'welcome_emails',
  {
    id: bigint('id', { mode: 'number', unsigned: true }).autoincrement().primaryKey(),
    customerId: bigint('customer_id', { mode: 'number', unsigned: true }).notNull(),
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
