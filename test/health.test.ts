import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Counter, Histogram, Registry } from 'prom-client';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createIntake } from '../src/server.js';
import { COUNTS_TTL_MS, jobEventTally, MAX_FOLLOWED_JOBS } from '../src/runtime/metrics.js';
import { JOB_STATUSES, TERMINAL_STATUSES } from '../src/core/job.js';
import {
  backends,
  createSandbox,
  getJson,
  makeCsv,
  scaleOutAvailable,
  startServer,
  waitForJob,
  type Sandbox,
  type TestServer,
} from './helpers.js';
import { startRedisServer, type RedisServer } from './redis-server.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
// Values as Go's ParseFloat reads them (what Prometheus uses): NaN and Inf in any case
// (prom-client writes "Nan"), Inf with a sign.
const VALUE =
  '(?:[+-]?(?:\\d+(?:\\.\\d*)?(?:[eE][+-]?\\d+)?|\\.\\d+(?:[eE][+-]?\\d+)?|[Ii][Nn][Ff](?:[Ii][Nn][Ii][Tt][Yy])?)|[Nn][Aa][Nn])';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*,?)?\\})? (${VALUE})(?: -?\\d+)?$`);
const HELP = new RegExp(`^# HELP (${NAME}) .*$`);
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);

/**
 * Parses the Prometheus text exposition format strictly: every line is a HELP, a TYPE or a
 * sample, and every sample belongs to a family declared (HELP and TYPE) before it.
 */
function parsePrometheus(text: string): Sample[] {
  expect(text.endsWith('\n'), 'the exposition ends with a newline').toBe(true);
  const help = new Set<string>();
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n').slice(0, -1)) {
    if (line === '') continue;
    const h = HELP.exec(line);
    if (h) {
      help.add(h[1]!);
      continue;
    }
    const t = TYPE.exec(line);
    if (t) {
      types.set(t[1]!, t[2]!);
      continue;
    }
    const s = SAMPLE.exec(line);
    expect(s, `not a Prometheus sample line: ${JSON.stringify(line)}`).not.toBeNull();
    const [, name, labelText, value] = s!;
    const family = types.has(name!) ? name! : name!.replace(/_(bucket|sum|count)$/, '');
    expect(types.get(family), `no # TYPE before ${name}`).toBeDefined();
    expect(help.has(family), `no # HELP before ${name}`).toBe(true);
    if (family !== name) expect(types.get(family)).toMatch(/histogram|summary/);
    const labels: Record<string, string> = {};
    for (const [, key, raw] of (labelText ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key!] = raw!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    samples.push({ name: name!, labels, value: toNumber(value!) });
  }
  return samples;
}

function toNumber(value: string): number {
  if (/nan/i.test(value)) return NaN;
  if (/inf/i.test(value)) return value.startsWith('-') ? -Infinity : Infinity;
  return Number(value);
}

/** The sample's value, 0 when there is no such series (a counter not yet incremented). */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  expect(found.length, `${name} ${JSON.stringify(labels)} matches one series at most`).toBeLessThanOrEqual(1);
  return found[0]?.value ?? 0;
}

async function scrape(baseUrl: string): Promise<{ samples: Sample[]; text: string; contentType: string | null }> {
  const res = await fetch(`${baseUrl}/metrics`);
  expect(res.status).toBe(200);
  const text = await res.text();
  return { samples: parsePrometheus(text), text, contentType: res.headers.get('content-type') };
}

/** A GET that must answer within `ms`: status, body and how long it took. */
async function timedGet(url: string, ms = 2000): Promise<{ status: number; body: any; elapsed: number }> {
  const started = performance.now();
  const res = await fetch(url, { signal: AbortSignal.timeout(ms + 3000) });
  const body = res.headers.get('content-type')?.includes('json') ? await res.json() : await res.text();
  const elapsed = performance.now() - started;
  expect(elapsed, `${url} answered in ${elapsed.toFixed(0)} ms`).toBeLessThan(ms);
  return { status: res.status, body, elapsed };
}

/** Polls `probe` (which throws while not yet) until it passes or timeoutMs is over. */
async function eventually<T>(probe: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await probe();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}

