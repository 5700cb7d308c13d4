/**
 * Live status: freshness of GET /api/job/{id} (no stale cache), per-reader monotonic answers
 * under concurrent reads, the Redis status cache's version guard, and the Server-Sent Events
 * stream at GET /api/job/{id}/events.
 */
import { randomUUID } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fastRedis } from '../src/live/redis.js';
import { createStatusCache, type StatusCache } from '../src/live/status-cache.js';
import { readEvents, type SseEvent } from '../src/client/sse.js';
import { TERMINAL_STATUSES, type JobPayload, type JobStatus } from '../src/core/job.js';
import { findJob, payloadJson, type JobRow } from '../src/storage/jobs.js';
import { startIntakeProcess, startWorkerProcess } from './process.js';
import { startRedisServer } from './redis-server.js';
import {
  backends,
  createSandbox,
  deleteRedisKeys,
  getJson,
  makeCsv,
  scaleOutAvailable,
  startServer,
  upload,
  waitForJob,
  type Sandbox,
  type TestServer,
} from './helpers.js';

// A committed change's payload written through, as the tracker writes one.
async function store(cache: StatusCache, jobId: string, version: number, payload: string): Promise<void> {
  await (await cache.changing(jobId)).stored(version, payload);
}

const RANK: Record<JobStatus, number> = { queued: 0, running: 1, completed: 2, failed: 2, canceled: 2 };
const BATCH_SIZE = 200;
const silentLog = pino({ level: 'silent' });
const noLoad = async () => null;

// ---------------------------------------------------------------------------------------------
// Readers

interface Read {
  /** performance.now() when the request was sent and when its body had been read. */
  start: number;
  end: number;
  status: number;
  text: string;
  contentType: string | null;
  job: JobPayload | undefined;
}

async function readJob(url: string): Promise<Read> {
  const start = performance.now();
  const res = await fetch(url);
  const text = await res.text();
  const end = performance.now();
  return {
    start,
    end,
    status: res.status,
    text,
    contentType: res.headers.get('content-type'),
    job: res.status === 200 ? (JSON.parse(text) as JobPayload) : undefined,
  };
}

/** One reader: GETs the job back to back until it has seen a terminal state, then `extra` reads more. */
async function pollJob(url: string, { extra = 5, pauseMs = 0, timeoutMs = 90_000 } = {}): Promise<Read[]> {
  const reads: Read[] = [];
  const deadline = Date.now() + timeoutMs;
  let afterTerminal = -1;
  while (afterTerminal < extra) {
    const read = await readJob(url);
    if (read.status !== 200) throw new Error(`GET ${url} answered ${read.status}: ${read.text}`);
    reads.push(read);
    if (afterTerminal >= 0 || TERMINAL_STATUSES.has(read.job!.status)) afterTerminal++;
    if (Date.now() > deadline) throw new Error(`${url} still ${read.job!.status} after ${timeoutMs} ms`);
    if (pauseMs > 0) await sleep(pauseMs);
  }
  return reads;
}

