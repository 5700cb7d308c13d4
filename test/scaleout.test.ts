import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { CacheStats, StatusCache } from '../src/live/status-cache.js';
import type { JobPayload } from '../src/core/job.js';
import {
  createSandbox,
  getJson,
  makeCsv,
  publishedStats,
  scaleOutAvailable,
  startServer,
  upload,
  waitForJob,
  type Sandbox,
} from './helpers.js';
import { startIntakeProcess, startWorkerProcess } from './process.js';
import { freePort, startRedisServer, type RedisServer } from './redis-server.js';

type WorkerProcess = Awaited<ReturnType<typeof startWorkerProcess>>;

interface Row {
  status: string;
  records_processed: number;
  attempts: number;
  error: string | null;
  started_at: Date | null;
}

/** The job row straight from the database (the source of truth), not through the cache. */
async function jobRow(sandbox: Sandbox, jobId: string): Promise<Row> {
  const { rows } = await sandbox.admin!.query<Row>(
    'SELECT status, records_processed, attempts, error, started_at FROM ingest_jobs WHERE job_id = $1',
    [jobId],
  );
  if (!rows[0]) throw new Error(`no row for job ${jobId}`);
  return rows[0];
}

/** What a job published: every record_no once, 0..n-1, is n rows, n distinct, min 0, max n-1. */
const recordStats = (sandbox: Sandbox, jobId: string) => publishedStats(sandbox.admin!, jobId);

/** Polls the row until `done` says so; throws with the last row seen after timeoutMs. */
async function waitForRow(sandbox: Sandbox, jobId: string, done: (row: Row) => boolean, what: string, timeoutMs = 60_000): Promise<Row> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await jobRow(sandbox, jobId);
    if (done(row)) return row;
    if (Date.now() > deadline) throw new Error(`job ${jobId}: ${what} not reached in ${timeoutMs} ms; last row ${JSON.stringify(row)}`);
    await sleep(10);
  }
}

/** Polls until the process output contains `text`; returns how long it took. */
async function waitForOutput(proc: { output(): string }, text: string, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!proc.output().includes(text)) {
    if (Date.now() - started > timeoutMs) throw new Error(`"${text}" not seen in ${timeoutMs} ms; output:\n${proc.output().slice(-4000)}`);
    await sleep(10);
  }
  return Date.now() - started;
}