describe.each(backends())('health checks and metrics ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { BATCH_SIZE: '100' });
  });

  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  it('/healthz answers 200 {"status":"ok"}', async () => {
    const res = await timedGet(`${server.url}/healthz`);
    expect(res).toMatchObject({ status: 200, body: { status: 'ok' } });
  });

  it('/readyz answers 200 with the checks of this mode', async () => {
    const res = await timedGet(`${server.url}/readyz`);
    expect(res.status).toBe(200);
    const checks = backend.name === 'scale-out' ? { database: 'ok', redis: 'ok' } : { database: 'ok' };
    expect(res.body).toEqual({ status: 'ready', checks });
  });

  it('/metrics is Prometheus text, and a job moves its counters by exactly its numbers', async () => {
    const first = await scrape(server.url);
    expect(first.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    for (const status of JOB_STATUSES)
      expect(
        first.samples.some((s) => s.name === 'intake_jobs' && s.labels.status === status),
        `intake_jobs{status="${status}"}`,
      ).toBe(true);
    for (const state of ['waiting', 'active', 'delayed'])
      expect(
        first.samples.some((s) => s.name === 'intake_queue_depth' && s.labels.state === state),
        `intake_queue_depth{state="${state}"}`,
      ).toBe(true);
    for (const status of TERMINAL_STATUSES)
      expect(first.samples.some((s) => s.name === 'intake_jobs_finished_total' && s.labels.status === status)).toBe(true);
    expect(first.samples.some((s) => s.name === 'process_cpu_user_seconds_total')).toBe(true); // the default process metrics
    const before = first.samples;

    // 450 good rows and one bad one among them, which max_errors lets the job skip and report.
    const rows = 450;
    const form = new FormData();
    const lines = makeCsv(rows).split('\r\n');
    lines.splice(200, 0, 'only one field');
    form.append('file', new Blob([lines.join('\r\n')]), 'metrics.csv');
    const res = await fetch(`${server.url}/api/upload?max_errors=5`, { method: 'POST', body: form });
    expect(res.status).toBe(202);
    const jobId = ((await res.json()) as { job_id: string }).job_id;
    const job = await waitForJob(server.url, jobId);
    expect(job).toMatchObject({ status: 'completed', records_processed: rows, records_failed: 1 });
    // Once more: in scale-out mode the worker writes the finished job through (just after its
    // commit, so a read may come first and miss), and then reads of it are cache hits.
    const hitsBefore = valueOf(before, 'intake_status_cache_requests_total', { result: 'hit' });
    await eventually(async () => {
      expect((await getJson(`${server.url}/api/job/${jobId}`)).status).toBe(200);
      if (backend.name === 'scale-out')
        expect(valueOf((await scrape(server.url)).samples, 'intake_status_cache_requests_total', { result: 'hit' })).toBeGreaterThan(
          hitsBefore,
        );
    }, 10_000);

    // The counters follow the job's events, which may arrive a moment after the status read;
    // the gauges are counted at most every COUNTS_TTL_MS.
    const after = await eventually(async () => {
      const { samples } = await scrape(server.url);
      expect(valueOf(samples, 'intake_jobs_finished_total', { status: 'completed' })).toBe(
        valueOf(before, 'intake_jobs_finished_total', { status: 'completed' }) + 1,
      );
      expect(valueOf(samples, 'intake_jobs', { status: 'completed' })).toBe(valueOf(before, 'intake_jobs', { status: 'completed' }) + 1);
      expect(
        valueOf(samples, 'intake_queue_depth', { state: 'waiting' }) + valueOf(samples, 'intake_queue_depth', { state: 'active' }),
      ).toBe(0);
      return samples;
    }, 10_000);
    const delta = (name: string, labels: Record<string, string> = {}) => valueOf(after, name, labels) - valueOf(before, name, labels);
    expect(delta('intake_records_ingested_total')).toBe(rows);
    expect(delta('intake_rows_failed_total')).toBe(1);
    expect(delta('intake_jobs', { status: 'completed' })).toBe(1);
    expect(delta('intake_job_duration_seconds_count', { status: 'completed' })).toBe(1);
    expect(delta('intake_job_duration_seconds_sum', { status: 'completed' })).toBeCloseTo(
      (Date.parse(job.completed_at!) - Date.parse(job.started_at!)) / 1000,
      3,
    );
    expect(delta('intake_jobs_finished_total', { status: 'failed' })).toBe(0);
    expect(valueOf(after, 'intake_jobs', { status: 'queued' }) + valueOf(after, 'intake_jobs', { status: 'running' })).toBe(0);
    expect(valueOf(after, 'intake_queue_depth', { state: 'waiting' })).toBe(0);

    // Requests by route pattern: the status reads above, never a raw URL with the job id.
    const statusReads = after.find(
      (s) =>
        s.name === 'intake_http_request_duration_seconds_count' &&
        s.labels.route === '/api/job/:job_id' &&
        s.labels.method === 'GET' &&
        s.labels.status_code === '200',
    );
    expect(statusReads?.value).toBeGreaterThan(0);
    expect(after.some((s) => s.labels.route === '/api/upload' && s.labels.method === 'POST' && s.labels.status_code === '202')).toBe(true);
    expect(after.some((s) => s.labels.route === '/metrics')).toBe(false);
    expect(after.some((s) => Object.values(s.labels).some((v) => v.includes(jobId)))).toBe(false);

    if (backend.name === 'scale-out') {
      // waitForJob read the status URL: each read was a hit or a miss of the Redis cache.
      const reads =
        delta('intake_status_cache_requests_total', { result: 'hit' }) + delta('intake_status_cache_requests_total', { result: 'miss' });
      expect(reads).toBeGreaterThanOrEqual(
        statusReads!.value - valueOf(before, 'intake_http_request_duration_seconds_count', statusReads!.labels),
      );
      expect(delta('intake_status_cache_requests_total', { result: 'hit' })).toBeGreaterThan(0);
    } else {
      expect(after.some((s) => s.name === 'intake_status_cache_requests_total')).toBe(false);
    }
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
  });

  it('counts the jobs in the database once for many scrapes, at once or one after another', async () => {
    const { db } = server.intake;
    const query = db.query.bind(db);
    let counts = 0;
    db.query = ((text: string, ...rest: unknown[]) => {
      if (/GROUP BY status/.test(text)) counts++;
      return (query as (...args: unknown[]) => unknown)(text, ...rest);
    }) as typeof db.query;
    try {
      await sleep(COUNTS_TTL_MS); // the last scrape's counts are stale
      const scrapes = await Promise.all(Array.from({ length: 50 }, () => scrape(server.url)));
      for (let i = 0; i < 20; i++) scrapes.push(await scrape(server.url));
      for (const { samples } of scrapes)
        expect(samples.some((s) => s.name === 'intake_jobs' && s.labels.status === 'completed')).toBe(true);
      // One count, or two if the scrapes outlasted COUNTS_TTL_MS on a slow machine; never one each.
      expect(counts).toBeGreaterThanOrEqual(1);
      expect(counts).toBeLessThanOrEqual(2);
    } finally {
      db.query = query;
    }
  });

  it('an unknown path is timed as route "unmatched"', async () => {
    expect((await fetch(`${server.url}/no/such/${crypto.randomUUID()}`)).status).toBe(404);
    const { samples } = await scrape(server.url);
    expect(
      valueOf(samples, 'intake_http_request_duration_seconds_count', { method: 'GET', route: 'unmatched', status_code: '404' }),
    ).toBeGreaterThan(0);
  });
});

