import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    pgliteTemplate: string;
  }
}

/**
 * A fresh PGlite data directory costs an initdb (seconds); it is made once per run and
 * copied by each test that needs an embedded database.
 */
export default async function setup(project: TestProject) {
  const root = mkdtempSync(join(tmpdir(), 'intake-template-'));
  const dir = join(root, 'pgdata');
  const pg = await PGlite.create(dir);
  await pg.close();
  project.provide('pgliteTemplate', dir);
  // The fast suite (npm test) runs on the embedded database only, in CI as anywhere.
  if (process.env.CI && !process.env.INTAKE_TEST_FAST && !(process.env.DATABASE_URL && process.env.REDIS_URL)) {
    throw new Error('CI must run with DATABASE_URL and REDIS_URL set: nothing may be skipped for lack of a service');
  }
  // The tests run the installed command (bin/intake.js: the compiled server) and load the
  // console that `npm start` serves: build them as npm start does, when a source changed.
  execFileSync(process.execPath, ['scripts/build.mjs', '--if-stale'], { stdio: 'inherit' });
  return () => rmSync(root, { recursive: true, force: true });
}
