import { fileURLToPath } from 'node:url';
import { migrate } from 'drizzle-orm/mysql2/migrator';
import type { DatabaseHandle } from './client.js';
import { namedLock } from './dialect.js';

/** drizzle/ at the repository root, wherever the process was started from. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../drizzle', import.meta.url));

const LOCK_NAME = 'graphql-outbox:migrate';
const LOCK_TIMEOUT_S = 60;

/**
 * Applies the migrations drizzle-kit generated into drizzle/.
 *
 * Drizzle's migrator is not safe against itself: two processes starting together (an app and
 * two relays, say) would both see a migration as missing and the second would fail on
 * "table exists". A server-wide named lock, held on a connection of its own while the migrator
 * runs, lets exactly one process migrate while the others wait and then find nothing to do.
 */
export async function runMigrations(handle: DatabaseHandle): Promise<void> {
  const lock = await handle.pool.getConnection();
  try {
    const [rows] = await lock.query(namedLock.take, [LOCK_NAME, LOCK_TIMEOUT_S]);
    if ((rows as Array<{ got: number | null }>)[0]?.got !== 1) {
      throw new Error(`Timed out after ${LOCK_TIMEOUT_S}s waiting for another process's migration`);
    }
    try {
      await migrate(handle.db, { migrationsFolder: MIGRATIONS_FOLDER });
    } finally {
      await lock.query(namedLock.release, [LOCK_NAME]);
    }
  } finally {
    lock.release();
  }
}
