import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { connectDatabase, type DatabaseHandle, ensureDatabase } from '../../src/db/client.js';
import { runMigrations } from '../../src/db/migrate.js';
import { TEST_MYSQL_URL } from './env.js';

export interface TestDatabase extends DatabaseHandle {
  /** DATABASE_URL of this file's own database. */
  readonly url: string;
  readonly name: string;
  /** Plain SQL on the test database, for assertions and fault injection. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Closes the pool and drops the database. */
  drop(): Promise<void>;
}

/** A fresh, migrated database for one test file, named after it so leftovers are traceable. */
export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const name = `outbox_t_${label.replace(/[^A-Za-z0-9]/g, '_').slice(0, 30)}_${randomBytes(4).toString('hex')}`;
  const url = new URL(TEST_MYSQL_URL);
  url.pathname = `/${name}`;
  await ensureDatabase(url.toString());
  const handle = connectDatabase(url.toString(), 10);
  await runMigrations(handle);
  return {
    ...handle,
    url: url.toString(),
    name,
    async query<T>(sql: string, params: unknown[] = []) {
      const [rows] = await handle.pool.query(sql, params);
      return rows as T[];
    },
    async drop() {
      await handle.close();
      const admin = await mysql.createConnection({ uri: TEST_MYSQL_URL });
      try {
        await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
      } finally {
        await admin.end();
      }
    },
  };
}
