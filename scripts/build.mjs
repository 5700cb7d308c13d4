// npm run build: the server compiled to dist/ (tsc), its migrations and plain scripts beside it, and the web
// console (vite) into dist/console. With --if-stale (npm start) it does nothing when no source
// is newer than the last build. Plain JavaScript: it runs before anything is compiled.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STAMP = join(ROOT, 'dist', '.built');
const SOURCES = ['src', 'package.json', 'npm-shrinkwrap.json', 'tsconfig.json', 'tsconfig.build.json'];

function newest(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(stat.mtimeMs, ...readdirSync(path).map((name) => newest(join(path, name))));
}

function isStale() {
  if (!existsSync(STAMP)) return true;
  const built = statSync(STAMP).mtimeMs;
  return SOURCES.some((source) => existsSync(join(ROOT, source)) && newest(join(ROOT, source)) > built);
}

async function build({ ifStale = false } = {}) {
  if (ifStale && !isStale()) return false;
  rmSync(join(ROOT, 'dist'), { recursive: true, force: true });
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')], {
    stdio: 'inherit',
  });
  cpSync(join(ROOT, 'src/storage/migrations'), join(ROOT, 'dist/storage/migrations'), { recursive: true });
  cpSync(join(ROOT, 'src/storage/pglite-initdb.mjs'), join(ROOT, 'dist/storage/pglite-initdb.mjs'));
  const { build: vite } = await import('vite');
  await vite({ configFile: join(ROOT, 'src/console/vite.config.ts') });
  writeFileSync(STAMP, `${new Date().toISOString()}\n`);
  return true;
}

const started = Date.now();
if (await build({ ifStale: process.argv.includes('--if-stale') }))
  console.log(`built dist/ in ${((Date.now() - started) / 1000).toFixed(1)} s`);
