import { type SQLWrapper, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/mysql2';
import { describe, expect, it } from 'vitest';
import { toDriverValue } from '../../src/db/driver-values.js';
import { dialect, renderStatements } from '../../src/db/prepared.js';
import { renderedInsert } from '../../src/db/rendered-inserts.js';
import { customers, inbox, welcomeEmails, workerProgress } from '../../src/db/schema.js';

/**
 * A plain insert rendered from its shape's kept text (db/rendered-inserts.ts) must be exactly
 * what Drizzle renders, text and values, for every shape; what the kept text cannot express is
 * left to Drizzle. No database: the renderer is Drizzle's dialect.
 */

const db = drizzle.mock({ mode: 'default' });

const byDrizzle = (statement: SQLWrapper) => {
  const query = dialect.sqlToQuery(statement.getSQL());
  return { text: query.sql, values: query.params };
};

const welcome = (n: number, sentAt: Date) =>
  db.insert(welcomeEmails).values({
    customerId: BigInt(n),
    eventId: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    recipient: `c${n}@example.com`,
    subject: `Welcome, ${n}!`,
    body: `Hello ${n}`,
    sentAt,
  });

describe('renderedInsert', () => {
  it('renders what Drizzle renders, binding each insert of a shape its own values', () => {
    const statements = [
      welcome(1, new Date('2026-01-01T00:00:00.123Z')),
      welcome(2, new Date('2026-02-03T04:05:06.789Z')),
      db.insert(inbox).values({ consumer: 'c', messageId: 'm', handledAt: new Date(0) }),
      db.insert(workerProgress).values([
        { consumer: 'c', aggregateType: 'A', aggregateId: '1', lastSequence: 1 },
        { consumer: 'c', aggregateType: 'A', aggregateId: '2', lastSequence: 3 },
      ]),
      db
        .insert(customers)
        .ignore()
        .values({
          email: 'y@example.com',
          emailNormalized: 'y@example.com',
          name: 'Y',
          createdAt: new Date(6),
        }),
      db.insert(customers).values({
        email: 'x@example.com',
        emailNormalized: 'x@example.com',
        name: 'X',
        createdAt: new Date(5),
        version: undefined,
      }),
      db.insert(welcomeEmails).values({
        id: 7,
        customerId: 3n,
        eventId: 'e',
        recipient: 'r',
        subject: 's',
        body: 'b',
        sentAt: new Date(9),
      }),
    ];
    for (const statement of statements) {
      const own = renderedInsert(statement, byDrizzle);
      expect(own).toEqual(byDrizzle(statement));
      // The second of a shape comes from the kept text.
      expect(renderedInsert(statement, () => ({ text: 'not rendered again', values: [] }))).toEqual(own);
    }
    expect(renderStatements(statements.slice(0, 2))).toEqual({
      text: `${byDrizzle(statements[0] as SQLWrapper).text}; ${byDrizzle(statements[1] as SQLWrapper).text}`,
      values: [
        ...byDrizzle(statements[0] as SQLWrapper).values,
        ...byDrizzle(statements[1] as SQLWrapper).values,
      ],
    });
  });

  it('leaves to Drizzle what a kept text cannot express', () => {
    const notPlain = [
      db.insert(inbox).values({ consumer: 'c', messageId: sql`UUID()`, handledAt: new Date(0) }),
      db.insert(inbox).values({ consumer: 'c', messageId: sql.placeholder('id'), handledAt: new Date(0) }),
      db
        .insert(workerProgress)
        .values({ consumer: 'c', aggregateType: 'A', aggregateId: '1', lastSequence: 1 })
        .onDuplicateKeyUpdate({ set: { lastSequence: 2 } }),
      db.select().from(inbox),
      sql`INSERT INTO inbox VALUES (${1})`,
    ];
    for (const statement of notPlain) expect(renderedInsert(statement, byDrizzle)).toBeUndefined();
  });
});

describe('toDriverValue', () => {
  it("encodes a Date again once it holds another time, and each column's own way", () => {
    const at = new Date('2026-01-01T00:00:00.123Z');
    expect(toDriverValue(inbox.handledAt, at)).toBe('2026-01-01 00:00:00.123');
    expect(toDriverValue(inbox.handledAt, at)).toBe('2026-01-01 00:00:00.123');
    at.setTime(Date.parse('2026-05-06T07:08:09.010Z'));
    expect(toDriverValue(inbox.handledAt, at)).toBe('2026-05-06 07:08:09.010');
    expect(toDriverValue(inbox.handledAt, new Date(0))).toBe('1970-01-01 00:00:00.000');
    expect(toDriverValue(customers.id, 12n)).toEqual(customers.id.mapToDriverValue(12n));
  });
});
