import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

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
    include: ['test/**/*.test.ts'],
    // Fails the run at once, with instructions, when MariaDB/MySQL or RabbitMQ is not reachable.
    globalSetup: ['test/support/preflight.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Files isolate themselves (own database, own exchange and queues), so they may run in
    // parallel; two at a time matches the 2-core machines CI runs on.
    maxWorkers: 2,
    env: { LOG_LEVEL: 'silent' },
  },
});
