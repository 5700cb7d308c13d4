/**
 * npm run bench:memory [-- MiB]: peak RSS of an `intake serve` process (PostgreSQL mode)
 * while it ingests a large CSV and a large JSON array (default 1024 MiB each), against the
 * same process's RSS when idle. Streams mean the peak should not grow with the file.
 * Needs DATABASE_URL (a server where it may create and drop a database).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, openAsBlob, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { jiraCsv } from './jira-csv.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const targetBytes = Number(process.argv[2] ?? 1024) * 1024 ** 2;
const base = process.env.DATABASE_URL;
if (!base) {
  console.error('bench:memory needs DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)');
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), 'intake-memory-'));
const mb = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(0)} MB`;

async function write(path: string, chunks: Iterable<string>): Promise<void> {
  const out = createWriteStream(path);
  for (const chunk of chunks) if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  await new Promise<void>((resolve) => out.end(() => resolve()));
}

/** The CSV's rows as a JSON array of objects, streamed. */
function* jsonArray(rows: number): Generator<string> {
  let first = true;
  yield '[';
  for (const chunk of jiraCsv(rows)) {
    for (const line of chunk.split('\n')) {
      if (!line || line.startsWith('id,')) continue;
      const [id, key, ...rest] = line.split(',');
      yield `${first ? '' : ','}\n{"id":${id},"key":${JSON.stringify(key)},"fields":${JSON.stringify(rest)},"nested":{"points":[1,2,3],"ok":true}}`;
      first = false;
    }
  }
  yield '\n]\n';
}

function status(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

async function run(file: string, name: string, databaseUrl: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: '0', LOG_LEVEL: 'info', DATABASE_URL: databaseUrl, DATA_DIR: join(work, 'data'), MAX_UPLOAD_BYTES: String(4 * 1024 ** 3) },
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
  await sleep(500);
  const idle = status(child.pid!, 'VmRSS');
  const started = performance.now();
  const form = new FormData();
  form.append('file', await openAsBlob(file), name);
  const { job_id: jobId } = (await (await fetch(`${url}/api/upload`, { method: 'POST', body: form })).json()) as { job_id: string };
  let job: { status: string; records_processed: number; error: string | null };
  for (;;) {
    job = (await (await fetch(`${url}/api/job/${jobId}`)).json()) as typeof job;
    if (job.status === 'completed' || job.status === 'failed') break;
    await sleep(200);
  }
  const seconds = (performance.now() - started) / 1000;
  const peak = status(child.pid!, 'VmHWM');
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  if (job.status !== 'completed') throw new Error(`${name}: job ${job.status}: ${job.error}`);
  console.log(`${name.padEnd(10)} ${mb(statSync(file).size).padStart(8)}  ${job.records_processed.toLocaleString('en-US')} records in ${seconds.toFixed(0)} s  peak RSS ${mb(peak)} (idle ${mb(idle)})`);
}

try {
  const rows = Math.round(targetBytes / 151); // bench/jira-csv.ts writes about 151 bytes a row
  const csv = join(work, 'big.csv');
  const json = join(work, 'big.json');
  await write(csv, jiraCsv(rows));
  await write(json, jsonArray(Math.round(rows * 0.75)));
  const name = 'intake_bench_memory';
  execFileSync('psql', [base, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, '-c', `CREATE DATABASE ${name}`], { stdio: 'ignore' });
  const url = new URL(base);
  url.pathname = `/${name}`;
  try {
    await run(csv, 'big.csv', url.toString());
    await run(json, 'big.json', url.toString());
  } finally {
    execFileSync('psql', [base, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'ignore' });
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
