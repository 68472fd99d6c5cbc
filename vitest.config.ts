import { defineConfig } from 'vitest/config';

export default defineConfig({
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
