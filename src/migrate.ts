/**
 * `npm run db:migrate` (`node dist/migrate.js` in the image): creates the database named in
 * DATABASE_URL if needed and applies the drizzle/ migrations, as every role also does at start.
 */
import { loadConfigOrExit } from './config/index.js';
import { boundsOf } from './db/bounds.js';
import { connectDatabase, ensureDatabase } from './db/client.js';
import { runMigrations } from './db/migrate.js';
import { createLogger } from './log.js';
import { StartupError } from './support/startup-error.js';

const config = loadConfigOrExit();
const log = createLogger(config.logLevel, {}, undefined, config.logRepeatIntervalMs);

try {
  await ensureDatabase(config.databaseUrl);
  // DDL and the migration lock's wait may take longer than any service statement.
  const handle = connectDatabase(config.databaseUrl, 2, { ...boundsOf(config), queryTimeoutMs: 0 });
  try {
    await runMigrations(handle);
    log.info({ database: new URL(config.databaseUrl).pathname.slice(1) }, 'migrations applied');
  } finally {
    await handle.close();
  }
} catch (error) {
  if (error instanceof StartupError) log.fatal(error.message);
  else log.fatal({ err: error }, 'migration failed');
  process.exitCode = 1;
}