describe.runIf(scaleOutAvailable())('readiness while Redis is hung or down (scale-out, a private Redis)', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const step of cleanup.reverse()) await step().catch((err: unknown) => console.error('cleanup:', err));
    cleanup.length = 0;
  });

  it('answers 503 naming redis within 2 s, /healthz and /metrics still 200, and 200 again once Redis is back', async () => {
    const sandbox = await createSandbox({ name: 'scale-out' });
    cleanup.push(() => sandbox.dispose());
    let redis: RedisServer = await startRedisServer();
    cleanup.push(() => redis.stop('SIGKILL'));
    const server = await startServer(sandbox, { REDIS_URL: redis.url, WORKER_CONCURRENCY: '0' });
    cleanup.push(async () => {
      redis.resume(); // a paused server would hold up the close
      await server.close();
    });
    const ready = { status: 'ready', checks: { database: 'ok', redis: 'ok' } };
    const notReady = { detail: 'not ready: redis unreachable', code: 'not_ready', checks: { database: 'ok', redis: 'unreachable' } };
    expect((await timedGet(`${server.url}/readyz`)).body).toEqual(ready);

    const whileDown = async (phase: string) => {
      for (let i = 0; i < 5; i++) {
        const res = await timedGet(`${server.url}/readyz`);
        expect(res.status, phase).toBe(503);
        expect(res.body, phase).toEqual(notReady);
      }
      expect((await timedGet(`${server.url}/healthz`)).status, phase).toBe(200);
      // What can be counted still is: the jobs in the database; the queue depth is left out.
      const metrics = await timedGet(`${server.url}/metrics`);
      expect(metrics.status, phase).toBe(200);
      const samples = parsePrometheus(metrics.body as string);
      expect(
        samples.some((s) => s.name === 'intake_jobs'),
        phase,
      ).toBe(true);
      expect(
        samples.some((s) => s.name === 'intake_queue_depth'),
        phase,
      ).toBe(false);
    };
    const backUp = (phase: string) =>
      eventually(async () => {
        const res = await timedGet(`${server.url}/readyz`);
        expect(res.body, phase).toEqual(ready);
        const metrics = parsePrometheus((await timedGet(`${server.url}/metrics`)).body as string);
        expect(
          metrics.some((s) => s.name === 'intake_queue_depth'),
          phase,
        ).toBe(true);
      }, 10_000);

    // Hung: the process is stopped, its connections stay open and nothing answers.
    redis.pause();
    await whileDown('Redis hung (SIGSTOP)');
    redis.resume();
    await backUp('Redis resumed (SIGCONT)');

    // Down: killed, connections refused; then a new Redis on the same port.
    await redis.stop('SIGKILL');
    await whileDown('Redis down (SIGKILL)');
    redis = await startRedisServer(redis.port);
    await backUp('Redis restarted');

    expect(server.statuses.filter((s) => s >= 500 && s !== 503)).toEqual([]);
  }, 60_000);
});