/** Describes the first read in a reader's sequence that is older than one it already returned. */
function firstRegression(reads: Read[]): string | undefined {
  for (let i = 1; i < reads.length; i++) {
    const a = reads[i - 1]!.job!;
    const b = reads[i]!.job!;
    if (b.version < a.version) return `read ${i}: version ${b.version} after ${a.version}`;
    if (RANK[b.status] < RANK[a.status]) return `read ${i}: ${b.status} after ${a.status}`;
    if (b.records_processed < a.records_processed)
      return `read ${i}: records_processed ${b.records_processed} after ${a.records_processed}`;
    if (b.version === a.version && reads[i]!.text !== reads[i - 1]!.text) return `read ${i}: two different answers at version ${b.version}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events

interface TimedEvent extends SseEvent {
  /** performance.now() when the event was read. */
  at: number;
}

interface EventStream {
  status: number;
  headers: Headers;
  /** The JSON body of a non-200 answer. */
  body?: any;
  events: TimedEvent[];
  /** Resolves when the server ends the stream (or rejects on a network error). */
  done: Promise<void>;
  endedAt(): number | undefined;
  cancel(): void;
}

async function openEvents(url: string): Promise<EventStream> {
  const abort = new AbortController();
  const res = await fetch(url, { signal: abort.signal, headers: { accept: 'text/event-stream' } });
  const events: TimedEvent[] = [];
  let endedAt: number | undefined;
  if (res.status !== 200 || !res.body) {
    const text = await res.text();
    return {
      status: res.status,
      headers: res.headers,
      body: text ? JSON.parse(text) : undefined,
      events,
      done: Promise.resolve(),
      endedAt: () => endedAt,
      cancel: () => {},
    };
  }
  const body = res.body;
  const done = (async () => {
    // A cut inside an event throws (StreamCutError): no stream may end that way.
    for await (const event of readEvents(body)) events.push({ ...event, at: performance.now() });
    endedAt = performance.now();
  })();
  done.catch(() => {}); // observed by whoever awaits it
  return { status: res.status, headers: res.headers, events, done, endedAt: () => endedAt, cancel: () => abort.abort() };
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Checks what every stream must satisfy; returns the events' payloads. */
function checkStream(stream: EventStream): JobPayload[] {
  const jobs: JobPayload[] = [];
  for (const [i, e] of stream.events.entries()) {
    expect(['status', 'progress'], `event ${i} type`).toContain(e.event);
    const job = JSON.parse(e.data) as JobPayload;
    expect(e.id, `event ${i} id is the payload's version`).toBe(String(job.version));
    jobs.push(job);
  }
  const ids = stream.events.map((e) => Number(e.id));
  for (let i = 1; i < ids.length; i++) expect(ids[i], `ids strictly increasing: ${ids.join(',')}`).toBeGreaterThan(ids[i - 1]!);
  for (let i = 1; i < jobs.length; i++) {
    expect(RANK[jobs[i]!.status]).toBeGreaterThanOrEqual(RANK[jobs[i - 1]!.status]);
    expect(jobs[i]!.records_processed).toBeGreaterThanOrEqual(jobs[i - 1]!.records_processed);
  }
  // A status event exactly when the status changes (the first event is always one); progress otherwise.
  stream.events.forEach((e, i) => {
    const changed = i === 0 || jobs[i]!.status !== jobs[i - 1]!.status;
    expect(e.event, `event ${i} (${jobs[i]!.status}, v${jobs[i]!.version})`).toBe(changed ? 'status' : 'progress');
  });
  // At most four progress events a second: never more than five in any one-second window.
  const times = stream.events.filter((e) => e.event === 'progress').map((e) => e.at);
  for (let i = 0; i < times.length; i++) {
    const inWindow = times.filter((t) => t >= times[i]! && t <= times[i]! + 1000).length;
    const around = times.filter((t) => t >= times[i]! - 1000 && t <= times[i]! + 2000).map((t) => Math.round(t - times[i]!));
    expect(
      inWindow,
      `progress events in the second from ${Math.round(times[i]!)} ms (received at ${around.join(', ')} ms)`,
    ).toBeLessThanOrEqual(5);
  }
  for (const e of stream.events.filter((e) => e.event === 'progress')) expect(JSON.parse(e.data).status).toBe('running');
  // The stream ends after the terminal event, and only there.
  const last = jobs.at(-1);
  expect(last && TERMINAL_STATUSES.has(last.status), 'the last event is terminal').toBe(true);
  jobs.slice(0, -1).forEach((job) => expect(TERMINAL_STATUSES.has(job.status)).toBe(false));
  expect(stream.endedAt()).toBeDefined();
  return jobs;
}

// ---------------------------------------------------------------------------------------------
// Contract tests, in every backend

