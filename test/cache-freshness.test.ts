/**
 * The status URL never answers an older state than the database has already shown. End to end:
 * a reader of the database and readers of GET /api/job/{id} race each other through a job's
 * whole life, while the processes that change the job (a worker, an API that cancels, retries
 * and deletes) reach Redis late, as a worker whose event loop is busy parsing does. Then the
 * parts: the status cache's marks (changes in flight, fills, failures, dead writers, tombstones,
 * timeouts) and the tracker's use of them (marked before each COMMIT, never for a no-op).
 */
import { fileStore } from '../src/sources/uploads.js';
import { randomUUID } from 'node:crypto';
import { createServer, connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { fastRedis } from '../src/live/redis.js';
import { createStatusCache, type StatusCache, type StatusCacheOptions } from '../src/live/status-cache.js';
import { removeJob, sweepOnce } from '../src/jobs/removal.js';
import { createStage } from '../src/storage/datasets.js';
import {
  CheckpointConflictError,
  cancelJob,
  createTracker,
  incrementProgress,
  markCompleted,
  markRunning,
  releaseAttempt,
  retryJob,
  type Batch,
} from '../src/jobs/tracking.js';
import type { JobPayload } from '../src/core/job.js';
import { payloadJson, type JobRow } from '../src/storage/jobs.js';
import { createSandbox, deleteRedisKeys, makeCsv, scaleOutAvailable, startServer, upload, type Sandbox } from './helpers.js';
import { startIntakeProcess, startWorkerProcess } from './process.js';
import { startRedisServer } from './redis-server.js';

// A committed change's payload written through, as the tracker writes one.
async function store(cache: StatusCache, jobId: string, version: number, payload: string): Promise<void> {
  await (await cache.changing(jobId)).stored(version, payload);
}

const silentLog = pino({ level: 'silent' });

/**
 * A TCP proxy in front of Redis that holds everything its clients send for `delayMs` (replies
 * come back at once): every cache write of a process behind it lands that much after it was
 * sent, so a change's write-through trails its commit by at least that long.
 */
async function slowRedisProxy(target: URL, delayMs: number) {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 6379), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    // Timers of one delay fire in the order they were set: the commands keep their order.
    client.on('data', (chunk) => setTimeout(() => upstream.write(chunk), delayMs));
    upstream.pipe(client);
    client.on('close', () => setTimeout(() => upstream.destroy(), delayMs));
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxied = new URL(target.toString());
  proxied.hostname = '127.0.0.1';
  proxied.port = String((server.address() as { port: number }).port);
  return {
    url: proxied.toString(),
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

describe.skipIf(!scaleOutAvailable())('status cache freshness (scale-out)', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    // Every step runs, even when one fails: no process, server or database is left behind.
    const errors: unknown[] = [];
    for (const fn of cleanup.splice(0).reverse()) await fn().catch((err: unknown) => errors.push(err));
    if (errors.length > 0) throw errors[0];
  });

  it('a status read never shows an older state than the database showed before it was sent: queued, running, canceled, retried, completed, deleted', async () => {
    const sandbox: Sandbox = await createSandbox({ name: 'scale-out' });
    cleanup.push(() => sandbox.dispose());
    const proxy = await slowRedisProxy(new URL(sandbox.env.REDIS_URL!), 10);
    cleanup.push(() => proxy.close());
    // The writers (a worker, and an API whose cancel, retry and delete change the job) reach Redis late...
    // The checked path: a status change for each of its batches.
    const slow = { ...sandbox.env, REDIS_URL: proxy.url, WORKER_CONCURRENCY: '0', FAST_PATH_MAX_BYTES: '0' };
    const writer = await startIntakeProcess(slow);
    cleanup.push(() => writer.stop('SIGKILL'));
    const worker = await startWorkerProcess({ ...slow, WORKER_CONCURRENCY: '1', BATCH_SIZE: '250' });
    cleanup.push(() => worker.stop('SIGKILL'));
    // ... the API under test reads it at once.
    const reader = await startServer(sandbox, { WORKER_CONCURRENCY: '0' });
    cleanup.push(() => reader.close());
    const cache = reader.intake.cache!;
    const probe = new Redis(sandbox.env.REDIS_URL!);
    cleanup.push(async () => probe.disconnect());

    const ROWS = 10_000;
    const res = await upload(writer.url, 'race.csv', makeCsv(ROWS));
    expect(res.status).toBe(202);
    const jobId: string = res.body.job_id;
    const statusUrl = `${reader.url}/api/job/${jobId}`;

    // What the database has shown so far: updated only once a read of it has returned.
    const db = { version: 0, status: 'queued', records: 0, gone: false, reads: 0, statuses: new Set<string>() };
    const api = { reads: 0, versions: new Set<number>() };
    const violations: string[] = [];
    let stop = false;

    async function readDatabase(): Promise<void> {
      while (!stop) {
        const { rows } = await sandbox.admin!.query<{ status: string; version: number; records_processed: number }>(
          'SELECT status, version, records_processed FROM ingest_jobs WHERE job_id = $1',
          [jobId],
        );
        const row = rows[0];
        if (row) {
          db.version = Math.max(db.version, row.version);
          db.status = row.status;
          db.records = row.records_processed;
          db.statuses.add(row.status);
        } else db.gone = true;
        db.reads++;
      }
    }

    async function readApi(): Promise<void> {
      while (!stop) {
        const floor = db.version;
        const gone = db.gone;
        const res = await fetch(statusUrl);
        const body = (await res.json()) as JobPayload;
        api.reads++;
        if (res.status === 200) api.versions.add(body.version);
        if (gone && res.status !== 404)
          violations.push(`the database had no row, the API answered ${res.status} v${body.version} ${body.status}`);
        else if (res.status === 200 && body.version < floor) {
          violations.push(
            `the database showed v${floor}, the API then answered v${body.version} ${body.status} (${body.records_processed} records)`,
          );
        } else if (res.status !== 200 && res.status !== 404) violations.push(`the API answered ${res.status}`);
      }
    }

    async function until(done: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!done()) {
        if (Date.now() > deadline) throw new Error(`${what} not seen in ${timeoutMs} ms; the database last showed ${JSON.stringify(db)}`);
        await sleep(5);
      }
    }

    const post = async (path: string, method = 'POST') => (await fetch(`${writer.url}/api/job/${jobId}${path}`, { method })).status;
    const loops = [readDatabase(), readApi(), readApi(), readApi()];
    try {
      await until(() => db.status === 'running' && db.records >= ROWS / 4, 'a quarter of the job committed');
      expect(await post('/cancel')).toBe(200);
      await until(() => db.status === 'canceled', 'canceled');
      expect(await post('/retry')).toBe(202);
      await until(() => db.status === 'completed', 'completed after the retry');
      // Once the last write has crossed the slow proxy, every change has settled: the key holds
      // the final payload (no mark is left behind), and reads are answered from it again.
      const final = await (await fetch(statusUrl)).text();
      const key = `${sandbox.env.REDIS_KEY_PREFIX}ingest_job:${jobId}`;
      let value = await probe.get(key);
      for (let i = 0; i < 100 && value !== final; i++) value = await sleep(20).then(() => probe.get(key));
      expect(value).toBe(final);
      const hits = cache.stats.hits;
      const deadline = Date.now() + 5000; // past a breaker period, if this busy process timed out a read
      while (cache.stats.hits === hits && Date.now() < deadline) expect((await fetch(statusUrl)).status).toBe(200);
      expect(cache.stats.hits, 'a cache hit once the job is finished').toBeGreaterThan(hits);
      expect(await post('', 'DELETE')).toBe(204);
      await until(() => db.gone, 'the row deleted');
      await sleep(200);
    } finally {
      stop = true;
      await Promise.all(loops);
    }
    const timeouts = [worker, writer].map((p) => p.output().split('status cache unavailable').length - 1);
    console.log(
      `${db.reads} database reads, ${api.reads} API reads of ${api.versions.size} versions; ${violations.length} stale answers; ` +
        `the writers reported the cache unavailable ${timeouts.join(' and ')} times`,
    );
    expect(violations.slice(0, 10)).toEqual([]);
    expect([...db.statuses].sort()).toEqual(['canceled', 'completed', 'queued', 'running']);
    expect(api.versions.size).toBeGreaterThanOrEqual(20);
  }, 120_000);

  it('the tracker marks the key just before each change commits and writes it after; a no-op or a rolled-back batch leaves it alone', async () => {
    const sandbox: Sandbox = await createSandbox({ name: 'scale-out' });
    cleanup.push(() => sandbox.dispose());
    const server = await startServer(sandbox, { WORKER_CONCURRENCY: '0' }); // no worker: the test makes every change
    cleanup.push(() => server.close());
    const probe = new Redis(sandbox.env.REDIS_URL!);
    cleanup.push(async () => probe.disconnect());
    const { db, events } = server.intake;
    const res = await upload(server.url, 'by-hand.csv', makeCsv(10));
    const jobId: string = res.body.job_id;
    await createStage(db, jobId, true);
    const keyOf = (id: string) => `${sandbox.env.REDIS_KEY_PREFIX}ingest_job:${id}`;
    const key = keyOf(jobId);

    // At each mark: what the key holds, and the version the database still shows.
    const marks: string[] = [];
    const real = server.intake.cache!;
    const cache: StatusCache = {
      ...real,
      async changing(id) {
        const pending = await real.changing(id);
        const { rows } = await sandbox.admin!.query<{ version: number }>('SELECT version FROM ingest_jobs WHERE job_id = $1', [id]);
        marks.push(`${(await probe.get(keyOf(id)))?.split(':')[0]} with v${rows[0]?.version ?? 'none'} committed`);
        return pending;
      },
    };
    const tracker = createTracker(db, cache, events);
    const cached = async () => probe.get(key);
    const batch = (from: number): Batch => ({
      from,
      rows: Buffer.from(`${from}\t1\n`),
      rowCount: 1,
      width: 1,
      columns: { from: from === 0 ? 0 : 1, to: 1 },
      errors: [],
      bytesProcessed: 10,
      loadState: '{"columns":[]}',
    });

    const expectChange = async (row: JobRow | null, version: number) => {
      expect(row?.version).toBe(version);
      expect(marks.splice(0)).toEqual([`pending with v${version - 1} committed`]);
      expect(await cached()).toBe(payloadJson(row!));
    };
    await expectChange(await markRunning(tracker, jobId), 2);
    await expectChange(await incrementProgress(tracker, jobId, batch(0)), 3);
    const before = await cached();
    await expect(incrementProgress(tracker, jobId, batch(0))).rejects.toThrow(CheckpointConflictError); // rolled back
    expect(await markRunning(tracker, jobId, 60_000)).toBeNull(); // its heartbeat is fresh: no claim
    expect(marks).toEqual([]);
    expect(await cached()).toBe(before);
    await releaseAttempt(tracker, jobId); // attempts is part of the payload: a change like the others
    expect(marks.splice(0)).toEqual(['pending with v3 committed']);
    expect(JSON.parse((await cached())!)).toMatchObject({ version: 4, attempts: 0 });
    await expectChange(await markRunning(tracker, jobId), 5);
    await expectChange(await cancelJob(tracker, jobId), 6);
    expect(await markCompleted(tracker, jobId)).toBe(false);
    expect(await cancelJob(tracker, jobId)).toBeNull();
    expect(marks).toEqual([]);
    await expectChange(await retryJob(tracker, jobId, null), 7);
    const deps = { db, uploads: fileStore(server.config.uploadDir), cache, log: silentLog };
    expect(await removeJob(deps, jobId)).toBe(true);
    expect(marks.splice(0)).toEqual(['pending with v7 committed']);
    expect(await cached()).toBe(`{"deleted":true,"version":${Number.MAX_SAFE_INTEGER}}`);
    expect(await removeJob(deps, jobId)).toBe(false);
    expect(marks).toEqual([]);

    // Retention deletes the same way: each key marked before the sweep's delete commits.
    const finished = (await upload(server.url, 'old.csv', makeCsv(10))).body.job_id as string;
    await db.query(
      `UPDATE ingest_jobs SET status = 'completed', version = version + 1, completed_at = NOW() - INTERVAL '2 days' WHERE job_id = $1`,
      [finished],
    );
    const retention = { ...deps, retentionDays: 1, intervalMs: 60_000, partialMaxAgeMs: 60_000 };
    expect(await sweepOnce(retention)).toBe(1);
    expect(marks).toEqual(['pending with v2 committed']);
    expect(await probe.get(keyOf(finished))).toBe(`{"deleted":true,"version":${Number.MAX_SAFE_INTEGER}}`);
  });
});

