import type { FastifyBaseLogger } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { StatusCache } from '../live/status-cache.js';
import type { JobEvents } from '../live/job-events.js';
import { JOB_STATUSES, TERMINAL_STATUSES, type JobPayload, type JobStatus } from '../core/job.js';
import type { Db } from '../storage/db.js';
import { countJobsByStatus } from '../storage/jobs.js';
import { within } from '../core/within.js';

/**
 * The Prometheus metrics of one API process. A registry per app, not prom-client's global
 * one, so several apps in one process (the tests) each count only their own.
 *
 * Job counters come from the live job events, not from the code that runs jobs: in scale-out
 * mode the workers are other processes, and the events are what reaches this one. Gauges are
 * read at scrape time (the database, the BullMQ queue), at most every COUNTS_TTL_MS, each
 * bounded by a timeout: a source that is down leaves its series out of the answer, never
 * holds it up.
 */
export interface Metrics {
  registry: Registry;
  /** One HTTP answer, from the onResponse hook. `route` is the route's pattern, never the raw URL. */
  observeRequest(method: string, route: string, statusCode: number, seconds: number): void;
  /** Stops following job events. */
  close(): void;
}

export const QUEUE_STATES = ['waiting', 'active', 'delayed'] as const;
export type QueueState = (typeof QUEUE_STATES)[number];
/** The queue's job counts by state (BullMQ in scale-out mode). */
export type QueueCounts = () => Promise<Partial<Record<QueueState, number>>>;

export interface MetricsDeps {
  db: Db;
  events: JobEvents;
  /** Scale-out: its hit and miss counts. */
  cache?: StatusCache;
  /** Scale-out: BullMQ's counts. Otherwise the queue is the `queued` and `running` rows. */
  queueCounts?: QueueCounts;
  log: FastifyBaseLogger;
}

/** How long a scrape or a readiness check waits for one source (the database, Redis). */
export const PROBE_TIMEOUT_MS = 1000;
/** How long the job counts of one scrape serve the next ones (seconds-old gauges are fine to Prometheus). */
export const COUNTS_TTL_MS = 2000;

/**
 * `read`, run at most once at a time and at most once per `ttlMs` from its last success: a
 * call meanwhile gets the read in flight or the last result.
 */
function sharedFor<T>(ttlMs: number, read: () => Promise<T>): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | undefined;
  let inFlight: Promise<T> | undefined;
  return () => {
    if (last && performance.now() - last.at < ttlMs) return last.value;
    inFlight ??= read()
      .then((value) => {
        last = { at: performance.now(), value: Promise.resolve(value) };
        return value;
      })
      .finally(() => (inFlight = undefined));
    return inFlight;
  };
}

