import { createRequire } from 'node:module';
import { configDefaults, defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

export default defineConfig({
  resolve: {
    // One `graphql` for everything. Node loads graphql's CommonJS build (the package has no
    // "exports"), but Vite would hand the modules it transforms the ESM build (its "module"
    // field): two copies, and graphql-ws fails with "Cannot use GraphQLSchema from another
    // module or realm".
    alias: [{ find: /^graphql$/, replacement: require.resolve('graphql') }],
  },
  test: {
    // Files isolate themselves (own database, own exchange and queues), so they may run in
    // parallel; two at a time matches the 2-core machines CI runs on.
    maxWorkers: 2,
    env: { LOG_LEVEL: 'silent' },
    // `vitest run` runs both; `vitest run test/unit` (npm run test:unit) only the unit project,
    // whose files need no server, so a change to pure logic is answered in seconds even when
    // MariaDB and RabbitMQ are down.
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 5_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, 'test/unit/**'],
          // Fails the run at once, with instructions, when MariaDB/MySQL or RabbitMQ is not reachable.
          globalSetup: ['test/support/preflight.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
