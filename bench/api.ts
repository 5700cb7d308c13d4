/**
 * npm run bench:api [-- --jobs 1000000 --seconds 5 --rounds 3 --only a,a3,b]
 *
 * The status and list paths against PostgreSQL + Redis, measured at 50 connections with wrk
 * when it is installed (a C load generator on one thread: it leaves the server more of the
 * cores than autocannon, so the ratios are truer) or else autocannon, each beside the
 * framework's ceiling measured in the same run:
 *   (a) a bare Fastify route returning a constant (bench/bare-server.ts), started like Intake
 *   (a2) the same server's route doing one indexed node-postgres query by id: what any route
 *        that reads the database can reach here (PostgreSQL shares the cores)
 *   (a3) the same server's route doing one Redis GET of a job's cache key: the floor under (b)
 *   (b) GET /api/job/{id} over random existing ids, cache warm
 *   (c) the same with Redis stopped (the database path)
 *   (d) GET /api/jobs?status=completed, first page
 *   (d2) the same list from a random point in time (submitted_before): no two requests alike,
 *        so none shares another's query (identical pages asked at once do: see batchReads)
 *   (e) a deep page of the same list, by cursor and by offset
 * Seeds N jobs by COPY into a scratch database of DATABASE_URL's server (dropped at the end),
 * on a private redis-server. Each figure is the median of --rounds runs; each ratio is to an (a)
 * run made just before it in the same round (the median of those ratios).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import pg from 'pg';
import { NODE_FLAGS } from '../src/cli/node-flags.js';
import { openPostgres } from '../src/storage/postgres.js';
import { migrate } from '../src/storage/migrate.js';
import { freePort, startRedisServer } from '../test/redis-server.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '1000000' },
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    only: { type: 'string' },
  },
});
const JOBS = Number(values.jobs);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
/** The scenarios to run, by their tag ((a), (d2) …): all by default. */
const ONLY = values.only?.split(',').map((tag) => `(${tag.trim()})`);
const CONNECTIONS = 50;
const SAMPLE = 20_000; // ids requested at random in (b) and (c)

const base = process.env.DATABASE_URL;
if (!base) {
  console.error('bench:api needs DATABASE_URL (a PostgreSQL server; a scratch database is created and dropped on it)');
  process.exit(2);
}

/** Starts a server process on a free port, at its default log level, and waits until it answers readyPath. */
async function start(args: string[], env: Record<string, string>, readyPath: string): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [...(args[0] === 'src/cli/main.ts' ? NODE_FLAGS : []), '--import', 'tsx', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: String(port), HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'ignore', 'inherit'], // the log (stdout) as a deployment would write it, unread
  });
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited with code ${child.exitCode}`);
    const res = await fetch(url + readyPath).catch(() => undefined);
    if (res?.ok) return { child, url };
    await sleep(100);
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
}

interface Figures {
  rps: number;
  p50: number;
  p99: number;
  mean: number;
  /** This scenario's rate over the ceiling's, measured just before it in the same round. */
  ratio: number;
}

/** One run's rate and latencies (ms), from either load generator. */
interface Run {
  rps: number;
  p50: number;
  p99: number;
  mean: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const WRK = (() => {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    // wrk --version prints its banner and exits 1; only a missing binary is "not installed".
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
})();
const scratch = mkdtempSync(join(tmpdir(), 'intake-bench-api-'));
const PATH_SAMPLES = 20_000;
// wrk's script: a random path from the scenario's file per request; the summary as one JSON line.
const WRK_SCRIPT = join(scratch, 'paths.lua');
writeFileSync(
  WRK_SCRIPT,
  `local paths = {}
