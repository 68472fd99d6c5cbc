import { defineConfig } from 'drizzle-kit';

// drizzle-kit is a development tool: `npm run db:generate` writes SQL migrations into drizzle/
// from src/db/schema.ts. The service applies them itself at start (src/db/migrate.ts), so
// drizzle-kit reads the same DATABASE_URL default the service uses only for `drizzle-kit studio`.
export default defineConfig({
  dialect: 'mysql',
  schema: './src/db/schema.ts',
  out: './drizzle',
  dbCredentials: { url: process.env.DATABASE_URL ?? 'mysql://root@127.0.0.1:3306/outbox' },
});