describe.skipIf(!scaleOutAvailable())('status cache marks (Redis)', () => {
  const prefix = `intake_marks_${process.pid}_${Math.random().toString(36).slice(2, 10)}:`;
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    const errors: unknown[] = [];
    for (const fn of cleanup.splice(0).reverse()) await fn().catch((err: unknown) => errors.push(err));
    if (errors.length > 0) throw errors[0];
  });

  const payload = (jobId: string, version: number) => JSON.stringify({ job_id: jobId, status: 'running', version });

  function open(options: Partial<StatusCacheOptions> = {}, redis = new Redis(process.env.REDIS_URL!)) {
    const cache = createStatusCache(redis, { prefix, ttlSeconds: 60, log: silentLog, load: async () => null, ...options });
    cleanup.push(async () => {
      await cache.close();
      await deleteRedisKeys(process.env.REDIS_URL!, prefix);
    });
    return cache;
  }

  it('a key marked by a change in flight reads as a miss, and a reader filling it with what it read before the commit cannot make it readable', async () => {
    const cache = open();
    const jobId = randomUUID();
    await store(cache, jobId, 5, payload(jobId, 5));
    expect(await cache.get(jobId)).toBe(payload(jobId, 5));
    const change = await cache.changing(jobId);
    expect(await cache.get(jobId)).toBeNull();
    await cache.fill(jobId, 5, payload(jobId, 5));
    expect(await cache.get(jobId)).toBeNull();
    await change.stored(6, payload(jobId, 6));
    expect(await cache.get(jobId)).toBe(payload(jobId, 6));
    await cache.fill(jobId, 5, payload(jobId, 5)); // too late, and older
    expect(await cache.get(jobId)).toBe(payload(jobId, 6));
    expect(cache.stats.errors).toBe(0);
  });

  it('changes in flight at once: the key answers again only when the last is written, with the newest payload whatever the order', async () => {
    const cache = open();
    for (const order of [
      [6, 7],
      [7, 6],
    ]) {
      const jobId = randomUUID(); // no key at all before the first mark
      const changes = new Map([
        [6, await cache.changing(jobId)],
        [7, await cache.changing(jobId)],
      ]);
      await changes.get(order[0]!)!.stored(order[0]!, payload(jobId, order[0]!));
      expect(await cache.get(jobId)).toBeNull();
      await changes.get(order[1]!)!.stored(order[1]!, payload(jobId, order[1]!));
      expect(await cache.get(jobId)).toBe(payload(jobId, 7));
    }
    // A reader's fill while a change is in flight is kept as the newest known, not shown.
    const jobId = randomUUID();
    const change = await cache.changing(jobId);
    await cache.fill(jobId, 8, payload(jobId, 8));
    expect(await cache.get(jobId)).toBeNull();
    await change.stored(7, payload(jobId, 7));
    expect(await cache.get(jobId)).toBe(payload(jobId, 8));
  });

  it('a change whose COMMIT failed is settled with the database row; a job gone from the database gets the tombstone; a database that cannot say leaves a miss', async () => {
    const truth = new Map<string, { version: number; payload: string }>();
    let databaseUp = true;
    const cache = open({
      load: async (jobId) => {
        if (!databaseUp) throw new Error('database unavailable');
        return truth.get(jobId) ?? null;
      },
    });
    const [committed, deleted, unknown] = [randomUUID(), randomUUID(), randomUUID()];
    for (const jobId of [committed, deleted, unknown]) await store(cache, jobId, 5, payload(jobId, 5));
    truth.set(committed, { version: 6, payload: payload(committed, 6) }); // the COMMIT happened after all
    const changes = [await cache.changing(committed), await cache.changing(deleted)];
    for (const change of changes) await change.failed();
    expect(await cache.get(committed)).toBe(payload(committed, 6));
    expect(await cache.get(deleted)).toBeNull();
    await cache.fill(deleted, 5, payload(deleted, 5));
    expect(await cache.get(deleted)).toBeNull(); // the tombstone stays

    databaseUp = false;
    await (await cache.changing(unknown)).failed();
    await cache.fill(unknown, 5, payload(unknown, 5));
    expect(await cache.get(unknown)).toBeNull();
  });

  it('a writer that dies between its mark and its write leaves the key a miss until the TTL, then readers fill it again', async () => {
    const cache = open({ ttlSeconds: 1 });
    const jobId = randomUUID();
    await store(cache, jobId, 5, payload(jobId, 5));
    await cache.changing(jobId); // and never settled
    await cache.fill(jobId, 6, payload(jobId, 6));
    expect(await cache.get(jobId)).toBeNull();
    await sleep(1200);
    await cache.fill(jobId, 6, payload(jobId, 6));
    expect(await cache.get(jobId)).toBe(payload(jobId, 6));
  });

  it('a deleted job: its tombstone takes no mark, and no change written late brings the job back', async () => {
    const cache = open();
    const redis = new Redis(process.env.REDIS_URL!);
    cleanup.push(async () => redis.disconnect());
    const jobId = randomUUID();
    const key = `${prefix}ingest_job:${jobId}`;
    await store(cache, jobId, 5, payload(jobId, 5));
    const before = await cache.changing(jobId);
    await cache.forget(jobId);
    const tombstone = await redis.get(key);
    expect(tombstone).toMatch(/^\{"deleted":true/);
    const after = await cache.changing(jobId);
    expect(await redis.get(key)).toBe(tombstone);
    await before.stored(6, payload(jobId, 6));
    await after.stored(7, payload(jobId, 7));
    await store(cache, jobId, 8, payload(jobId, 8));
    await cache.fill(jobId, 8, payload(jobId, 8));
    expect(await redis.get(key)).toBe(tombstone);
    expect(await cache.get(jobId)).toBeNull();
  });

  it('on a hung Redis: a read opens the breaker, yet a change still marks; its mark lands late and its write removes it', async () => {
    const server = await startRedisServer();
    cleanup.push(() => server.stop('SIGKILL'));
    const client = fastRedis(server.url);
    client.on('error', () => {});
    const direct = new Redis(server.url);
    cleanup.push(async () => direct.disconnect());
    await new Promise<void>((resolve) => (client.status === 'ready' ? resolve() : client.once('ready', () => resolve())));
    const cache = open({}, client);
    const jobId = randomUUID();
    const key = `${prefix}ingest_job:${jobId}`;
    await store(cache, jobId, 5, payload(jobId, 5));

    server.pause();
    expect(await cache.get(jobId)).toBeNull(); // timed out: the breaker is open for reads
    const change = await cache.changing(jobId); // timed out too, but sent
    expect(cache.stats.errors).toBe(2);
    server.resume();
    let value = await direct.get(key);
    for (let i = 0; i < 50 && !value?.startsWith('pending:'); i++) value = await sleep(20).then(() => direct.get(key));
    expect(value).toMatch(/^pending:/); // the mark landed once Redis ran again
    await change.stored(6, payload(jobId, 6)); // the breaker is still open: written all the same
    expect(await direct.get(key)).toBe(payload(jobId, 6));
  });

  it('a change waits for its mark on the writer connection: a Redis that answers late is not taken for one that lost it', async () => {
    const server = await startRedisServer();
    cleanup.push(() => server.stop('SIGKILL'));
    const [reads, writer] = [fastRedis(server.url), fastRedis(server.url, 2000)];
    for (const c of [reads, writer]) c.on('error', () => {});
    cleanup.push(async () => writer.disconnect());
    const direct = new Redis(server.url);
    cleanup.push(async () => direct.disconnect());
    await Promise.all(
      [reads, writer].map((c) => new Promise<void>((resolve) => (c.status === 'ready' ? resolve() : c.once('ready', () => resolve())))),
    );
    const cache = open({ writer }, reads);
    const jobId = randomUUID();
    const key = `${prefix}ingest_job:${jobId}`;
    await store(cache, jobId, 5, payload(jobId, 5));

    server.pause();
    let marked = false;
    const changing = cache.changing(jobId).then((change) => ((marked = true), change));
    await sleep(300); // six times the read timeout
    expect(marked).toBe(false);
    server.resume();
    const change = await changing;
    expect(await direct.get(key)).toMatch(/^pending:/); // landed before the change could commit
    expect(cache.stats.errors).toBe(0);
    await change.stored(6, payload(jobId, 6));
    expect(await cache.get(jobId)).toBe(payload(jobId, 6));
  });
});
