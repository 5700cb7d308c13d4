/**
 * npm run bench:compare -- COMMIT [ROWS]: this checkout's loads against another commit's, in
 * one run, on the same file: a performance change measured, not assumed. Builds COMMIT in a git
 * worktree, then runs three rounds (the two in turns, who goes first alternating) of
 *   (b) PostgreSQL mode, a new dataset;  (g) the same file gzipped;  (e) embedded mode (PGlite),
 * each a real `intake serve` from upload to `completed`, and prints each path's median and the
 * ratio this checkout / COMMIT (below 1.00: this checkout is faster). BENCH_ROUNDS sets the
 * rounds, BENCH_PATHS (e.g. `b,e`) the paths. Needs DATABASE_URL.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createGzip } from 'node:zlib';
import { jiraCsv } from './jira-csv.js';
import { dropDatabase, freshDatabase, ingestThroughIntake, mb } from './run-intake.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const commit = process.argv[2];
const rows = Number(process.argv[3] ?? process.env.BENCH_ROWS ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
// BENCH_PATHS=b,e: only those paths.
const only = process.env.BENCH_PATHS?.split(',');
const base = process.env.DATABASE_URL;
if (!commit || !base) {
  console.error('usage: DATABASE_URL=postgres://… npm run bench:compare -- COMMIT [ROWS]');
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), 'intake-compare-'));
const tree = join(work, 'other');

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

try {
  const csv = join(work, 'jira.csv');
  await pipeline(Readable.from(jiraCsv(rows)), createWriteStream(csv));
  const gz = join(work, 'jira.csv.gz');
  await pipeline(createReadStream(csv), createGzip(), createWriteStream(gz));
  console.log(`${rows.toLocaleString('en-US')} rows, ${mb(statSync(csv).size)} CSV, ${mb(statSync(gz).size)} gzipped`);

  execFileSync('git', ['-C', ROOT, 'worktree', 'add', '--detach', tree, commit], { stdio: 'ignore' });
  symlinkSync(join(ROOT, 'node_modules'), join(tree, 'node_modules'));
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: tree, stdio: 'inherit' });

  const checkouts = { this: ROOT, [commit]: tree };
  const onPostgres = (n: number) => ({ DATABASE_URL: freshDatabase(base, `intake_compare_${n}`), DATA_DIR: join(work, `pg-${n}`) });
  const paths: Record<string, (root: string, n: number) => ReturnType<typeof ingestThroughIntake>> = {
    '(b) PostgreSQL append': (root, n) => ingestThroughIntake(onPostgres(n), csv, 'jira.csv', '?dataset=jira', root),
    '(g) PostgreSQL gzip   ': (root, n) => ingestThroughIntake(onPostgres(n), gz, 'jira.csv.gz', '?dataset=jira', root),
    '(e) embedded append   ': (root, n) =>
      ingestThroughIntake({ DATA_DIR: join(work, `embedded-${n}`) }, csv, 'jira.csv', '?dataset=jira', root),
  };
  const times: Record<string, Record<string, number[]>> = {};
  let n = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const [path, run] of Object.entries(paths).filter(([path]) => !only || only.includes(path[1]!))) {
      const order = Object.entries(checkouts);
      if (round % 2 === 1) order.reverse();
      for (const [name, root] of order) {
        const result = await run(root, ++n);
        dropDatabase(base, `intake_compare_${n}`);
        rmSync(join(work, `embedded-${n}`), { recursive: true, force: true });
        ((times[path] ??= {})[name] ??= []).push(result.ms);
        console.log(`round ${round + 1} ${path} ${name.padEnd(8)} ${seconds(result.ms)}`);
      }
    }
  }
  console.log(`\nmedians of ${ROUNDS} (ratio: this checkout / ${commit})`);
  for (const [path, byName] of Object.entries(times)) {
    const mine = median(byName.this!);
    const theirs = median(byName[commit]!);
    console.log(`${path}  this ${seconds(mine)}  ${commit} ${seconds(theirs)}  ratio ${(mine / theirs).toFixed(3)}`);
  }
} finally {
  spawnSync('git', ['-C', ROOT, 'worktree', 'remove', '--force', tree], { stdio: 'ignore' });
  rmSync(work, { recursive: true, force: true });
}
