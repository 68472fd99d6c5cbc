import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate } from 'drizzle-orm/mysql2/migrator';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectDatabase, type DatabaseHandle, ensureDatabase } from '../src/db/client.js';
import { MIGRATIONS_FOLDER, runMigrations } from '../src/db/migrate.js';
import { TEST_MYSQL_URL } from './support/env.js';
import { uniqueSuffix } from './support/service.js';

/**
 * The migration that makes idempotency keys compare byte for byte, run on a database that has
 * keys already: the tables as the migrations before it left them, rows in them, then every
 * migration as a start applies them.
 */

const BEFORE = '0003_idempotency_key_bytes';
const name = `outbox_t_key_migration_${uniqueSuffix()}`;
let handle: DatabaseHandle;
let folder: string;

/** drizzle/ as it was before BEFORE: the journal cut there. */
async function migrationsBefore(tag: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'outbox-migrations-'));
  await cp(MIGRATIONS_FOLDER, dir, { recursive: true });
  const journalPath = join(dir, 'meta', '_journal.json');
  const journal = JSON.parse(await readFile(journalPath, 'utf8')) as { entries: Array<{ tag: string }> };
  const at = journal.entries.findIndex((entry) => entry.tag === tag);
  expect(at, `${tag} is in the journal`).toBeGreaterThan(0);
  journal.entries = journal.entries.slice(0, at);
  await writeFile(journalPath, JSON.stringify(journal));
  return dir;
}

beforeAll(async () => {
  const url = new URL(TEST_MYSQL_URL);
  url.pathname = `/${name}`;
  await ensureDatabase(url.toString());
  handle = connectDatabase(url.toString(), 2);
  folder = await migrationsBefore(BEFORE);
  await migrate(handle.db, { migrationsFolder: folder });
});

afterAll(async () => {
  await handle?.close();
  if (folder) await rm(folder, { recursive: true, force: true });
  const admin = await mysql.createConnection({ uri: TEST_MYSQL_URL });
  try {
    await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
  } finally {
    await admin.end();
  }
});

const keys = async () => {
  const [rows] = await handle.pool.query(
    'SELECT HEX(`key`) AS hex, operation, request_hash AS hash FROM idempotency_keys ORDER BY `key`',
  );
  return rows as Array<{ hex: string; operation: string; hash: string }>;
};
const hex = (text: string) => Buffer.from(text).toString('hex').toUpperCase();
const insertKey = (key: string, hash: string) =>
  handle.pool.query(
    "INSERT INTO idempotency_keys (`key`, operation, request_hash, response, created_at) VALUES (?, 'updateCustomer', ?, '{}', NOW(3))",
    [key, hash],
  );

describe('the idempotency key migration', () => {
  it('keeps every existing key to the byte, and then keys that differ in case are two keys', async () => {
    await insertKey('Key-Case-X', 'a'.repeat(64));
    await insertKey('7c1f0e52-create-alan', 'b'.repeat(64));
    // Before: the column's collation ignores case, so the lower-case key is the same key.
    await expect(insertKey('key-case-x', 'c'.repeat(64))).rejects.toMatchObject({ errno: 1062 });

    await runMigrations(handle);

    expect(await keys()).toEqual([
      { hex: hex('7c1f0e52-create-alan'), operation: 'updateCustomer', hash: 'b'.repeat(64) },
      { hex: hex('Key-Case-X'), operation: 'updateCustomer', hash: 'a'.repeat(64) },
    ]);
    await insertKey('key-case-x', 'c'.repeat(64));
    // A trailing space is another key too (VARBINARY does not pad, unlike a _bin collation).
    await insertKey('key-case-x ', 'd'.repeat(64));
    expect((await keys()).map((k) => k.hash)).toEqual(['b', 'a', 'c', 'd'].map((c) => c.repeat(64)));
    await expect(insertKey('Key-Case-X', 'e'.repeat(64))).rejects.toMatchObject({ errno: 1062 });
  });
});
