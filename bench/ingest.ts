/**
 * npm run bench:ingest [-- ROWS]: how close Intake's ingestion comes to PostgreSQL's own
 * COPY. Generates a deterministic Jira-like CSV (bench/jira-csv.ts), then, in one run:
 *   (a) the floor: psql \copy of the same records, pre-converted to the records table's
 *       COPY format, into the same (migrated, empty) table;
 *   (b) Intake end to end in PostgreSQL mode (a real `intake serve` process): upload to
 *       `completed`, with the process's peak RSS;
 *   (c) the same in embedded mode (PGlite).
 * Needs DATABASE_URL (a server where it may create and drop databases) and psql.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, openAsBlob, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseCsv } from '../src/ingest/csv.js';
import { decodeUtf8 } from '../src/ingest/decode.js';
import { jiraCsv } from './jira-csv.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const rows = Number(process.argv[2] ?? process.env.BENCH_ROWS ?? 1_000_000);
const base = process.env.DATABASE_URL;
if (!base) {
  console.error('bench:ingest needs DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)');
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), 'intake-bench-'));
const JOB = '00000000-0000-4000-8000-000000000000';

async function write(path: string, chunks: Iterable<string> | AsyncIterable<string>): Promise<void> {
  const out = createWriteStream(path);
  for await (const chunk of chunks) if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
  await new Promise<void>((resolve) => out.end(() => resolve()));
}

function database(name: string): string {
  execFileSync('psql', [base!, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, '-c', `CREATE DATABASE ${name}`], { stdio: 'ignore' });
  const url = new URL(base!);
  url.pathname = `/${name}`;
  return url.toString();
}

function dropDatabase(name: string): void {
  execFileSync('psql', [base!, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'ignore' });
}

function peakRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** Runs `intake serve` with env, uploads the CSV, waits for completion. */
async function intake(env: Record<string, string>, csv: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let url: string | undefined;
  while (!url) {
    url = /Server listening at (http:\/\/[\d.]+:\d+)/.exec(output)?.[1];
    if (child.exitCode !== null) throw new Error(`intake serve exited:\n${output}`);
    await sleep(50);
  }
  const baseline = peakRss(child.pid!);
  const started = performance.now();
  const form = new FormData();
  form.append('file', await openAsBlob(csv), 'jira.csv');
  const answer = (await (await fetch(`${url}/api/upload`, { method: 'POST', body: form })).json()) as { job_id: string };
  const uploadedMs = performance.now() - started;
  let job: { status: string; records_processed: number; error: string | null };
  for (;;) {
    job = (await (await fetch(`${url}/api/job/${answer.job_id}`)).json()) as typeof job;
    if (job.status === 'completed' || job.status === 'failed') break;
    await sleep(50);
  }
  const ms = performance.now() - started;
  const rss = peakRss(child.pid!);
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  if (job.status !== 'completed' || job.records_processed !== rows) throw new Error(`job ended ${job.status} with ${job.records_processed} records: ${job.error}`);
  return { ms, uploadedMs, rss, baseline };
}

const mb = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(0)} MB`;
const rate = (ms: number) => `${Math.round((rows / ms) * 1000).toLocaleString('en-US')} rows/s`;

try {
  const csv = join(work, 'jira.csv');
  await write(csv, jiraCsv(rows));
  const size = statSync(csv).size;
  console.log(`${rows.toLocaleString('en-US')} rows, ${mb(size)} CSV (${(size / rows).toFixed(0)} bytes a row)`);

  // (a) the floor: the same records in the records table's COPY format, loaded by psql.
  const copyFile = join(work, 'records.copy');
  let n = 0;
  await write(
    copyFile,
    (async function* () {
      for await (const record of parseCsv(decodeUtf8(createReadStream(csv)))) {
        yield `${JOB}\t${n++}\t${JSON.stringify(record.data).replaceAll('\\', '\\\\')}\n`;
      }
    })(),
  );
  const floorUrl = database('intake_bench_floor');
  execFileSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'migrate'], { cwd: ROOT, env: { ...process.env, DATABASE_URL: floorUrl }, stdio: 'ignore' });
  execFileSync('psql', [floorUrl, '-qc', `INSERT INTO ingest_jobs (job_id, source_type, status, format) VALUES ('${JOB}', 'csv_upload', 'running', 'csv')`]);
  const floorStart = performance.now();
  execFileSync('psql', [floorUrl, '-qc', `\\copy ingest_records (job_id, record_no, data) FROM '${copyFile}'`]);
  const floorMs = performance.now() - floorStart;
  dropDatabase('intake_bench_floor');
  rmSync(copyFile);
  console.log(`(a) psql \\copy floor        ${(floorMs / 1000).toFixed(1)} s  ${rate(floorMs)}`);

  // (b) Intake, PostgreSQL mode.
  const pgUrl = database('intake_bench_pg');
  const pgRun = await intake({ DATABASE_URL: pgUrl, DATA_DIR: join(work, 'pg-data') }, csv);
  dropDatabase('intake_bench_pg');
  console.log(
    `(b) Intake, PostgreSQL mode  ${(pgRun.ms / 1000).toFixed(1)} s  ${rate(pgRun.ms)}  ratio b/a ${(pgRun.ms / floorMs).toFixed(2)}  ` +
      `(upload ${(pgRun.uploadedMs / 1000).toFixed(1)} s)  peak RSS ${mb(pgRun.rss)} (idle ${mb(pgRun.baseline)})`,
  );

  // (c) Intake, embedded mode.
  const embedded = await intake({ DATA_DIR: join(work, 'embedded-data') }, csv);
  console.log(
    `(c) Intake, embedded mode    ${(embedded.ms / 1000).toFixed(1)} s  ${rate(embedded.ms)}  ratio c/a ${(embedded.ms / floorMs).toFixed(2)}  ` +
      `(upload ${(embedded.uploadedMs / 1000).toFixed(1)} s)  peak RSS ${mb(embedded.rss)} (idle ${mb(embedded.baseline)})`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