describe('the log of answers', () => {
  it('logs a request and its successful answer at debug, a client error at info, never the token', async () => {
    const sandbox = await createSandbox(backends()[0]!);
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const intake = await createIntake(loadConfig({ ...sandbox.env, API_TOKENS: 'secret-token-0123456789' }), log);
    try {
      const auth = { authorization: 'Bearer secret-token-0123456789' };
      expect((await intake.app.inject({ url: '/healthz' })).statusCode).toBe(200);
      expect((await intake.app.inject({ url: '/api/jobs', headers: auth })).statusCode).toBe(200);
      expect((await intake.app.inject({ url: `/api/job/${randomUUID()}`, headers: auth })).statusCode).toBe(404);
      expect((await intake.app.inject({ url: '/api/jobs' })).statusCode).toBe(401);
      const answers = lines.filter((line) => line.msg === 'request completed');
      expect(answers.map((line) => [line.level, (line.res as { statusCode: number }).statusCode])).toEqual([
        [30, 404],
        [30, 401],
      ]);
      expect(lines.some((line) => line.msg === 'incoming request')).toBe(false);
      expect(JSON.stringify(lines)).not.toContain('secret-token-0123456789');

      lines.length = 0;
      log.level = 'debug';
      await intake.app.inject({ url: '/healthz' });
      expect(lines.map((line) => [line.level, line.msg])).toEqual([
        [20, 'incoming request'],
        [20, 'request completed'],
      ]);
    } finally {
      await intake.close();
      await sandbox.dispose();
    }
  });
});

