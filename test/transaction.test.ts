import { sql } from 'drizzle-orm';
import mysql from 'mysql2';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  commitWith,
  connectDatabase,
  type DatabaseHandle,
  execute,
  readAll,
  readRows,
  type Transaction,
  TransactionEndedError,
  transaction,
  writeAtCommit,
} from '../src/db/client.js';
import { DeferredResultError } from '../src/db/deferred-writes.js';
import { customers } from '../src/db/schema.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

let db: TestDatabase;
/** One connection for transactions: the next transaction runs on the kept one's connection. */
let single: DatabaseHandle;

beforeAll(async () => {
  db = await createTestDatabase('transaction');
  single = connectDatabase(db.url, 1);
});

afterAll(async () => {
  await single?.close();
  await db?.drop();
});

const customer = (name: string) => ({
  email: `${name}@example.com`,
  emailNormalized: `${name}@example.com`,
  name,
  createdAt: new Date(),
});
const names = async () =>
  (await db.query<{ name: string }>('SELECT name FROM customers ORDER BY id')).map((r) => r.name);
const connectionId = async (tx: Transaction) =>
  Number(
    ((await tx.execute(sql`SELECT CONNECTION_ID() AS id`)) as unknown as [Array<{ id: number }>])[0][0]?.id,
  );

describe('a transaction used after it ended', () => {
  it('refuses every call with TransactionEndedError and sends nothing into the next transaction on its connection', async () => {
    let kept!: Transaction;
    let builtBefore!: PromiseLike<unknown>;
    const firstConnection = await transaction(single.db, async (tx) => {
      kept = tx;
      await tx.insert(customers).values(customer('inside'));
      // Built inside, sent after: as an un-awaited call in a handler would be.
      builtBefore = tx.insert(customers).values(customer('built-inside-sent-after'));
      return connectionId(tx);
    });

    await transaction(single.db, async (next) => {
      // The same pooled connection, now inside another transaction, which commits below.
      expect(await connectionId(next)).toBe(firstConnection);
      expect(() => kept.insert(customers)).toThrow(TransactionEndedError);
      expect(() => kept.select()).toThrow(TransactionEndedError);
      // Drizzle wraps what the connection threw in its own error.
      await expect(Promise.resolve(builtBefore)).rejects.toMatchObject({
        cause: expect.any(TransactionEndedError),
      });
      await expect(execute(kept, sql`DELETE FROM customers`)).rejects.toThrow(TransactionEndedError);
      await expect(writeAtCommit(kept, sql`DELETE FROM customers`)).rejects.toThrow(TransactionEndedError);
      await expect(commitWith(kept, [sql`DELETE FROM customers`])).rejects.toThrow(TransactionEndedError);
      await next.insert(customers).values(customer('next'));
    });

    expect(await names()).toEqual(['inside', 'next']);
  });

  it('a transaction that rolled back refuses calls too', async () => {
    let kept!: Transaction;
    await expect(
      transaction(single.db, async (tx) => {
        kept = tx;
        throw new Error('body fails');
      }),
    ).rejects.toThrow('body fails');
    expect(() => kept.update(customers)).toThrow(
      /this transaction has ended: a statement sent now would run outside it/,
    );
  });

  it('a transaction of Drizzle’s own (a database not made by connectDatabase) refuses calls once it ended', async () => {
    const { drizzle } = await import('drizzle-orm/mysql2');
    const own = drizzle(db.pool, { mode: 'default' }) as unknown as Parameters<typeof transaction>[0];
    let kept!: Transaction;
    await transaction(own, async (tx) => {
      kept = tx;
      await tx.select({ n: sql`1` }).from(customers);
    });
    expect(() => kept.delete(customers)).toThrow(TransactionEndedError);
  });
});

describe('writes deferred to the COMMIT (deferringWrites, as the worker runs a handler)', () => {
  it('an awaited insert goes with the COMMIT, a later read in the same body sees it (sent in the read’s round trip), and a result read early says why', async () => {
    const query = vi.spyOn(mysql.Connection.prototype, 'query');
    let seen: string[] = [];
    let early: unknown;
    let header!: { affectedRows: number };
    try {
      await transaction(single.db, (tx) =>
        tx.deferringWrites(async () => {
          const [result] = (await tx.insert(customers).values(customer('deferred'))) as unknown as [
            { affectedRows: number },
          ];
          header = result;
          // Nothing sent yet: the insert waits for the COMMIT or for a read.
          expect(query).not.toHaveBeenCalled();
          try {
            void header.affectedRows;
          } catch (error) {
            early = error;
          }
          seen = (await tx.select({ name: customers.name }).from(customers)).map((r) => r.name);
        }),
      );
      // The read carried the insert; the COMMIT went alone.
      expect(query).toHaveBeenCalledTimes(2);
    } finally {
      query.mockRestore();
    }
    expect(seen).toContain('deferred');
    expect(early).toBeInstanceOf(DeferredResultError);
    expect(header.affectedRows).toBe(1);
    expect(await names()).toContain('deferred');
  });

  it('a deferred write that fails fails the transaction, even when the body never reads again', async () => {
    const before = await names();
    await expect(
      transaction(single.db, (tx) =>
        tx.deferringWrites(async () => {
          await tx.insert(customers).values(customer('twice'));
          await tx.insert(customers).values(customer('twice'));
        }),
      ),
    ).rejects.toThrow(/Duplicate entry/);
    expect(await names()).toEqual(before);
  });
});

describe('the session settings a transaction asks for', () => {
  const settings = sql`SELECT @@session.innodb_lock_wait_timeout AS lockWait, @@session.wait_timeout AS idle`;
  type Settings = { lockWait: number | string; idle: number | string };
  const asked = { lockWaitSeconds: 2, idleTimeoutSeconds: 7 } as const;
  const plain = (rows: Settings[]) =>
    rows.map((r) => ({ lockWait: Number(r.lockWait), idle: Number(r.idle) }));

  it('hold from its first statement, sent by the engine or through Drizzle, and are gone after it', async () => {
    const defaults = plain(await transaction(single.db, (tx) => readRows<Settings>(tx, settings)));
    expect(defaults[0]).not.toEqual({ lockWait: 2, idle: 7 });

    const first = await transaction(single.db, (tx) => readRows<Settings>(tx, settings), asked);
    expect(plain(first)).toEqual([{ lockWait: 2, idle: 7 }]);
    const viaDrizzle = await transaction(
      single.db,
      async (tx) => (await tx.execute(settings))[0] as unknown as Settings[],
      asked,
    );
    expect(plain(viaDrizzle)).toEqual([{ lockWait: 2, idle: 7 }]);
    const several = await transaction(
      single.db,
      (tx) => readAll(tx, [settings, sql`SELECT 1 AS one`]),
      asked,
    );
    expect(plain(several[0] as Settings[])).toEqual([{ lockWait: 2, idle: 7 }]);
    expect(several[1]).toEqual([{ one: 1 }]);

    // The same pooled connection (a pool of one), back to the server's defaults.
    expect(plain(await transaction(single.db, (tx) => readRows<Settings>(tx, settings)))).toEqual(defaults);
  });
});
