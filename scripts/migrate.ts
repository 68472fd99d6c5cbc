// `npm run db:migrate`: creates the database if needed and applies drizzle/ migrations.
import { loadConfig } from '../src/config/index.js';
import { connectDatabase, ensureDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { createLogger } from '../src/log.js';

const config = loadConfig(process.env);
const log = createLogger(config.logLevel);
await ensureDatabase(config.databaseUrl);
const handle = connectDatabase(config.databaseUrl, 2);
try {
  await runMigrations(handle);
  log.info({ database: new URL(config.databaseUrl).pathname.slice(1) }, 'migrations applied');
} finally {
  await handle.close();
}