describe.each(backends())('live status ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  let redis: Redis | undefined; // scale-out: to look at the cache keys directly
  const cacheKey = (jobId: string) => `${sandbox.env.REDIS_KEY_PREFIX}ingest_job:${jobId}`;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    // These tests race the status of a job through its many batches: the checked path's (the
    // fast path commits a load at once).
    server = await startServer(sandbox, { BATCH_SIZE: String(BATCH_SIZE), FAST_PATH_MAX_BYTES: '0' });
    if (backend.name === 'scale-out') redis = new Redis(process.env.REDIS_URL!);
  });

  afterAll(async () => {
    redis?.disconnect();
    await server?.close();
    await sandbox?.dispose();
  });

  it('never shows a non-terminal state again once a terminal one has been read, by any reader', async () => {
    const rows = 10_000;
    const res = await upload(server.url, 'fresh.csv', makeCsv(rows));
    expect(res.status).toBe(202);
    const url = `${server.url}/api/job/${res.body.job_id}`;
    const [waited, ...readers] = await Promise.all([
      waitForJob(server.url, res.body.job_id, 90_000).then((job) => ({ job, at: performance.now() })),
      ...Array.from({ length: 8 }, (_, i) => pollJob(url, { extra: 10, pauseMs: i % 2 })),
    ]);
    expect(waited.job).toMatchObject({ status: 'completed', records_processed: rows, error: null });

    const all = readers.flat();
    expect(
      all.some((r) => r.job!.status === 'running'),
      'the readers saw the job running',
    ).toBe(true);
    for (const reads of readers) {
      const first = reads.findIndex((r) => TERMINAL_STATUSES.has(r.job!.status));
      expect(reads.slice(first).map((r) => r.job!.status)).toEqual(reads.slice(first).map(() => 'completed'));
    }
    // Across readers: every read sent after any reader had received a terminal answer is terminal,
    // and is the final state, byte for byte.
    const firstTerminal = Math.min(...all.filter((r) => TERMINAL_STATUSES.has(r.job!.status)).map((r) => r.end));
    const later = all.filter((r) => r.start > firstTerminal);
    expect(later.length).toBeGreaterThan(0);
    const stale = later
      .filter((r) => !TERMINAL_STATUSES.has(r.job!.status))
      .map((r) => `${r.job!.status} v${r.job!.version} at +${Math.round(r.start - firstTerminal)} ms`);
    expect(stale).toEqual([]);
    const finalText = later.at(-1)!.text;
    expect(new Set(later.map((r) => r.text))).toEqual(new Set([finalText]));
    expect(JSON.parse(finalText)).toEqual(waited.job);

    // Reads made after waitForJob returned: all the same bytes.
    const after = await Promise.all(Array.from({ length: 10 }, () => readJob(url)));
    for (const read of after) expect(read.text).toBe(finalText);
  });

  // Scale-out only: defined (not skipped) just for that backend.
  if (backend.name === 'scale-out')
    it('caches exactly the bytes it answers with; a cached answer is the uncached one, byte for byte', async () => {
      const res = await upload(server.url, 'bytes.csv', makeCsv(500));
      const jobId: string = res.body.job_id;
      const url = `${server.url}/api/job/${jobId}`;
      const done = await waitForJob(server.url, jobId);
      expect(done.status).toBe('completed');

      const cached = await readJob(url);
      expect(cached.job!.status).toBe('completed');
      expect(await redis!.get(cacheKey(jobId))).toBe(cached.text);
      // The TTL is only a safety net, but there is one.
      const ttl = await redis!.pttl(cacheKey(jobId));
      expect(ttl).toBeGreaterThan(0);

      expect(await redis!.del(cacheKey(jobId))).toBe(1);
      const uncached = await readJob(url); // from the database; refills the key
      expect(uncached.text).toBe(cached.text);
      expect(uncached.contentType).toBe(cached.contentType);
      // Refilled by a read, unless a slow reply just opened the cache's breaker (a busy CI
      // machine): then by a later read, once it has closed.
      let refilled: string | null = null;
      for (let i = 0; i < 250 && refilled === null; i++) {
        refilled = await redis!.get(cacheKey(jobId));
        if (refilled !== null) break;
        await sleep(20);
        if (i % 10 === 9) expect((await readJob(url)).text).toBe(uncached.text);
      }
      expect(refilled).toBe(uncached.text);
      const again = await readJob(url);
      expect(again.text).toBe(uncached.text);
      expect(again.contentType).toBe(uncached.contentType);
    });

  it('never answers a reader with an older state than it already had, under 20 concurrent readers', async () => {
    const rows = 40_000;
    const res = await upload(server.url, 'race.csv', makeCsv(rows));
    expect(res.status).toBe(202);
    const url = `${server.url}/api/job/${res.body.job_id}`;
    const readers = await Promise.all(Array.from({ length: 20 }, () => pollJob(url, { extra: 3, timeoutMs: 120_000 })));

    const regressions = readers.map(firstRegression).filter((r) => r !== undefined);
    expect(regressions).toEqual([]);
    const all = readers.flat();
    const versions = new Set(all.map((r) => r.job!.version));
    // The readers really raced the job: they saw it at many versions, running.
    expect(versions.size, 'distinct versions seen').toBeGreaterThanOrEqual(5);
    expect(all.filter((r) => r.job!.status === 'running').length).toBeGreaterThan(20);
    // Every reader ends on the same final state.
    const finals = new Set(readers.map((reads) => reads.at(-1)!.text));
    expect(finals.size).toBe(1);
    const final = JSON.parse([...finals][0]!) as JobPayload;
    expect(final).toMatchObject({ status: 'completed', records_processed: rows, error: null });
    // queued (1) + running (1) + one per batch + completed (1)
    expect(final.version).toBeGreaterThanOrEqual(rows / BATCH_SIZE + 3);
  }, 180_000);

  it('answers 404 for an unknown job id, every time, and caches nothing for it', async () => {
    const jobId = randomUUID();
    for (let i = 0; i < 2; i++) {
      const read = await readJob(`${server.url}/api/job/${jobId}`);
      expect(read.status).toBe(404);
      expect(read.contentType).toMatch(/^application\/json/);
      expect(JSON.parse(read.text)).toEqual({ detail: 'Job not found', code: 'job_not_found' });
      if (redis) expect(await redis.exists(cacheKey(jobId))).toBe(0);
    }
    // The same id, upper case, is the same (missing) job.
    expect((await readJob(`${server.url}/api/job/${jobId.toUpperCase()}`)).status).toBe(404);
  });

  if (backend.name === 'scale-out')
    it('keeps the completed state when a slow reader stores the payload it read before the job finished', async () => {
      const rows = 10_000;
      const res = await upload(server.url, 'slow.csv', makeCsv(rows));
      const jobId: string = res.body.job_id;
      // A reader that read the row while it was queued, and one while it was running, exactly as
      // GET /api/job/{id} reads it on a cache miss...
      const queuedRow = (await findJob(server.intake.db, jobId))!;
      let runningRow: JobRow | undefined;
      for (let row = queuedRow; !TERMINAL_STATUSES.has(row.status); row = (await findJob(server.intake.db, jobId))!) {
        if (row.status === 'running' && row.records_processed > 0) {
          runningRow = row;
          break;
        }
        await sleep(2);
      }
      const done = await waitForJob(server.url, jobId, 90_000);
      expect(done.status).toBe('completed');
      const finalText = (await readJob(`${server.url}/api/job/${jobId}`)).text;
      // The worker's own write of the final state (a mark, then the value) may still be on its way.
      let cached = await redis!.get(cacheKey(jobId));
      for (let i = 0; i < 50 && cached !== finalText; i++) {
        await sleep(100);
        cached = await redis!.get(cacheKey(jobId));
      }
      expect(cached).toBe(finalText);

      // ... and only now gets to fill the cache with what it read.
      const cache = createStatusCache(new Redis(process.env.REDIS_URL!), {
        prefix: sandbox.env.REDIS_KEY_PREFIX!,
        ttlSeconds: 300,
        log: silentLog,
        load: noLoad,
      });
      try {
        const staleRows = runningRow ? [queuedRow, runningRow] : [queuedRow];
        expect(queuedRow.version).toBeLessThan(done.version);
        for (const row of staleRows) {
          await store(cache, jobId, row.version, payloadJson(row));
          expect(await redis!.get(cacheKey(jobId))).toBe(finalText);
          const read = await readJob(`${server.url}/api/job/${jobId}`);
          expect(read.text).toBe(finalText);
        }
        expect(cache.stats.errors).toBe(0);
      } finally {
        await cache.close();
      }
    });

  it('streams a job as Server-Sent Events: queued → running → completed once each, progress at most 4/s, then ends', async () => {
    // Served by a real `intake serve` process (API and workers in one process, as `npm start`
    // runs it), so the receipt times measured here are the server's send times: in this
    // process, a job running in embedded mode would delay the reading of the stream.
    const liveSandbox = await createSandbox(backend);
    const proc = await startIntakeProcess({ ...liveSandbox.env, BATCH_SIZE: String(BATCH_SIZE), FAST_PATH_MAX_BYTES: '0' });
    let exitCode: number | null | undefined;
    try {
      // A long job in front keeps the one worker busy, so the job under test is still queued
      // when its stream is opened.
      const blockerRows = 100_000;
      const blocker = await upload(proc.url, 'blocker.csv', makeCsv(blockerRows));
      // The job under test: a small file of many short rows (many batches, a quick upload even
      // while the blocker keeps an embedded process busy).
      const rows = 20_000;
      const compact = ['id', ...Array.from({ length: rows }, (_, i) => String(i))].join('\n') + '\n';
      const res = await upload(proc.url, 'live.csv', compact);
      expect(res.status).toBe(202);
      const jobId: string = res.body.job_id;
      const stream = await openEvents(`${proc.url}/api/job/${jobId}/events`);
      const blockerStream = await openEvents(`${proc.url}/api/job/${blocker.body.job_id}/events`);
      try {
        expect(stream.status).toBe(200);
        expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);
        expect(stream.headers.get('cache-control')).toBe('no-cache');
        await within(stream.done, 120_000, 'the event stream of the job');
        await within(blockerStream.done, 30_000, 'the event stream of the blocker');
      } finally {
        stream.cancel();
        blockerStream.cancel();
      }

      const jobs = checkStream(stream);
      // The first event is the job as it was when the stream was opened: queued, as submitted.
      const { status_url: _, ...submitted } = res.body;
      expect(jobs[0]).toEqual(submitted);
      const statusEvents = stream.events.filter((e) => e.event === 'status').map((e) => JSON.parse(e.data).status);
      expect(statusEvents).toEqual(['queued', 'running', 'completed']);
      const progress = stream.events.filter((e) => e.event === 'progress');
      expect(progress.length, 'progress events while running').toBeGreaterThan(0);
      // Batches were coalesced: not one event per committed batch, at most ~4 a second.
      const runningFor = (stream.events.at(-1)!.at - stream.events[1]!.at) / 1000;
      expect(progress.length).toBeLessThanOrEqual(Math.ceil(runningFor * 4) + 2);
      // The terminal event is the final state, the bytes GET answers with.
      const final = await readJob(`${proc.url}/api/job/${jobId}`);
      expect(stream.events.at(-1)!.data).toBe(final.text);
      expect(jobs.at(-1)).toMatchObject({ status: 'completed', records_processed: rows });

      // The job already running (or still queued) when its stream was opened: its first event
      // is its state then, and each later transition appears once.
      const blockerJobs = checkStream(blockerStream);
      const blockerStatuses = blockerStream.events.filter((e) => e.event === 'status').map((e) => JSON.parse(e.data).status as string);
      expect([
        ['queued', 'running', 'completed'],
        ['running', 'completed'],
      ]).toContainEqual(blockerStatuses);
      expect(blockerJobs.at(-1)).toMatchObject({ status: 'completed', records_processed: blockerRows });
    } finally {
      exitCode = await proc.stop();
      await liveSandbox.dispose();
    }
    expect(exitCode, proc.output().slice(-2000)).toBe(0);
  }, 180_000);

  it('streams every job on /api/jobs/events: each new job and transition once, progress at most 4/s per job', async () => {
    const stream = await openEvents(`${server.url}/api/jobs/events`);
    try {
      expect(stream.status).toBe(200);
      expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const first = await upload(server.url, 'all-1.csv', makeCsv(5_000));
      const second = await upload(server.url, 'all-2.csv', makeCsv(5_000));
      const ids = [first.body.job_id as string, second.body.job_id as string];
      for (const id of ids) await waitForJob(server.url, id, 60_000);
      await sleep(300); // the last events are on their way
      for (const id of ids) {
        const events = stream.events.filter((e) => JSON.parse(e.data).job_id === id);
        const jobs = events.map((e) => JSON.parse(e.data) as JobPayload);
        expect(events.filter((e) => e.event === 'status').map((e) => JSON.parse(e.data).status)).toEqual([
          'queued',
          'running',
          'completed',
        ]);
        events.forEach((e, i) => expect(e.event).toBe(i === 0 || jobs[i]!.status !== jobs[i - 1]!.status ? 'status' : 'progress'));
        for (let i = 1; i < jobs.length; i++) expect(jobs[i]!.version).toBeGreaterThan(jobs[i - 1]!.version);
        expect(jobs.at(-1)).toEqual((await getJson(`${server.url}/api/job/${id}`)).body);
        const times = events.filter((e) => e.event === 'progress').map((e) => e.at);
        for (const t of times) expect(times.filter((u) => u >= t && u <= t + 1000).length).toBeLessThanOrEqual(5);
      }
      // It does not end by itself: it follows every job to come.
      expect(stream.endedAt()).toBeUndefined();
    } finally {
      stream.cancel();
    }
  });

  it('streams a finished job as one status event, then ends', async () => {
    const res = await upload(server.url, 'done.csv', makeCsv(10));
    const done = await waitForJob(server.url, res.body.job_id);
    const final = await readJob(`${server.url}/api/job/${res.body.job_id}`);
    const stream = await openEvents(`${server.url}/api/job/${res.body.job_id}/events`);
    try {
      expect(stream.status).toBe(200);
      await within(stream.done, 5000, 'the event stream of a finished job');
    } finally {
      stream.cancel();
    }
    expect(stream.events).toHaveLength(1);
    expect(stream.events[0]).toMatchObject({ event: 'status', id: String(done.version), data: final.text });
  });

  it('answers 404 JSON to the event stream of an unknown or malformed job id', async () => {
    for (const id of [randomUUID(), 'not-a-uuid', '1', "1' OR '1'='1", '6f1c8a52-2f35-4d43-9b0e-2b9f1f0f4c1Z']) {
      const stream = await openEvents(`${server.url}/api/job/${encodeURIComponent(id)}/events`);
      expect(stream.status, id).toBe(404);
      expect(stream.headers.get('content-type')).toMatch(/^application\/json/);
      expect(stream.body).toEqual({ detail: 'Job not found', code: 'job_not_found' });
    }
  });

  it('ends open event streams when the server shuts down, and shuts down promptly', async () => {
    const idleSandbox = await createSandbox(backend);
    const idle = await startServer(idleSandbox, { WORKER_CONCURRENCY: '0' });
    try {
      const res = await upload(idle.url, 'held.csv', makeCsv(10));
      const stream = await openEvents(`${idle.url}/api/job/${res.body.job_id}/events`);
      expect(stream.status).toBe(200);
      await sleep(200);
      expect(stream.events.map((e) => JSON.parse(e.data).status)).toEqual(['queued']);
      // A watcher of a job that is not moving must not hold up a shutdown (SIGTERM must stop
      // the workers and exit within SHUTDOWN_GRACE_MS).
      const closing = idle.close();
      closing.catch(() => {});
      const outcome = await Promise.race([closing.then(() => 'closed'), sleep(5000).then(() => 'still closing after 5 s')]);
      // Ended cleanly by the server (not cut): the last chunk of the response arrived.
      const ended = await Promise.race([
        stream.done.then(
          () => 'ended',
          () => 'cut',
        ),
        sleep(1000).then(() => 'still open'),
      ]);
      stream.cancel(); // lets a hung close finish
      await closing;
      expect(outcome).toBe('closed');
      expect(ended).toBe('ended');
    } finally {
      await idleSandbox.dispose();
    }
  }, 30_000);

  it('never answered 5xx', () => {
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Scale-out: a held job, streamed from queued, processed by an `intake worker` started later

describe.runIf(!!(process.env.DATABASE_URL && process.env.REDIS_URL))('event stream across processes (scale-out)', () => {
  it('streams a job held queued (no workers), then run by a worker process started afterwards', async () => {
    const sandbox = await createSandbox({ name: 'scale-out' });
    const idle = await startServer(sandbox, { WORKER_CONCURRENCY: '0', BATCH_SIZE: String(BATCH_SIZE) });
    let worker: Awaited<ReturnType<typeof startWorkerProcess>> | undefined;
    try {
      const rows = 20_000;
      const res = await upload(idle.url, 'held.csv', makeCsv(rows));
      const jobId: string = res.body.job_id;
      const stream = await openEvents(`${idle.url}/api/job/${jobId}/events`);
      try {
        expect(stream.status).toBe(200);
        await sleep(500);
        expect(stream.events.map((e) => JSON.parse(e.data).status)).toEqual(['queued']);
        worker = await startWorkerProcess({ ...sandbox.env, BATCH_SIZE: String(BATCH_SIZE) });
        await within(stream.done, 120_000, 'the event stream of the held job');
      } finally {
        stream.cancel();
      }
      checkStream(stream);
      const statuses = stream.events.filter((e) => e.event === 'status').map((e) => JSON.parse(e.data).status);
      expect(statuses).toEqual(['queued', 'running', 'completed']);
      expect(stream.events.filter((e) => e.event === 'progress').length).toBeGreaterThan(0);
      expect(stream.events.at(-1)!.data).toBe((await readJob(`${idle.url}/api/job/${jobId}`)).text);
    } finally {
      if (worker) expect(await worker.stop()).toBe(0);
      await idle.close();
      await sandbox.dispose();
    }
  }, 180_000);
});

// ---------------------------------------------------------------------------------------------
// Scale-out: the status cache itself, on the shared Redis under a prefix of its own

/** A TCP proxy in front of Redis that can be cut and restored: a Redis outage for one client only. */
async function redisProxy(target: URL) {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  async function up(): Promise<void> {
    server = createServer((client) => {
      const upstream = connect(Number(target.port || 6379), target.hostname);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  }
  async function down(): Promise<void> {
    const closing = new Promise<void>((resolve) => server?.close(() => resolve()) ?? resolve());
    for (const s of sockets) s.destroy();
    await closing;
  }
  await up();
  function url(): string {
    const proxied = new URL(target.toString());
    proxied.hostname = '127.0.0.1';
    proxied.port = String(port);
    return proxied.toString();
  }
  return { url, up, down };
}

describe.runIf(scaleOutAvailable())('status cache (Redis)', () => {
  const prefix = `intake_live_${process.pid}_${Math.random().toString(36).slice(2, 10)}:`;
  let redis: Redis;

  function payload(jobId: string, version: number, extra: Partial<JobPayload> = {}): string {
    const job: JobPayload = {
      job_id: jobId,
      source_type: 'csv_upload',
      file_name: 'x.csv',
      status: 'running',
      submitted_at: '2026-01-01T00:00:00.000Z',
      started_at: '2026-01-01T00:00:01.000Z',
      completed_at: null,
      records_processed: version * 100,
      records_failed: 0,
      max_errors: 0,
      bytes_total: 1_000_000,
      bytes_processed: version * 1000,
      dataset: 'x',
      mode: 'append',
      key: null,
      rows_inserted: null,
      rows_updated: null,
      error: null,
      dialect: null,
      phase: 'reading',
      warnings: null,
      attempts: 1,
      version,
      ...extra,
    };
    return JSON.stringify(job);
  }

  beforeAll(() => {
    redis = new Redis(process.env.REDIS_URL!);
  });

  afterAll(async () => {
    redis.disconnect();
    await deleteRedisKeys(process.env.REDIS_URL!, prefix);
  });

  it('stores a payload only over an older version', async () => {
    const cache = createStatusCache(new Redis(process.env.REDIS_URL!), { prefix, ttlSeconds: 60, log: silentLog, load: noLoad });
    const jobId = randomUUID();
    const key = `${prefix}ingest_job:${jobId}`;
    try {
      await store(cache, jobId, 5, payload(jobId, 5));
      expect(await redis.get(key)).toBe(payload(jobId, 5));
      expect(await cache.get(jobId)).toBe(payload(jobId, 5));
      const ttl = await redis.pttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(60_000);

      await store(cache, jobId, 3, payload(jobId, 3));
      expect(await redis.get(key)).toBe(payload(jobId, 5));
      await store(cache, jobId, 6, payload(jobId, 6, { status: 'completed', completed_at: '2026-01-01T00:00:02.000Z' }));
      expect(await redis.get(key)).toBe(payload(jobId, 6, { status: 'completed', completed_at: '2026-01-01T00:00:02.000Z' }));
      await store(cache, jobId, 5, payload(jobId, 5));
      expect(JSON.parse((await redis.get(key))!).version).toBe(6);

      await redis.del(key);
      expect(await cache.get(jobId)).toBeNull();
      await store(cache, jobId, 3, payload(jobId, 3));
      expect(await redis.get(key)).toBe(payload(jobId, 3));
      expect(cache.stats.errors).toBe(0);
    } finally {
      await cache.close();
    }
  });

  it('reads the version from the version field, not from text in the file name or error', async () => {
    const cache = createStatusCache(new Redis(process.env.REDIS_URL!), { prefix, ttlSeconds: 60, log: silentLog, load: noLoad });
    const jobId = randomUUID();
    const key = `${prefix}ingest_job:${jobId}`;
    try {
      const sneaky = { file_name: 'a","version":999999,"b":".csv', error: 'bad "version":999999 here' };
      await store(cache, jobId, 2, payload(jobId, 2, sneaky));
      await store(cache, jobId, 3, payload(jobId, 3, sneaky));
      expect(await redis.get(key)).toBe(payload(jobId, 3, sneaky));
      await store(cache, jobId, 2, payload(jobId, 2));
      expect(JSON.parse((await redis.get(key))!).version).toBe(3);
    } finally {
      await cache.close();
    }
  });

  it('a change it could not write during an outage is never served stale, and is repaired once Redis answers again', async () => {
    const proxy = await redisProxy(new URL(process.env.REDIS_URL!));
    const client = fastRedis(proxy.url());
    client.on('error', () => {});
    // What the database holds: the cache repairs a key from it.
    const truth = new Map<string, { version: number; payload: string }>();
    const cache = createStatusCache(client, { prefix, ttlSeconds: 300, log: silentLog, load: async (id) => truth.get(id) ?? null });
    const jobId = randomUUID();
    const key = `${prefix}ingest_job:${jobId}`;
    try {
      await new Promise<void>((resolve) => (client.status === 'ready' ? resolve() : client.once('ready', () => resolve())));
      await store(cache, jobId, 5, payload(jobId, 5));
      truth.set(jobId, { version: 6, payload: payload(jobId, 6, { status: 'completed' }) }); // committed, not yet cached
      expect(await redis.get(key)).toBe(payload(jobId, 5));

      await proxy.down();
      await sleep(100);
      await store(cache, jobId, 6, payload(jobId, 6, { status: 'completed' })); // fails: Redis is unreachable
      expect(cache.stats.errors).toBe(2); // its mark and its write
      expect(await redis.get(key)).toBe(payload(jobId, 5)); // stale, for now
      await proxy.up();
      await sleep(2500); // reconnected, and past the cache's breaker

      // The stale key was rewritten from the database, not served.
      expect(await cache.get(jobId)).toBe(payload(jobId, 6, { status: 'completed' }));
      expect(await redis.get(key)).toBe(payload(jobId, 6, { status: 'completed' }));
      // And a slow reader's older payload cannot land on it afterwards.
      await store(cache, jobId, 5, payload(jobId, 5));
      expect(await redis.get(key)).toBe(payload(jobId, 6, { status: 'completed' }));
    } finally {
      await cache.close();
      await proxy.down();
    }
  });

  it('reads that could not fill the cache during an outage leave nothing to repair: only the failed write is reloaded', async () => {
    // Every status read on the database path offers its answer to the cache. During an outage
    // those offers are dropped; marking them for repair made the set grow with every id read,
    // and the repair reload all of them when Redis came back.
    const proxy = await redisProxy(new URL(process.env.REDIS_URL!));
    const client = fastRedis(proxy.url());
    client.on('error', () => {});
    const truth = new Map<string, { version: number; payload: string }>();
    const loaded: string[] = [];
    const load = async (id: string) => {
      loaded.push(id);
      return truth.get(id) ?? null;
    };
    const cache = createStatusCache(client, { prefix, ttlSeconds: 300, log: silentLog, load });
    const [written, other] = [randomUUID(), randomUUID()];
    try {
      await new Promise<void>((resolve) => (client.status === 'ready' ? resolve() : client.once('ready', () => resolve())));
      await store(cache, written, 5, payload(written, 5));
      await store(cache, other, 2, payload(other, 2));
      truth.set(written, { version: 6, payload: payload(written, 6, { status: 'completed' }) });
      await proxy.down();
      await sleep(100);
      await store(cache, written, 6, payload(written, 6, { status: 'completed' })); // fails: to be repaired
      for (let i = 0; i < 500; i++) {
        const id = randomUUID();
        await cache.fill(id, 1, payload(id, 1));
      }
      expect(await cache.get(written)).toBeNull(); // a miss while Redis is away: the caller reads the database
      await proxy.up();
      let value = await redis.get(`${prefix}ingest_job:${written}`);
      for (let i = 0; i < 50 && value !== payload(written, 6, { status: 'completed' }); i++) {
        await sleep(100);
        value = await redis.get(`${prefix}ingest_job:${written}`);
      }
      expect(value).toBe(payload(written, 6, { status: 'completed' }));
      expect(new Set(loaded)).toEqual(new Set([written]));
      expect(await cache.get(other)).toBe(payload(other, 2));
      expect(await cache.get(written)).toBe(payload(written, 6, { status: 'completed' }));
    } finally {
      await cache.close();
      await proxy.down();
    }
  });

  it('a write that timed out on a slow Redis (no disconnect) is repaired within about a second, without another cache call', async () => {
    // Under load a write can exceed the 50 ms command timeout while the connection stays up:
    // no 'ready' event follows, so the cache must retry by itself.
    const server = await startRedisServer();
    const client = fastRedis(server.url);
    client.on('error', () => {});
    const truth = new Map<string, { version: number; payload: string }>();
    const cache = createStatusCache(client, { prefix, ttlSeconds: 300, log: silentLog, load: async (id) => truth.get(id) ?? null });
    const direct = new Redis(server.url);
    const jobId = randomUUID();
    const key = `${prefix}ingest_job:${jobId}`;
    try {
      await new Promise<void>((resolve) => (client.status === 'ready' ? resolve() : client.once('ready', () => resolve())));
      await store(cache, jobId, 5, payload(jobId, 5));
      // The database has moved on to version 7 by the time Redis answers again.
      truth.set(jobId, { version: 7, payload: payload(jobId, 7, { status: 'completed' }) });
      server.pause();
      const errorsBefore = cache.stats.errors; // a loaded machine may time out the write above too
      await store(cache, jobId, 6, payload(jobId, 6)); // times out after 50 ms (Redis runs it when resumed)
      expect(cache.stats.errors - errorsBefore).toBe(2); // its mark and its write
      server.resume();
      const resumedAt = Date.now();
      const latest = payload(jobId, 7, { status: 'completed' });
      let value = await direct.get(key);
      while (value !== latest && Date.now() - resumedAt < 5000) {
        await sleep(50);
        value = await direct.get(key);
      }
      expect(value).toBe(latest);
      console.log(`stale key repaired ${Date.now() - resumedAt} ms after Redis resumed`);
      expect(client.status).toBe('ready'); // it never reconnected: the timer did it
    } finally {
      direct.disconnect();
      await cache.close();
      await server.stop();
    }
  });

  it('a change it could not write during an outage is repaired once Redis answers again, without another cache call', async () => {
    // A worker whose write of the terminal state failed may never touch the cache again (no
    // more jobs); the key must not keep showing `running` until its TTL.
    const proxy = await redisProxy(new URL(process.env.REDIS_URL!));
    const client = fastRedis(proxy.url());
    client.on('error', () => {});
    // What the database holds: the cache repairs a key from it.
    const truth = new Map<string, { version: number; payload: string }>();
    const cache = createStatusCache(client, { prefix, ttlSeconds: 300, log: silentLog, load: async (id) => truth.get(id) ?? null });
    const jobId = randomUUID();
    const key = `${prefix}ingest_job:${jobId}`;
    try {
      await new Promise<void>((resolve) => (client.status === 'ready' ? resolve() : client.once('ready', () => resolve())));
      await store(cache, jobId, 5, payload(jobId, 5));
      truth.set(jobId, { version: 6, payload: payload(jobId, 6, { status: 'completed' }) }); // committed, not yet cached
      await proxy.down();
      await sleep(100);
      const errorsBefore = cache.stats.errors; // a loaded machine may time out the write above too
      await store(cache, jobId, 6, payload(jobId, 6, { status: 'completed' }));
      expect(cache.stats.errors - errorsBefore).toBe(2); // its mark and its write
      await proxy.up();
      let value = await redis.get(key);
      for (let i = 0; i < 50 && value === payload(jobId, 5); i++) {
        await sleep(100);
        value = await redis.get(key);
      }
      // Rewritten from the database as soon as Redis is back: never version 5 again.
      expect(value).toBe(payload(jobId, 6, { status: 'completed' }));
    } finally {
      await cache.close();
      await proxy.down();
    }
  });
});
