import { defineConfig } from 'vitest/config';

// npm test (scripts/test.mjs) sets INTAKE_TEST_FAST: the embedded database only, and none of
// these files, which npm run test:full runs: processes crashed, killed with -9 and restarted,
// connections to PostgreSQL cut, Redis and the scale-out queue (they need the services),
// fuzzing, the browser tests. Heavy cases inside the other files skip themselves (FAST in
// test/helpers.ts).
const FULL_ONLY = [
  'test/cache-freshness.test.ts',
  'test/console.test.ts',
  'test/crash.test.ts',
  'test/db-failover.test.ts',
  'test/fuzz.test.ts',
  'test/restart.test.ts',
  'test/scaleout.test.ts',
];

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: [
      // The installed-package test (npm pack, npm install -g, npx) runs on its own, after the
      // suite (npm run test:full), since it installs from the registry. INTAKE_TEST_PACKAGE=1 runs it.
      ...(process.env.INTAKE_TEST_PACKAGE ? [] : ['test/package.test.ts']),
      ...(process.env.INTAKE_TEST_FAST ? FULL_ONLY : []),
    ],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: PGlite, PostgreSQL and the child processes of the restart tests share them.
    maxWorkers: 2,
  },
});
