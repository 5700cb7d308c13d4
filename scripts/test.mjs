// npm test: the type check, then the fast suite: the embedded database only (no PostgreSQL or
// Redis needed, whatever DATABASE_URL and REDIS_URL say), without what vitest.config.ts leaves
// to the full run. npm run test:full (--full): the type check, every test against every backend
// configured (DATABASE_URL, REDIS_URL), then the installed package's test on its own (see
// vitest.config.ts). Either way the last line says how long it took. Other arguments go to vitest.
import { spawnSync } from 'node:child_process';

const full = process.argv.includes('--full');
const vitestArgs = process.argv.slice(2).filter((arg) => arg !== '--full');
const env = { ...process.env };
if (!full) {
  delete env.DATABASE_URL;
  delete env.REDIS_URL;
  env.TEST_BACKENDS = 'embedded';
  env.INTAKE_TEST_FAST = '1';
}

const steps = [
  ['npm', ['run', '-s', 'typecheck']],
  ['npx', ['vitest', 'run', ...vitestArgs]],
];
if (full && !vitestArgs.some((arg) => !arg.startsWith('-')))
  steps.push(['npx', ['vitest', 'run', 'test/package.test.ts'], { INTAKE_TEST_PACKAGE: '1' }]);

const started = Date.now();
let status = 0;
for (const [command, args, extra] of steps) {
  const run = spawnSync(command, args, { stdio: 'inherit', env: { ...env, ...extra } });
  status = run.status ?? 1;
  if (status !== 0) break;
}
const seconds = Math.round((Date.now() - started) / 1000);
const name = full ? 'npm run test:full' : 'npm test';
console.log(`\n${name}: ${status === 0 ? 'passed' : 'failed'} in ${Math.floor(seconds / 60)} min ${seconds % 60} s`);
process.exit(status);
