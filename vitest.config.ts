import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The AWS SDK's notice about its future Node 22 requirement, printed by every test process that builds a client.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          // A few unit tests start the CLI (--help, argument checks): a cold start can pass 5 s on a busy 2-core machine.
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/harness/preflight.ts'],
          // Real servers on a 2-core machine: one file at a time keeps timings honest and ports free.
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