describe('the Prometheus text check', () => {
  it('rejects what is not the exposition format', () => {
    expect(() => parsePrometheus('# HELP a b\n# TYPE a counter\na 1\n')).not.toThrow();
    expect(() => parsePrometheus('a 1\n')).toThrow(/no # TYPE/);
    expect(() => parsePrometheus('# HELP a b\n# TYPE a gauge\na{x="1} 1\n')).toThrow(/not a Prometheus sample/);
    expect(() => parsePrometheus('# HELP a b\n# TYPE a gauge\na one\n')).toThrow(/not a Prometheus sample/);
    expect(parsePrometheus('# HELP a b\n# TYPE a gauge\na Nan\na -Inf\n').map((s) => s.value)).toEqual([NaN, -Infinity]);
    expect(parsePrometheus('# HELP h b\n# TYPE h histogram\nh_bucket{le="+Inf",route="/a\\"b"} 2\nh_count 2\n')).toEqual([
      { name: 'h_bucket', labels: { le: '+Inf', route: '/a"b' }, value: 2 },
      { name: 'h_count', labels: {}, value: 2 },
    ]);
  });
});

describe('counting from job events', () => {
  it("adds each job's counter differences once: repeats and older events change nothing, a retry starts from 0, the map is bounded", async () => {
    const registry = new Registry();
    const registers = [registry];
    const tally = jobEventTally({
      records: new Counter({ name: 'records', help: 'r', registers }),
      rowsFailed: new Counter({ name: 'rows_failed', help: 'f', registers }),
      finished: new Counter({ name: 'finished', help: 'f', labelNames: ['status'], registers }),
      duration: new Histogram({ name: 'duration', help: 'd', labelNames: ['status'], buckets: [1, 10], registers }),
    });
    const read = async () => parsePrometheus(await registry.metrics());
    const jobId = randomUUID();
    const event = (version: number, status: string, processed: number, failed = 0, seconds?: number) =>
      JSON.stringify({
        job_id: jobId,
        status,
        started_at: seconds === undefined ? null : '2026-11-28T10:00:00.000Z',
        completed_at: seconds === undefined ? null : new Date(Date.parse('2026-11-28T10:00:00.000Z') + seconds * 1000).toISOString(),
        records_processed: processed,
        records_failed: failed,
        version,
      });

    for (const payload of [
      event(1, 'queued', 0),
      event(2, 'running', 0),
      event(3, 'running', 100),
      event(3, 'running', 100),
      event(5, 'running', 300, 2),
      event(4, 'running', 200),
    ])
      tally(payload);
    let samples = await read();
    expect(valueOf(samples, 'records')).toBe(300);
    expect(valueOf(samples, 'rows_failed')).toBe(2);
    tally(event(6, 'failed', 350, 2, 4.5));
    samples = await read();
    expect(valueOf(samples, 'records')).toBe(350);
    expect(valueOf(samples, 'finished', { status: 'failed' })).toBe(1);
    expect(valueOf(samples, 'duration_sum', { status: 'failed' })).toBe(4.5);

    // Retried: queued again with its counters at 0, then a whole new run.
    for (const payload of [event(7, 'queued', 0), event(8, 'running', 50), event(9, 'completed', 80, 0, 2)]) tally(payload);
    // Not job changes: ignored.
    for (const payload of [
      'not json',
      '{"deleted":true,"version":9007199254740991}',
      JSON.stringify({ job_id: jobId, status: 'bogus', version: 10 }),
    ])
      tally(payload);
    samples = await read();
    expect(valueOf(samples, 'records')).toBe(430);
    expect(valueOf(samples, 'finished', { status: 'completed' })).toBe(1);
    expect(valueOf(samples, 'finished', { status: 'failed' })).toBe(1);
    expect(valueOf(samples, 'duration_count', { status: 'completed' })).toBe(1);

    // Beyond MAX_FOLLOWED_JOBS unfinished jobs, the least recently changed is forgotten: its
    // next event counts its records from 0 again (the price of a bounded map).
    const first = randomUUID();
    tally(JSON.stringify({ job_id: first, status: 'running', records_processed: 10, records_failed: 0, version: 3 }));
    for (let i = 0; i < MAX_FOLLOWED_JOBS; i++)
      tally(JSON.stringify({ job_id: randomUUID(), status: 'queued', records_processed: 0, records_failed: 0, version: 1 }));
    tally(JSON.stringify({ job_id: first, status: 'running', records_processed: 20, records_failed: 0, version: 4 }));
    expect(valueOf(await read(), 'records')).toBe(430 + 10 + 20);
  });
});
