/**
 * npm run test:load — a bounded load and soak test of scale-out mode (LOAD_SECONDS, default 60).
 *
 * One `intake serve` (API only) and two `intake worker` processes on PostgreSQL (a scratch
 * database of DATABASE_URL's server) and Redis (REDIS_URL, under a key prefix of its own).
 * A wave of 200 concurrent uploads of small CSV and NDJSON files every LOAD_SECONDS / 3, while
 * 50 pollers read the status URL of every job submitted so far, round and round, until the end.
 * Passes when every job is `completed` with its exact record count (in the API and in the
 * table), no request was answered 5xx or failed, and no process's memory kept growing: the
 * peak RSS of the last third of the run is within 1.5 × (+ 64 MB) of the first third's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { freePort } from './redis-server.js';
import { Redis } from 'ioredis';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECONDS = Number(process.env.LOAD_SECONDS ?? 60);
const WAVE = 200;
const POLLERS = 50;
const { DATABASE_URL: base, REDIS_URL: redisUrl } = process.env;
if (!base || !redisUrl) {
  console.error('test:load needs DATABASE_URL and REDIS_URL (scale-out mode)');
  process.exit(2);
}

const name = `intake_load_${process.pid}`;
const prefix = `${name}:`;
const url = new URL(base);
url.pathname = `/${name}`;
const env = {
  PATH: process.env.PATH ?? '',
  HOME: process.env.HOME ?? '',
  DATABASE_URL: url.toString(),
  REDIS_URL: redisUrl,
  REDIS_KEY_PREFIX: prefix,
  LOG_LEVEL: 'warn',
  DATA_DIR: `/tmp/${name}`,
};

function rss(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

function launch(args: string[], extra: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: ROOT,
    env: { ...env, ...extra },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

/** A small file: CSV or NDJSON, 50 to 2,000 records. */
function smallFile(i: number): { name: string; body: string; records: number } {
  const records = 50 + ((i * 7919) % 1951);
  if (i % 2 === 0) {
    let body = 'id,name,note\n';
    for (let r = 0; r < records; r++) body += `${r},user ${r},"note ${i}-${r}, quoted"\n`;
    return { name: `load-${i}.csv`, body, records };
  }
  let body = '';
  for (let r = 0; r < records; r++) body += `${JSON.stringify({ id: r, job: i, tags: ['a', 'b'] })}\n`;
  return { name: `load-${i}.ndjson`, body, records };
}

const admin = new pg.Client({ connectionString: base });
await admin.connect();
await admin.query(`CREATE DATABASE ${name}`);
const port = await freePort();
const api = launch(['serve'], { PORT: String(port), HOST: '127.0.0.1', WORKER_CONCURRENCY: '0' });
const workers = [launch(['worker'], { WORKER_CONCURRENCY: '2' }), launch(['worker'], { WORKER_CONCURRENCY: '2' })];
const processes = [api, ...workers];
const apiUrl = `http://127.0.0.1:${port}`;
const problems: string[] = [];
let failedAnswers = 0;
let requests = 0;