export function createMetrics(deps: MetricsDeps): Metrics {
  const { db, cache, queueCounts, log } = deps;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  // Jobs by status, counted at most once per COUNTS_TTL_MS however often /metrics is scraped
  // (it needs no token by default, and each count reads every job row), one count at a time:
  // scrapes meanwhile share the count in flight or the last one. A failed count is not kept.
  // (BullMQ's counts are a few Redis reads: they are read at each scrape.)
  const jobCounts = sharedFor(COUNTS_TTL_MS, () => within(countJobsByStatus(db), PROBE_TIMEOUT_MS, 'counting jobs'));
  function unavailable(what: string) {
    return (err: unknown) => {
      log.warn({ err: (err as Error).message }, `metrics: ${what} unavailable; left out of this scrape`);
      return undefined;
    };
  }

  new Gauge({
    name: 'intake_jobs',
    help: 'Jobs by status, counted in the database at scrape time (at most every 2 s)',
    labelNames: ['status'],
    registers,
    async collect() {
      this.reset();
      const counts = await jobCounts().catch(unavailable('job counts'));
      if (!counts) return;
      for (const status of JOB_STATUSES) this.set({ status }, counts.get(status) ?? 0);
    },
  });

  new Gauge({
    name: 'intake_queue_depth',
    help: 'Jobs waiting, being run and delayed (retried later): the BullMQ queue in scale-out mode, else the queued and running rows',
    labelNames: ['state'],
    registers,
    async collect() {
      this.reset();
      const depth = await (
        queueCounts
          ? within(queueCounts(), PROBE_TIMEOUT_MS, 'counting the queue')
          : jobCounts().then((counts) => ({ waiting: counts.get('queued') ?? 0, active: counts.get('running') ?? 0, delayed: 0 }))
      ).catch(unavailable('queue depth'));
      if (!depth) return;
      for (const state of QUEUE_STATES) this.set({ state }, depth[state] ?? 0);
    },
  });

  if (cache?.kind === 'redis') {
    const { stats } = cache;
    new Counter({
      name: 'intake_status_cache_requests_total',
      help: 'Status reads (GET /api/job/{id}) answered from the Redis cache (hit) or not (miss: absent, or Redis unavailable)',
      labelNames: ['result'],
      registers,
      collect() {
        // The cache keeps the counts; a scrape copies them.
        this.reset();
        this.inc({ result: 'hit' }, stats.hits);
        this.inc({ result: 'miss' }, stats.reads - stats.hits);
      },
    });
  }

  const http = new Histogram({
    name: 'intake_http_request_duration_seconds',
    help: 'HTTP requests by method, route pattern and status code (event streams count until they close)',
    labelNames: ['method', 'route', 'status_code'],
    registers,
  });

  const unsubscribe = deps.events.subscribeAll(
    jobEventTally({
      records: new Counter({ name: 'intake_records_ingested_total', help: 'Records committed by jobs (from job events)', registers }),
      rowsFailed: new Counter({
        name: 'intake_rows_failed_total',
        help: 'Bad rows skipped and reported by jobs (from job events)',
        registers,
      }),
      finished: new Counter({
        name: 'intake_jobs_finished_total',
        help: 'Jobs that reached a terminal status',
        labelNames: ['status'],
        registers,
      }),
      duration: new Histogram({
        name: 'intake_job_duration_seconds',
        help: 'From started_at to completed_at of jobs that reached a terminal status',
        labelNames: ['status'],
        buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
        registers,
      }),
    }),
  );

  return {
    registry,
    observeRequest(method, route, statusCode, seconds) {
      http.observe({ method, route, status_code: statusCode }, seconds);
    },
    close: unsubscribe,
  };
}

/** Jobs followed at once: beyond it the least recently changed is forgotten (see jobEventTally). */
export const MAX_FOLLOWED_JOBS = 100_000;

interface Followed {
  version: number;
  processed: number;
  failed: number;
}

/**
 * Turns job events into counter increments. Per unfinished job it keeps the last counters
 * seen and adds the difference: events are best effort, and a missed one just merges into the
 * next difference. A job is dropped at its terminal status (a retry starts it again from 0).
 * A job forgotten while still running (beyond MAX_FOLLOWED_JOBS) or first heard of mid-run
 * (this process started late) has its records so far counted at its next event.
 */
export function jobEventTally(metrics: {
  records: Counter;
  rowsFailed: Counter;
  finished: Counter<'status'>;
  duration: Histogram<'status'>;
}): (payload: string) => void {
  const followed = new Map<string, Followed>();
  for (const status of TERMINAL_STATUSES) {
    // Every series from the first scrape on, so rate() sees the first job too.
    metrics.finished.inc({ status }, 0);
    metrics.duration.zero({ status });
  }
  return (payload) => {
    let job: Partial<JobPayload>;
    try {
      job = JSON.parse(payload) as Partial<JobPayload>;
    } catch {
      return;
    }
    const { job_id: jobId, status, version = 0 } = job;
    if (typeof jobId !== 'string' || !JOB_STATUSES.includes(status as JobStatus)) return; // not a job change
    const last = followed.get(jobId);
    if (last && version <= last.version) return; // a repeat or an older change
    const processed = job.records_processed ?? 0;
    const failed = job.records_failed ?? 0;
    // A drop is a retry starting from 0: a new baseline, not negative work.
    const records = processed - (last?.processed ?? 0);
    const rowsFailed = failed - (last?.failed ?? 0);
    if (records > 0) metrics.records.inc(records);
    if (rowsFailed > 0) metrics.rowsFailed.inc(rowsFailed);
    followed.delete(jobId); // re-inserted last: the Map's order is then least recently changed first
    if (TERMINAL_STATUSES.has(status as JobStatus)) {
      metrics.finished.inc({ status });
      // A job canceled before it started has no duration.
      if (job.started_at && job.completed_at) {
        const seconds = (Date.parse(job.completed_at) - Date.parse(job.started_at)) / 1000;
        if (seconds >= 0) metrics.duration.observe({ status: status }, seconds);
      }
      return;
    }
    followed.set(jobId, { version, processed, failed });
    if (followed.size > MAX_FOLLOWED_JOBS) followed.delete(followed.keys().next().value!);
  };
}
