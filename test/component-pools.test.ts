import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_BOUNDS } from '../src/db/bounds.js';
import { type Component, connectDatabase, execute, readRows, transaction } from '../src/db/client.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { waitFor } from './support/wait.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('component_pools');
  await db.query('CREATE TABLE pool_writes (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL)');
});

afterAll(async () => {
  await db?.drop();
});

/** The driver's error code, under Drizzle's wrapper if there is one. */
const codeOf = (error: unknown): string | undefined => {
  const e = error as { code?: string; cause?: { code?: string } } | undefined;
  return e?.code ?? e?.cause?.code;
};

/** The server's ids of this file's sessions inside a stuck statement. */
async function sleepingSessions(database: TestDatabase): Promise<number[]> {
  const rows = await database.query<{ id: number }>(
    "SELECT id FROM information_schema.processlist WHERE db = ? AND info LIKE 'SELECT SLEEP(60)%'",
    [database.name],
  );
  return rows.map((row) => Number(row.id));
}

const STUCK: readonly Component[] = ['relay', 'worker', 'feed', 'retention'];

describe('one stuck component never stops another', () => {
  it("requests commit while every other component's connections are all held by statements that do not end", async () => {
    const handle = connectDatabase(
      db.url,
      { requests: 2, relay: 2, worker: 1, feed: 1, retention: 2 },
      // A checkout deadline long enough for the stuck statements' connections to open on a busy
      // machine; a component whose pools are full then fails within it.
      { ...DEFAULT_BOUNDS, acquireTimeoutMs: 2_000, queryTimeoutMs: 60_000 },
    );
    // Stands in for a statement blocked on a lock or a dead link until its bound ends it; the
    // test ends them itself (KILL QUERY) once it has seen what it needs.
    const stuck: Array<Promise<unknown>> = [];
    const hold = (statement: Promise<unknown>) => stuck.push(statement.catch((e: unknown) => e));
    let holding = 0;
    try {
      for (const name of STUCK) {
        const { db: componentDb, pool } = handle.component(name);
        // Every connection of both of its pools: 2 at least for single statements, and as many
        // for transactions as its size (the sizes above).
        for (let i = 0; i < 2; i++) hold(pool.query('SELECT SLEEP(60)'));
        const size = name === 'relay' || name === 'retention' ? 2 : 1;
        for (let i = 0; i < size; i++) {
          hold(transaction(componentDb, (tx) => readRows(tx, sql`SELECT SLEEP(60)`)));
        }
        holding += 2 + size;
      }
      // Each stuck component is really stuck: every one of its connections is in a statement
      // on the server, and its next statement finds no free connection.
      await waitFor('every stuck statement running on the server', async () => {
        const sleeping = await sleepingSessions(db);
        return sleeping.length === holding;
      });
      const feedRead = await handle
        .component('feed')
        .db.execute(sql`SELECT 1`)
        .catch((e: unknown) => e);
      expect(codeOf(feedRead)).toBe('POOL_ACQUIRE_TIMEOUT');
      const relayClaim = await transaction(handle.component('relay').db, async () => {}).catch(
        (e: unknown) => e,
      );
      expect(codeOf(relayClaim)).toBe('POOL_ACQUIRE_TIMEOUT');

      // Creates go on: a transaction and a read of the requests' own, well before the sleeps end.
      const started = performance.now();
      for (let i = 0; i < 5; i++) {
        await transaction(handle.db, (tx) => execute(tx, sql`INSERT INTO pool_writes (v) VALUES (${i})`));
      }
      const [{ n }] = (await readRows<{ n: number }>(
        handle.db,
        sql`SELECT COUNT(*) AS n FROM pool_writes`,
      )) as [{ n: number }];
      expect(Number(n)).toBe(5);
      expect(performance.now() - started).toBeLessThan(1_500);
    } finally {
      for (const id of await sleepingSessions(db)) await db.query(`KILL QUERY ${Number(id)}`);
      await Promise.all(stuck);
      await handle.close();
    }
  });

  it('a number gives requests that many connections and every other component pools of its own', async () => {
    const handle = connectDatabase(db.url, 2);
    try {
      const seen = new Set([handle.pool, ...STUCK.map((name) => handle.component(name).pool)]);
      expect(seen.size).toBe(STUCK.length + 1);
      // Asked again, a component gets the same pools.
      expect(handle.component('feed').pool).toBe(handle.component('feed').pool);
      expect(handle.component('requests').db).toBe(handle.db);
    } finally {
      await handle.close();
    }
  });
});