/** The pino lines of a process's output that mention a job. */
function logLines(proc: { output(): string }, jobId: string): Record<string, unknown>[] {
  return proc
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{') && line.includes(jobId))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/**
 * Which worker process is ingesting the job right now. Each worker connects to PostgreSQL
 * with its own application_name (PGAPPNAME); only the one holding the job runs the batch
 * statements, and its connection shows them in pg_stat_activity while they run (between
 * batches it shows COMMIT, so this samples until it sees one).
 */
async function holderOf(sandbox: Sandbox, workers: Record<string, WorkerProcess>, timeoutMs = 5000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await sandbox.admin!.query<{ application_name: string }>(
      `SELECT DISTINCT application_name FROM pg_stat_activity
       WHERE datname = current_database() AND application_name LIKE 'intake-worker-%'
         AND (query LIKE 'COPY intake_stage.%' OR query LIKE '%SET records_processed = records_processed%')`,
    );
    const names = rows.map((r) => r.application_name.slice('intake-worker-'.length));
    for (const name of names) expect(workers, `unknown worker ${name}`).toHaveProperty(name);
    if (names.length > 1) throw new Error(`several workers ingest the same job at once: ${names.join(', ')}`);
    if (names.length === 1) return names[0]!;
    if (Date.now() > deadline) throw new Error(`no worker seen ingesting in ${timeoutMs} ms`);
    await sleep(2);
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Rejects if `promise` has not settled in ms (so a hung close cannot hang the cleanup). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish in ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * GETs the job's status URL sequentially for at least `minRequests` requests and `minMs`
 * (so several cache breaker periods are covered), but no longer than maxMs (a slow server
 * then shows in the percentiles instead of timing the test out); returns every status and latency.
 */
async function pollLatencies(url: string, minRequests: number, minMs: number, maxMs = 10_000) {
  const statuses: number[] = [];
  const bodies: JobPayload[] = [];
  const latencies: number[] = [];
  const started = performance.now();
  while ((latencies.length < minRequests || performance.now() - started < minMs) && performance.now() - started < maxMs) {
    const t0 = performance.now();
    const res = await fetch(url);
    const body = (await res.json()) as JobPayload;
    latencies.push(performance.now() - t0);
    statuses.push(res.status);
    bodies.push(body);
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  return { statuses, bodies, n: sorted.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1]! };
}

describe.skipIf(!scaleOutAvailable())('scale-out faults (PostgreSQL + Redis + BullMQ, real processes and signals)', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    // Every step runs, even when one fails: no process, server or database is left behind.
    const errors: unknown[] = [];
    for (const fn of cleanup.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw errors[0];
  });

  async function sandboxed(): Promise<Sandbox> {
    const sandbox = await createSandbox({ name: 'scale-out' });
    cleanup.push(() => sandbox.dispose());
    return sandbox;
  }

  async function worker(env: Record<string, string>, name: string): Promise<WorkerProcess> {
    const proc = await startWorkerProcess({ ...env, PGAPPNAME: `intake-worker-${name}` });
    cleanup.push(() => proc.stop('SIGKILL'));
    return proc;
  }

  async function api(env: Record<string, string>) {
    const proc = await startIntakeProcess({ ...env, WORKER_CONCURRENCY: '0' });
    cleanup.push(() => proc.stop('SIGKILL'));
    return proc;
  }

  it('a worker killed with SIGKILL halfway: another worker resumes from the checkpoint, exact count, no duplicates', async () => {
    const ROWS = 200_000;
    const sandbox = await sandboxed();
    // The checked path: this test interrupts a load between its batches.
    const env = { ...sandbox.env, BATCH_SIZE: '2000', FAST_PATH_MAX_BYTES: '0' };
    const server = await api(env);
    const workers: Record<string, WorkerProcess> = { a: await worker(env, 'a'), b: await worker(env, 'b') };

    const submitted = Date.now();
    const res = await upload(server.url, 'big.csv', makeCsv(ROWS));
    expect(res.status).toBe(202);
    const jobId: string = res.body.job_id;

    const before = await waitForRow(
      sandbox,
      jobId,
      (row) => row.records_processed >= ROWS * 0.25 || !['queued', 'running'].includes(row.status),
      '25% committed',
    );
    expect(before.status).toBe('running');
    expect(before.records_processed).toBeLessThanOrEqual(ROWS * 0.6);
    const name = await holderOf(sandbox, workers);
    const holder = workers[name]!;
    const survivor = workers[name === 'a' ? 'b' : 'a']!;
    expect(await holder.stop('SIGKILL')).toBeNull();
    const killedAt = Date.now();
    await sleep(200); // a COMMIT sent just before the kill lands in PostgreSQL too
    const atKill = await jobRow(sandbox, jobId);
    console.log(`SIGKILLed worker ${name} at ${atKill.records_processed}/${ROWS} records, ${killedAt - submitted} ms after the upload`);
    expect(atKill.status).toBe('running');
    expect(atKill.records_processed).toBeLessThan(ROWS);

    // Redelivered as stalled (WORKER_LOCK_MS=2000) to the survivor, which resumes at the checkpoint.
    await waitForOutput(survivor, 'resuming job from its checkpoint', 30_000);
    const redeliverMs = Date.now() - killedAt;
    const resumed = logLines(survivor, jobId).find((line) => line.msg === 'resuming job from its checkpoint');
    expect(resumed).toMatchObject({ jobId, checkpoint: atKill.records_processed, attempt: 2 });
    console.log(`redelivered to worker ${name === 'a' ? 'b' : 'a'} ${redeliverMs} ms after the SIGKILL`);

    const job = await waitForJob(server.url, jobId, 120_000);
    console.log(`job completed ${Date.now() - killedAt} ms after the SIGKILL (${Date.now() - submitted} ms after the upload)`);
    expect(job).toMatchObject({ status: 'completed', records_processed: ROWS, error: null });
    expect(job.started_at).toBe(before.started_at!.toISOString()); // resumed, not restarted
    // The worker logs the end of its run just after the status URL can show it. A delivery that
    // came while the killed worker's heartbeat was still fresh ended as 'skipped' before it.
    const outcomes = () =>
      logLines(survivor, jobId)
        .filter((line) => line.msg === 'job run ended')
        .map((line) => line.outcome);
    await expect.poll(outcomes, { timeout: 10_000 }).toContain('completed');
    expect(outcomes().filter((outcome) => outcome !== 'skipped')).toEqual(['completed']);
    expect(await recordStats(sandbox, jobId)).toEqual({ n: ROWS, distinct_n: ROWS, min: 0, max: ROWS - 1 });
    expect((await jobRow(sandbox, jobId)).attempts).toBe(2);
  }, 180_000);

  it('Redis hung (SIGSTOP) or down (SIGKILL) while a status URL is polled: every answer 200 and fast; the cache comes back by itself', async () => {
    const sandbox = await sandboxed();
    let redis: RedisServer = await startRedisServer();
    cleanup.push(() => redis.stop('SIGKILL'));
    const env: Record<string, string> = { ...sandbox.env, REDIS_URL: redis.url };
    // A completed job, made by a real worker that then stops cleanly.
    const serverPromise = startServer(sandbox, { REDIS_URL: redis.url, WORKER_CONCURRENCY: '0' });
    cleanup.push(async () => {
      const started = await serverPromise.catch(() => undefined);
      if (!started) return;
      redis.resume(); // a paused server would hold up the close
      await within(started.close(), 20_000, 'closing Intake');
    });
    const server = await serverPromise;
    const w = await worker(env, 'a');
    const res = await upload(server.url, 'small.csv', makeCsv(300));
    expect(res.status).toBe(202);
    const jobId: string = res.body.job_id;
    const done = await waitForJob(server.url, jobId);
    expect(done).toMatchObject({ status: 'completed', records_processed: 300 });
    expect(await w.stop('SIGTERM')).toBe(0);

    const cache = server.intake.cache as StatusCache & { stats: CacheStats };
    expect(cache.stats).toBeDefined();
    const statusUrl = `${server.url}/api/job/${jobId}`;
    const key = `${sandbox.env.REDIS_KEY_PREFIX}ingest_job:${jobId}`;
    const report: string[] = [];
    const check = (phase: string, run: Awaited<ReturnType<typeof pollLatencies>>) => {
      report.push(`${phase}: n=${run.n} p50=${run.p50.toFixed(1)} ms p99=${run.p99.toFixed(1)} ms max=${run.max.toFixed(1)} ms`);
      expect(
        run.statuses.filter((s) => s !== 200),
        `${phase}: non-200 answers`,
      ).toEqual([]);
      for (const body of run.bodies) expect(body).toEqual(done);
    };

    // (a) Redis up: answered from the cache.
    const hitsBefore = cache.stats.hits;
    const up = await pollLatencies(statusUrl, 300, 1000);
    check('Redis up', up);
    expect(cache.stats.hits - hitsBefore).toBeGreaterThan(up.n / 2);

    // (b) Redis hung: the process is stopped, its connections stay open and nothing answers.
    redis.pause();
    let errors = cache.stats.errors;
    const hung = await pollLatencies(statusUrl, 300, 3000);
    check('Redis hung (SIGSTOP)', hung);
    expect(hung.p99).toBeLessThan(100);
    expect(cache.stats.errors).toBeGreaterThan(errors); // Redis really was in the way, and bypassed

    // (c) Redis down: killed, connections refused.
    await redis.stop('SIGKILL');
    errors = cache.stats.errors;
    const down = await pollLatencies(statusUrl, 300, 3000);
    check('Redis down (SIGKILL)', down);
    expect(down.p99).toBeLessThan(100);
    expect(cache.stats.errors).toBeGreaterThan(errors);

    // (d) A new Redis on the same port (empty): Intake, not restarted, uses it again by itself.
    const port = redis.port;
    redis = await startRedisServer(port);
    const restartedAt = Date.now();
    const probe = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    cleanup.push(async () => probe.disconnect());
    const hitsAtRestart = cache.stats.hits;
    let keyBackMs: number | undefined;
    let hitsBackMs: number | undefined;
    const statuses: number[] = [];
    while (keyBackMs === undefined || hitsBackMs === undefined) {
      if (Date.now() - restartedAt > 10_000)
        throw new Error(`the cache was not used again within 10 s (key back: ${keyBackMs}, hits back: ${hitsBackMs})`);
      const { status, body } = await getJson<JobPayload>(statusUrl);
      statuses.push(status);
      expect(body).toEqual(done);
      if (keyBackMs === undefined && (await probe.get(key)) !== null) keyBackMs = Date.now() - restartedAt;
      if (hitsBackMs === undefined && cache.stats.hits > hitsAtRestart) hitsBackMs = Date.now() - restartedAt;
      await sleep(20);
    }
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(JSON.parse((await probe.get(key))!)).toEqual(done);
    report.push(`Redis restarted: key ${key} back after ${keyBackMs} ms, cache hits again after ${hitsBackMs} ms`);
    console.log(report.join('\n'));
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
  }, 120_000);

  it('FLUSHALL while jobs are queued and running: every job still completes with the exact count', async () => {
    const sandbox = await sandboxed();
    const redis = await startRedisServer();
    cleanup.push(() => redis.stop('SIGKILL'));
    const env = { ...sandbox.env, REDIS_URL: redis.url, BATCH_SIZE: '1000', WORKER_CONCURRENCY: '2' };
    const server = await api(env);
    const workers = [await worker(env, 'a'), await worker(env, 'b')];
    const sizes = [40_000, 40_000, 40_000, 40_000, ...Array.from({ length: 16 }, (_, i) => 2_000 + i * 500)];
    const csvs = new Map<number, string>();
    const jobs: { jobId: string; rows: number }[] = [];
    for (const rows of sizes) {
      if (!csvs.has(rows)) csvs.set(rows, makeCsv(rows));
      const res = await upload(server.url, `f${rows}.csv`, csvs.get(rows)!);
      expect(res.status).toBe(202);
      jobs.push({ jobId: res.body.job_id, rows });
    }

    // Flush once some jobs are part done and others not started yet.
    const counts = async () => {
      const { rows } = await sandbox.admin!.query<{ status: string; n: number; partial: number }>(
        `SELECT status, count(*)::int AS n, count(*) FILTER (WHERE records_processed > 0)::int AS partial
         FROM ingest_jobs GROUP BY status`,
      );
      return Object.fromEntries(rows.map((r) => [r.status, r]));
    };
    const deadline = Date.now() + 30_000;
    for (;;) {
      const c = await counts();
      if ((c.running?.partial ?? 0) >= 1 && (c.queued?.n ?? 0) >= 5) break;
      if (Date.now() > deadline) throw new Error(`never saw running and queued jobs together: ${JSON.stringify(c)}`);
      await sleep(10);
    }
    const flusher = new Redis(redis.url);
    cleanup.push(async () => flusher.disconnect());
    const before = await counts();
    expect(await flusher.flushall()).toBe('OK');
    const flushedAt = Date.now();
    console.log(`FLUSHALL with ${JSON.stringify(before)}`);

    for (const { jobId, rows } of jobs) {
      const job = await waitForJob(server.url, jobId, Math.max(5_000, 90_000 - (Date.now() - flushedAt)));
      expect(job, `job ${jobId}`).toMatchObject({ status: 'completed', records_processed: rows, error: null });
      expect(await recordStats(sandbox, jobId), `records of job ${jobId}`).toEqual({ n: rows, distinct_n: rows, min: 0, max: rows - 1 });
    }
    const { rows: attempts } = await sandbox.admin!.query<{ max: number }>('SELECT max(attempts)::int AS max FROM ingest_jobs');
    console.log(
      `all ${jobs.length} jobs completed ${Date.now() - flushedAt} ms after the FLUSHALL (at most ${attempts[0]!.max} claims of one job)`,
    );
    const reconciled = [server, ...workers].some((p) => p.output().includes('reconciler re-enqueued jobs with no live queue entry'));
    expect(reconciled).toBe(true);
  }, 150_000);

  it('a FLUSHALL is not a crash: a job running through it completes even with MAX_JOB_ATTEMPTS=1', async () => {
    // No worker stops here, so no attempt may be counted against the job: the worker in hand
    // keeps ingesting, and the reconciler re-enqueues the row whose BullMQ job was flushed.
    const ROWS = 200_000;
    const sandbox = await sandboxed();
    const redis = await startRedisServer();
    cleanup.push(() => redis.stop('SIGKILL'));
    const env = { ...sandbox.env, REDIS_URL: redis.url, BATCH_SIZE: '2000', MAX_JOB_ATTEMPTS: '1' };
    const server = await api(env);
    await worker(env, 'a');
    await worker(env, 'b');
    const res = await upload(server.url, 'big.csv', makeCsv(ROWS));
    expect(res.status).toBe(202);
    const jobId: string = res.body.job_id;
    const before = await waitForRow(
      sandbox,
      jobId,
      (row) => row.records_processed >= ROWS * 0.1 || !['queued', 'running'].includes(row.status),
      '10% committed',
    );
    expect(before.status).toBe('running');
    const flusher = new Redis(redis.url);
    cleanup.push(async () => flusher.disconnect());
    expect(await flusher.flushall()).toBe('OK');
    console.log(`FLUSHALL at ${before.records_processed}/${ROWS} records`);

    const job = await waitForJob(server.url, jobId, 60_000);
    const row = await jobRow(sandbox, jobId);
    console.log(
      `after the FLUSHALL: ${row.status}, ${row.records_processed} records, ${row.attempts} claims, error ${JSON.stringify(row.error)}`,
    );
    expect(job).toMatchObject({ status: 'completed', records_processed: ROWS, error: null });
    expect(await recordStats(sandbox, jobId)).toEqual({ n: ROWS, distinct_n: ROWS, min: 0, max: ROWS - 1 });
  }, 90_000);

  it('enqueue fails after the row commits (the API has no Redis): 202 at once, the reconciler of a worker dispatches the job', async () => {
    const sandbox = await sandboxed();
    const deadRedis = `redis://127.0.0.1:${await freePort()}/0`; // nothing listens there
    const GRACE_MS = 5000;
    const server = await api({ ...sandbox.env, REDIS_URL: deadRedis, SHUTDOWN_GRACE_MS: String(GRACE_MS), PGAPPNAME: 'intake-api' });

    const t0 = Date.now();
    const res = await upload(server.url, 'lost.csv', makeCsv(1000));
    const answerMs = Date.now() - t0;
    expect(res.status).toBe(202);
    expect(res.body.status).toBe('queued');
    const jobId: string = res.body.job_id;
    expect(answerMs).toBeLessThan(3000);
    await waitForOutput(server, 'enqueue failed; the reconciler will dispatch the job', 2000); // the log can trail the answer
    expect(logLines(server, jobId).some((line) => line.msg === 'enqueue failed; the reconciler will dispatch the job')).toBe(true);
    expect((await getJson<JobPayload>(`${server.url}/api/job/${jobId}`)).body.status).toBe('queued');

    // The worker (with a working Redis) starts once the API's own reconciler has had passes
    // that saw the row (RECONCILE_INTERVAL_MS=1000): a process whose Redis is unreachable must
    // not keep the other processes from reconciling.
    await sleep(3000);
    const w = await worker(sandbox.env, 'a');
    const workerAt = Date.now();
    let started: Row;
    try {
      started = await waitForRow(sandbox, jobId, (row) => row.status !== 'queued', 'dispatch', 20_000);
    } catch (err) {
      const { rows } = await sandbox.admin!.query(
        `SELECT application_name, state, round(extract(epoch FROM now() - xact_start))::int AS xact_seconds, left(query, 60) AS query
         FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`,
      );
      throw new Error(`${(err as Error).message}\nsessions: ${JSON.stringify(rows)}`, { cause: err });
    }
    const dispatchMs = Date.now() - workerAt;
    const job = await waitForJob(server.url, jobId, 30_000);
    expect(job).toMatchObject({ status: 'completed', records_processed: 1000, error: null });
    expect(started.attempts).toBe(1);
    expect(await recordStats(sandbox, jobId)).toEqual({ n: 1000, distinct_n: 1000, min: 0, max: 999 });
    expect(w.output()).toContain('reconciler re-enqueued jobs with no live queue entry');
    console.log(
      `upload answered in ${answerMs} ms with no Redis; the worker's reconciler dispatched the job ${dispatchMs} ms after the worker started`,
    );

    // And the API, still without Redis, stops cleanly within its grace period.
    const stopAt = Date.now();
    expect(await server.stop('SIGTERM')).toBe(0);
    expect(Date.now() - stopAt).toBeLessThan(GRACE_MS);
  }, 90_000);

  it('a job that keeps killing its workers ends failed after MAX_JOB_ATTEMPTS, never stuck running', async () => {
    const ROWS = 200_000;
    const sandbox = await sandboxed();
    const env = { ...sandbox.env, BATCH_SIZE: '500', MAX_JOB_ATTEMPTS: '2' };
    const server = await api(env);
    const t0 = Date.now();
    let w = await worker(env, 'a1');
    const res = await upload(server.url, 'deadly.csv', makeCsv(ROWS));
    expect(res.status).toBe(202);
    const jobId: string = res.body.job_id;

    // Each attempt: wait until this worker has claimed the job and committed a batch, then kill it.
    let committed = 0;
    for (let attempt = 1; attempt <= 2; attempt++) {
      const row = await waitForRow(
        sandbox,
        jobId,
        (r) => r.attempts === attempt && r.records_processed > committed,
        `attempt ${attempt} under way`,
        30_000,
      );
      expect(row.status).toBe('running');
      expect(await w.stop('SIGKILL')).toBeNull();
      await sleep(200); // a COMMIT sent just before the kill lands in PostgreSQL too
      committed = (await jobRow(sandbox, jobId)).records_processed;
      expect(committed).toBeLessThan(ROWS);
      w = await worker(env, `a${attempt + 1}`);
    }
    const failed = await waitForRow(sandbox, jobId, (r) => r.status !== 'running', 'the end', 30_000);
    expect(failed).toMatchObject({ status: 'failed', attempts: 3, records_processed: committed });
    expect(failed.error).toMatch(/gave up after 2 attempts/);
    expect(failed.error).toContain(`its dataset is unchanged (${committed} records had been staged)`);
    expect(await recordStats(sandbox, jobId)).toEqual({ n: 0, distinct_n: 0, min: null, max: null });
    // The API shows the same, straight away (no stale cached `running`).
    const shown = (await getJson<JobPayload>(`${server.url}/api/job/${jobId}`)).body;
    expect(shown).toMatchObject({ status: 'failed', error: failed.error, records_processed: committed });
    // The worker logs the end of its run just after the status URL can show it.
    await expect
      .poll(() => logLines(w, jobId).find((line) => line.msg === 'job run ended'), { timeout: 10_000 })
      .toMatchObject({ outcome: 'failed' });
    console.log(`failed after 2 killed attempts, ${Date.now() - t0} ms after the upload: ${failed.error}`);
  }, 120_000);

  it('SIGTERM to a worker mid-job: it exits 0 within the grace period and the job completes elsewhere, attempt not counted', async () => {
    const ROWS = 200_000;
    const GRACE_MS = 10_000;
    const sandbox = await sandboxed();
    // The checked path: this test interrupts a load between its batches.
    const env = { ...sandbox.env, BATCH_SIZE: '2000', SHUTDOWN_GRACE_MS: String(GRACE_MS), FAST_PATH_MAX_BYTES: '0' };
    const server = await api(env);
    const workers: Record<string, WorkerProcess> = { a: await worker(env, 'a'), b: await worker(env, 'b') };
    const res = await upload(server.url, 'big.csv', makeCsv(ROWS));
    expect(res.status).toBe(202);
    const jobId: string = res.body.job_id;

    const before = await waitForRow(
      sandbox,
      jobId,
      (row) => row.records_processed >= ROWS * 0.25 || !['queued', 'running'].includes(row.status),
      '25% committed',
    );
    expect(before.status).toBe('running');
    expect(before.attempts).toBe(1);
    const name = await holderOf(sandbox, workers);
    const holder = workers[name]!;
    const survivor = workers[name === 'a' ? 'b' : 'a']!;
    const t0 = Date.now();
    const code = await holder.stop('SIGTERM');
    const exitMs = Date.now() - t0;
    expect(code).toBe(0);
    expect(exitMs).toBeLessThan(GRACE_MS);
    expect(holder.output()).toContain('"msg":"stopped"');
    expect(logLines(holder, jobId).find((line) => line.msg === 'job run ended')).toMatchObject({ outcome: 'stopped' });
    const atStop = await jobRow(sandbox, jobId);
    expect(atStop.records_processed).toBeLessThan(ROWS);

    await waitForOutput(survivor, 'resuming job from its checkpoint', 30_000);
    const handOverMs = Date.now() - t0;
    const job = await waitForJob(server.url, jobId, 120_000);
    expect(job).toMatchObject({ status: 'completed', records_processed: ROWS, error: null });
    expect(await recordStats(sandbox, jobId)).toEqual({ n: ROWS, distinct_n: ROWS, min: 0, max: ROWS - 1 });
    // The clean stop gave its attempt back: one claim by the survivor, as before the stop.
    const after = await jobRow(sandbox, jobId);
    console.log(
      `SIGTERM at ${atStop.records_processed}/${ROWS}: worker ${name} exited 0 in ${exitMs} ms; ` +
        `the other worker resumed the job ${handOverMs} ms after the SIGTERM; attempts ${before.attempts} before, ${atStop.attempts} at the stop, ${after.attempts} after`,
    );
    expect(after.attempts).toBe(before.attempts);
  }, 120_000);
});
