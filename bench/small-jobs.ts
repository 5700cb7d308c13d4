/**
 * npm run bench:small-jobs [-- JOBS ROWS]: a dataset appended to by many small jobs against the
 * same rows loaded by one job. A real `intake serve` (PostgreSQL mode) takes JOBS posts of ROWS
 * records each into dataset `many` (10 at a time), and one post of all of them into `one`;
 * then `SELECT count(*)` and a rows page (the first, and one deep in by cursor) are timed on
 * both, median of 7, and the ratios printed. Needs DATABASE_URL (a server where it may create
 * and drop a database).
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { NODE_FLAGS } from '../src/cli/node-flags.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const jobs = Number(process.argv[2] ?? 10_000);
const rowsPerJob = Number(process.argv[3] ?? 10);
const base = process.env.DATABASE_URL;
if (!base) {
  console.error('bench:small-jobs needs DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)');
  process.exit(2);
}
const name = 'intake_bench_small';
execFileSync('psql', [base, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, '-c', `CREATE DATABASE ${name}`], { stdio: 'ignore' });
const url = new URL(base);
url.pathname = `/${name}`;
const work = mkdtempSync(join(tmpdir(), 'intake-small-'));
const child = spawn(process.execPath, [...NODE_FLAGS, '--import', 'tsx', 'src/cli/main.ts', 'serve'], {
  cwd: ROOT,
  env: {
    PATH: process.env.PATH ?? '',
    PORT: '0',
    LOG_LEVEL: 'info',
    DATABASE_URL: url.toString(),
    DATA_DIR: work,
    WORKER_CONCURRENCY: '2',
  },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const db = new pg.Client({ connectionString: url.toString() });

const record = (job: number, row: number) => ({
  id: job * rowsPerJob + row,
  job,
  name: `row ${row} of job ${job}`,
  amount: (row * 7.25).toFixed(2),
  at: '2026-12-01T10:00:00Z',
});

async function post(api: string, dataset: string, records: object[]): Promise<string> {
  const res = await fetch(`${api}/api/ingest/json?dataset=${dataset}`, {
    method: 'POST',
    body: JSON.stringify(records),
    headers: { 'content-type': 'application/json' },
  });
  if (res.status !== 202) throw new Error(`submit answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { job_id: string }).job_id;
}

async function waitFor(api: string, jobId: string): Promise<void> {
  for (;;) {
    const job = (await (await fetch(`${api}/api/job/${jobId}`)).json()) as { status: string; error: string | null };
    if (job.status === 'completed') return;
    if (job.status !== 'queued' && job.status !== 'running') throw new Error(`job ${jobId} ${job.status}: ${job.error}`);
    await sleep(20);
  }
}

/** The median of `runs` timings of fn, in ms. */
async function median(fn: () => Promise<unknown>, runs = 7): Promise<number> {
  await fn(); // warm
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    times.push(performance.now() - start);
  }
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)]!;
}

try {
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let api: string | undefined;
  while (!api) {
    api = /Server listening at (http:\/\/[\d.]+:\d+)/.exec(output)?.[1];
    if (child.exitCode !== null) throw new Error(`intake serve exited:\n${output}`);
    await sleep(50);
  }
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 10 }, async () => {
      for (let job = next++; job < jobs; job = next++) {
        await waitFor(
          api,
          await post(
            api,
            'many',
            Array.from({ length: rowsPerJob }, (_, row) => record(job, row)),
          ),
        );
      }
    }),
  );
  const manyMs = performance.now() - started;
  const all: object[] = [];
  for (let job = 0; job < jobs; job++) for (let row = 0; row < rowsPerJob; row++) all.push(record(job, row));
  await waitFor(api, await post(api, 'one', all));
  console.log(
    `${jobs.toLocaleString('en-US')} jobs of ${rowsPerJob} rows into "many" in ${(manyMs / 1000).toFixed(1)} s (${(manyMs / jobs) | 0} ms a job, 10 clients); the same ${(jobs * rowsPerJob).toLocaleString('en-US')} rows as one job into "one"`,
  );

  await db.connect();
  await db.query('VACUUM ANALYZE datasets.many, datasets.one');
  const deep = String(Math.floor(jobs * rowsPerJob * 0.9));
  for (const [label, run] of [
    ['SELECT count(*)', (d: string) => db.query(`SELECT count(*) FROM datasets.${d}`)],
    ['rows page, first (API)', (d: string) => fetch(`${api}/api/datasets/${d}/rows?limit=100`).then((r) => r.text())],
    ['rows page at 90% (API)', (d: string) => fetch(`${api}/api/datasets/${d}/rows?limit=100&cursor=${deep}`).then((r) => r.text())],
    [
      "a job's records (API)",
      async (d: string) => {
        const { rows } = await db.query(`SELECT _intake_job_id AS id FROM datasets.${d} WHERE _intake_id = $1`, [deep]);
        return fetch(`${api}/api/job/${rows[0].id}/records?limit=100`).then((r) => r.text());
      },
    ],
  ] as const) {
    const many = await median(() => run('many'));
    const one = await median(() => run('one'));
    console.log(
      `${label.padEnd(24)} many ${many.toFixed(2).padStart(8)} ms   one ${one.toFixed(2).padStart(8)} ms   many/one ${(many / one).toFixed(2)}`,
    );
  }
} finally {
  await db.end().catch(() => {});
  child.kill('SIGTERM');
  if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
  execFileSync('psql', [base, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'ignore' });
  rmSync(work, { recursive: true, force: true });
}