for line in io.lines(os.getenv("WRK_PATHS")) do paths[#paths + 1] = line end
local n = #paths
function init(args) math.randomseed(os.time()) end
function request() return wrk.format("GET", paths[math.random(n)]) end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
`,
);
let pathFiles = 0;

/** One run. Failures are reported, not thrown: a deep OFFSET page may time out, which is the point of measuring it. */
async function once(url: string, paths: () => string): Promise<Run> {
  if (WRK) {
    const file = join(scratch, `paths-${pathFiles++}.txt`);
    writeFileSync(file, Array.from({ length: PATH_SAMPLES }, paths).join('\n') + '\n');
    const { stdout } = await promisify(execFile)(
      'wrk',
      ['-t1', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '--timeout', '10s', '-s', WRK_SCRIPT, url],
      {
        env: { ...process.env, WRK_PATHS: file },
      },
    );
    rmSync(file);
    const line = stdout.split('\n').find((l) => l.startsWith('WRK '));
    if (!line) throw new Error(`wrk printed no summary:\n${stdout}`);
    const r = JSON.parse(line.slice(4)) as Record<string, number>;
    const failures = r.errors! + r.non2xx! + r.timeouts!;
    if (failures > 0) console.log(`  ${url}: ${r.errors} errors, ${r.non2xx} non-2xx answers, ${r.timeouts} timeouts`);
    return { rps: r.requests! / (r.duration_us! / 1e6), p50: r.p50_us! / 1000, p99: r.p99_us! / 1000, mean: r.mean_us! / 1000 };
  }
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: SECONDS,
    requests: [{ method: 'GET', setupRequest: (request) => ({ ...request, path: paths() }) }],
  });
  const failures = result.errors + result.non2xx + result.timeouts;
  if (failures > 0) console.log(`  ${url}: ${result.errors} errors, ${result.non2xx} non-2xx answers, ${result.timeouts} timeouts`);
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, mean: result.latency.average };
}

/**
 * ROUNDS rounds, each the ceiling (a) and then the scenario: the machine is shared and its speed
 * drifts by half within minutes, so each ratio compares runs seconds apart. Medians of each figure.
 */
async function measure(ceilingUrl: string, url: string, paths: () => string): Promise<Figures> {
  const runs: Figures[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const ceiling = await once(ceilingUrl, () => '/constant');
    const result = url === ceilingUrl && paths() === '/constant' ? ceiling : await once(url, paths);
    runs.push({ ...result, ratio: result.rps / ceiling.rps });
  }
  const of = (key: keyof Figures) => median(runs.map((r) => r[key]));
  return { rps: of('rps'), p50: of('p50'), p99: of('p99'), mean: of('mean'), ratio: of('ratio') };
}

const STATUSES = [
  'completed',
  'completed',
  'completed',
  'completed',
  'completed',
  'completed',
  'completed',
  'failed',
  'failed',
  'canceled',
];

/** N jobs by COPY, 100,000 rows a statement, submitted over the last year; returns a sample of ids. */
async function seed(db: ReturnType<typeof openPostgres>): Promise<string[]> {
  const sample: string[] = [];
  const now = Date.now();
  const yearMs = 365 * 24 * 3600 * 1000;
  for (let done = 0; done < JOBS;) {
    const n = Math.min(100_000, JOBS - done);
    let text = '';
    for (let i = 0; i < n; i++) {
      const id = randomUUID();
      if (sample.length < SAMPLE && Math.random() < (SAMPLE * 2) / JOBS) sample.push(id);
      const submitted = new Date(now - Math.random() * yearMs);
      const status = STATUSES[(done + i) % STATUSES.length]!;
      const startedAt = new Date(submitted.getTime() + 5).toISOString();
      const completedAt = new Date(submitted.getTime() + 900).toISOString();
      const error = status === 'failed' ? 'CSV error on line 3: expected 3 fields as in the header, found 2' : '\\N';
      text += `${id}\tcsv_upload\tfile-${done + i}.csv\tcsv\t${status}\t${submitted.toISOString()}\t${startedAt}\t${completedAt}\t1000\t${error}\t4\t1\t0\t1000\t64000\t64000\n`;
    }
    await db.copyFrom(
      'COPY ingest_jobs (job_id, source_type, file_name, format, status, submitted_at, started_at, completed_at, records_processed, error, version, attempts, records_failed, max_errors, bytes_total, bytes_processed) FROM STDIN',
      text,
    );
    done += n;
  }
  // What autovacuum does to a table after a bulk insert: the steady state of a long-lived table.
  await db.exec('VACUUM ANALYZE ingest_jobs');
  return sample;
}

const name = `intake_bench_api_${process.pid}`;
const admin = new pg.Client({ connectionString: base });
await admin.connect();
await admin.query(`CREATE DATABASE ${name}`);
const url = new URL(base);
url.pathname = `/${name}`;
const databaseUrl = url.toString();
const redis = await startRedisServer();
const processes: ChildProcess[] = [];
try {
  const db = openPostgres(databaseUrl, 2, () => {});
  await migrate(db);
  let t0 = performance.now();
  const ids = await seed(db);
  console.log(
    `seeded ${JOBS.toLocaleString('en')} jobs by COPY in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${ids.length} ids sampled`,
  );
  // The deep page: 90% of the way down the status=completed list.
  const completed = Math.round(JOBS * 0.7);
  const deepOffset = Math.floor(completed * 0.9);
  await db.close();

  const bare = await start(['bench/bare-server.ts'], { DATABASE_URL: databaseUrl, REDIS_URL: redis.url }, '/constant');
  processes.push(bare.child);
  const intake = await start(
    ['src/cli/main.ts', 'serve'],
    {
      DATABASE_URL: databaseUrl,
      REDIS_URL: redis.url,
      WORKER_CONCURRENCY: '0',
      DATA_DIR: `/tmp/${name}`,
    },
    '/readyz',
  );
  processes.push(intake.child);
  // The deep page's cursor, as a client paging down would hold it: next_cursor of the row before.
  const before = await fetch(`${intake.url}/api/jobs?status=completed&limit=1&offset=${deepOffset - 1}`);
  const cursor = ((await before.json()) as { next_cursor: string }).next_cursor;
  const randomId = () => ids[Math.floor(Math.random() * ids.length)]!;
  const random = () => `/api/job/${randomId()}`;

  // Warm the cache: every sampled id read once.
  t0 = performance.now();
  const toWarm = [...ids];
  await autocannon({
    url: intake.url,
    connections: CONNECTIONS,
    amount: toWarm.length,
    requests: [{ method: 'GET', setupRequest: (request) => ({ ...request, path: `/api/job/${toWarm.pop()}` }) }],
  });
  console.log(`cache warmed (${ids.length} ids) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const results: [string, Figures][] = [];
  const run = async (label: string, target: string, paths: () => string) => {
    if (ONLY && !ONLY.some((tag) => label.startsWith(tag + ' '))) return;
    const figures = await measure(bare.url, target, paths);
    results.push([label, figures]);
    console.log(`${label}: ${figures.rps.toFixed(0)} req/s, p50 ${figures.p50} ms, p99 ${figures.p99} ms`);
  };
  await run('(a) bare Fastify, constant', bare.url, () => '/constant');
  await run('(a2) bare Fastify, one pg query by id (the floor)', bare.url, () => `/pg/${randomId()}`);
  await run('(a3) bare Fastify, one Redis GET (the floor under (b))', bare.url, () => `/redis/${randomId()}`);
  const cacheCounts = async () => {
    const text = await (await fetch(`${intake.url}/metrics`)).text();
    const count = (result: string) =>
      Number(new RegExp(`intake_status_cache_requests_total\\{result="${result}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
    return { hits: count('hit'), misses: count('miss') };
  };
  const beforeB = await cacheCounts();
  await run('(b) GET /api/job/{id}, cache warm', intake.url, random);
  const afterB = await cacheCounts();
  const reads = afterB.hits - beforeB.hits + afterB.misses - beforeB.misses;
  if (reads > 0)
    console.log(`  (b) answered from the cache: ${(((afterB.hits - beforeB.hits) / reads) * 100).toFixed(1)} % of ${reads} reads`);
  await run('(d) GET /api/jobs?status=completed, first page', intake.url, () => '/api/jobs?status=completed');
  const yearAgo = Date.now() - 365 * 24 * 3600 * 1000;
  await run('(d2) same list from a random time: no two requests alike', intake.url, () => {
    const before = new Date(yearAgo + Math.random() * (Date.now() - yearAgo)).toISOString();
    return `/api/jobs?status=completed&submitted_before=${before}`;
  });
  await run(
    `(e) same list, deep page by cursor (row ${deepOffset.toLocaleString('en')})`,
    intake.url,
    () => `/api/jobs?status=completed&cursor=${cursor}`,
  );
  await redis.stop('SIGKILL');
  await sleep(1500);
  await run('(c) GET /api/job/{id}, Redis stopped (database path)', intake.url, random);
  // Last: deep OFFSET queries outlive the clients that gave up on them and would slow what follows.
  await run(
    `(e) same list, deep page by offset (${deepOffset.toLocaleString('en')})`,
    intake.url,
    () => `/api/jobs?status=completed&offset=${deepOffset}`,
  );

  console.log(
    `\nbench:api — ${WRK ? 'wrk' : 'autocannon'}, ${JOBS.toLocaleString('en')} jobs, ${CONNECTIONS} connections, median of ${ROUNDS} rounds of ${SECONDS} s, PostgreSQL + Redis`,
  );
  console.log('scenario'.padEnd(62) + 'req/s'.padStart(9) + 'p50 ms'.padStart(9) + 'p99 ms'.padStart(9) + '  × (a)');
  for (const [label, f] of results) {
    console.log(
      label.padEnd(62) + f.rps.toFixed(0).padStart(9) + String(f.p50).padStart(9) + String(f.p99).padStart(9) + `  ${f.ratio.toFixed(2)}`,
    );
  }
  const first = results.find(([label]) => label.startsWith('(d)'))?.[1];
  const deep = results.find(([label]) => label.includes('by cursor'))?.[1];
  if (first && deep) console.log(`deep page by cursor vs first page, mean latency: ${(deep.mean / first.mean).toFixed(2)} ×`);
} finally {
  for (const child of processes) await stop(child);
  await redis.stop('SIGKILL').catch(() => {});
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
  rmSync(scratch, { recursive: true, force: true });
}
