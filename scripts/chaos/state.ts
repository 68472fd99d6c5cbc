import type { Connection, RowDataPacket } from 'mysql2/promise';

/** What the end of the run reads from the private database to check the invariants. */
export interface DbState {
  readonly customers: ReadonlyArray<{ id: string; email: string }>;
  readonly outbox: ReadonlyArray<{
    eventId: string;
    aggregateType: string;
    aggregateId: string;
    sequence: number;
    type: string;
    published: boolean;
    dead: boolean;
    leased: boolean;
  }>;
  readonly welcome: ReadonlyArray<{ eventId: string; customerId: string }>;
  /** undefined when the service has no handled_events table (yet). */
  readonly handled:
    | ReadonlyArray<{ eventId: string; customerId: string; sequence: number; type: string }>
    | undefined;
  /** Why `handled` is undefined: no table, or a table of another shape than expected. */
  readonly handledNote: string | undefined;
  readonly inboxMessageIds: ReadonlySet<string>;
}

export const CUSTOMER_CREATED = 'CustomerCreated';

async function hasTable(db: Connection, table: string): Promise<boolean> {
  const [rows] = await db.query<RowDataPacket[]>(
    'SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?',
    [table],
  );
  return rows.length > 0;
}

export async function readState(db: Connection): Promise<DbState> {
  const [customers] = await db.query<RowDataPacket[]>('SELECT id, email FROM customers');
  const [outbox] = await db.query<RowDataPacket[]>(
    `SELECT event_id, aggregate_type, aggregate_id, sequence, type,
            published_at IS NOT NULL AS published, dead_at IS NOT NULL AS dead,
            (published_at IS NULL AND lease_expires_at > NOW(3)) AS leased
       FROM outbox`,
  );
  const [welcome] = await db.query<RowDataPacket[]>('SELECT event_id, customer_id FROM welcome_emails');
  let handled: DbState['handled'];
  let handledNote: string | undefined = 'no handled_events table in this build';
  if (await hasTable(db, 'handled_events')) {
    // Being built beside this run: a table of another shape is reported, not fatal.
    try {
      const [rows] = await db.query<RowDataPacket[]>(
        'SELECT event_id, aggregate_id, sequence, type FROM handled_events ORDER BY position',
      );
      handled = rows.map((r) => ({
        eventId: String(r.event_id),
        customerId: String(r.aggregate_id),
        sequence: Number(r.sequence),
        type: String(r.type),
      }));
      handledNote = undefined;
    } catch (error) {
      handledNote = `handled_events unreadable: ${(error as Error).message}`;
    }
  }
  const [inbox] = await db.query<RowDataPacket[]>('SELECT message_id FROM inbox');
  return {
    customers: customers.map((r) => ({ id: String(r.id), email: String(r.email) })),
    outbox: outbox.map((r) => ({
      eventId: String(r.event_id),
      aggregateType: String(r.aggregate_type),
      aggregateId: String(r.aggregate_id),
      sequence: Number(r.sequence),
      type: String(r.type),
      published: Number(r.published) === 1,
      dead: Number(r.dead) === 1,
      leased: Number(r.leased) === 1,
    })),
    welcome: welcome.map((r) => ({ eventId: String(r.event_id), customerId: String(r.customer_id) })),
    handled,
    handledNote,
    inboxMessageIds: new Set(inbox.map((r) => String(r.message_id))),
  };
}

/**
 * The handled events a subscriber must have seen: the handled-events history when the service
 * keeps one, else one per welcome e-mail (each is a handled CustomerCreated event).
 */
export function handledEvents(
  state: DbState,
): Array<{ eventId: string; customerId: string; sequence: number }> {
  if (state.handled) return state.handled.map((h) => ({ ...h }));
  return state.welcome.map((w) => ({ eventId: w.eventId, customerId: w.customerId, sequence: 1 }));
}

/** Cheap figures for progress lines and for settling. */
export async function readBacklog(db: Connection) {
  const [rows] = await db.query<RowDataPacket[]>(
    `SELECT
       (SELECT COUNT(*) FROM outbox WHERE published_at IS NULL AND dead_at IS NULL) AS pending,
       (SELECT COUNT(*) FROM outbox WHERE dead_at IS NOT NULL) AS dead,
       (SELECT COUNT(*) FROM customers) AS customers,
       (SELECT COUNT(*) FROM welcome_emails) AS welcomed`,
  );
  const r = (rows[0] ?? {}) as Record<string, unknown>;
  return {
    pending: Number(r.pending),
    dead: Number(r.dead),
    customers: Number(r.customers),
    welcomed: Number(r.welcomed),
  };
}