try {
  for (let ready = false; !ready;) {
    if (processes.some((child) => child.exitCode !== null)) throw new Error('an Intake process exited at start');
    ready = (await fetch(`${apiUrl}/readyz`).catch(() => undefined))?.ok ?? false;
    if (!ready) await sleep(200);
  }
  const expected = new Map<string, number>();
  const ids: string[] = [];
  const samples: { at: number; rss: number[] }[] = [];
  const started = Date.now();
  const deadline = started + SECONDS * 1000;

  const sampler = setInterval(() => {
    try {
      samples.push({ at: Date.now() - started, rss: processes.map((child) => rss(child.pid!)) });
    } catch {
      problems.push('a process is gone');
    }
  }, 1000);

  async function call(path: string, init?: RequestInit): Promise<Response | undefined> {
    requests++;
    try {
      const res = await fetch(apiUrl + path, init);
      if (res.status >= 500) failedAnswers++;
      return res;
    } catch (err) {
      failedAnswers++;
      problems.push(`${init?.method ?? 'GET'} ${path}: ${(err as Error).message}`);
      return undefined;
    }
  }

  let fileNo = 0;
  async function wave(): Promise<void> {
    await Promise.all(
      Array.from({ length: WAVE }, async () => {
        const file = smallFile(fileNo++);
        const form = new FormData();
        form.append('file', new Blob([file.body]), file.name);
        // Every file of a format appends to one dataset: concurrent loads into the same table.
        const res = await call(`/api/upload?dataset=load_${file.name.endsWith('.csv') ? 'csv' : 'ndjson'}`, { method: 'POST', body: form });
        if (res?.status !== 202) {
          problems.push(`upload ${file.name} answered ${res?.status}`);
          return;
        }
        const { job_id: jobId } = (await res.json()) as { job_id: string };
        expected.set(jobId, file.records);
        ids.push(jobId);
      }),
    );
  }

  async function poller(): Promise<void> {
    for (let i = 0; Date.now() < deadline; i++) {
      if (ids.length === 0) {
        await sleep(20);
        continue;
      }
      const res = await call(`/api/job/${ids[i % ids.length]}`);
      if (res && res.status !== 200) problems.push(`status read answered ${res.status}`);
      await res?.arrayBuffer();
    }
  }

  const waves = (async () => {
    for (let n = 0; n < 3 && Date.now() < deadline; n++) {
      await wave();
      const next = started + ((n + 1) * SECONDS * 1000) / 3;
      if (n < 2) await sleep(Math.max(0, next - Date.now()));
    }
  })();
  await Promise.all([waves, ...Array.from({ length: POLLERS }, poller)]);

  // Every job to its end (bounded), then each checked in the API and in the table.
  const settleBy = Date.now() + 120_000;
  let unfinished = [...expected.keys()];
  while (unfinished.length > 0 && Date.now() < settleBy) {
    const still: string[] = [];
    for (const jobId of unfinished) {
      const res = await call(`/api/job/${jobId}`);
      const job = (await res?.json()) as { status: string; records_processed: number; error: string | null } | undefined;
      if (!job || job.status === 'queued' || job.status === 'running') still.push(jobId);
      else if (job.status !== 'completed' || job.records_processed !== expected.get(jobId)) {
        problems.push(`job ${jobId}: ${job.status}, ${job.records_processed} of ${expected.get(jobId)} records, ${job.error}`);
      }
    }
    unfinished = still;
    if (unfinished.length > 0) await sleep(500);
  }
  clearInterval(sampler);
  if (unfinished.length > 0) problems.push(`${unfinished.length} jobs unfinished 120 s after the end`);
  const db = new pg.Client({ connectionString: env.DATABASE_URL });
  await db.connect();
  const { rows } = await db.query<{ job_id: string; n: number }>(
    `SELECT _intake_job_id AS job_id, count(*)::int AS n FROM datasets.load_csv GROUP BY 1
     UNION ALL SELECT _intake_job_id, count(*)::int FROM datasets.load_ndjson GROUP BY 1`,
  );
  await db.end();
  const stored = new Map(rows.map((row) => [row.job_id, row.n]));
  for (const [jobId, records] of expected) {
    if (stored.get(jobId) !== records) problems.push(`job ${jobId}: ${stored.get(jobId) ?? 0} rows stored, ${records} expected`);
  }

  // Memory: the last third of the run against the first third, per process.
  const third = (SECONDS * 1000) / 3;
  const names = ['api', 'worker 1', 'worker 2'];
  const memory = names.map((label, p) => {
    const peak = (from: number, to: number) => Math.max(...samples.filter((s) => s.at >= from && s.at < to).map((s) => s.rss[p]!));
    const early = peak(0, third);
    const late = peak(2 * third, Infinity);
    if (late > early * 1.5 + 64 * 1024 ** 2) problems.push(`${label}: RSS grew from ${mb(early)} to ${mb(late)}`);
    return `${label} ${mb(early)} → ${mb(late)}`;
  });
  const records = [...expected.values()].reduce((a, b) => a + b, 0);
  console.log(
    `test:load: ${SECONDS} s, ${expected.size} jobs (${records.toLocaleString('en')} records) by ${WAVE} concurrent uploads a wave, ` +
      `${requests.toLocaleString('en')} requests, ${failedAnswers} failed or 5xx; peak RSS first → last third: ${memory.join(', ')}`,
  );
} catch (err) {
  problems.push((err as Error).message);
} finally {
  for (const child of processes) if (child.exitCode === null) child.kill('SIGTERM');
  await Promise.all(
    processes.filter((child) => child.exitCode === null).map((child) => new Promise((resolve) => child.once('exit', resolve))),
  );
  const redis = new Redis(redisUrl);
  for (let cursor = '0', first = true; first || cursor !== '0'; first = false) {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  }
  redis.disconnect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}

function mb(bytes: number): string {
  return `${Math.round(bytes / 1024 ** 2)} MB`;
}

if (problems.length > 0) {
  console.error(`test:load FAILED (${problems.length} problems):\n${problems.slice(0, 30).join('\n')}`);
  process.exit(1);
}
console.log('test:load passed');
