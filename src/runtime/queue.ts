import { DelayedError, Queue, Worker, type Job } from 'bullmq';
import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import type { PipelineDeps, RunOutcome } from '../jobs/runner.js';
import { within } from '../core/within.js';
import type { Dispatcher, JobKind } from '../jobs/dispatcher.js';
import { runToEnd } from '../jobs/run.js';

export const QUEUE_NAME = 'intake-ingest';

export interface JobData {
  jobId: string;
}

export function bullPrefix(redisKeyPrefix: string): string {
  return `${redisKeyPrefix}bull`;
}

// Enqueueing waits at most this long: a Redis that is down must not hold up the answer to
// an upload whose row is already committed; the reconciler dispatches it later.
const ENQUEUE_TIMEOUT_MS = 2000;

// After an error (or a lost connection) a run resumes this long after it broke off (more when
// the database stays away: see waitForDatabase); after this many errors the job fails with the last.
const RETRY_DELAY_MS = 1000;
const MAX_ERRORS = 3;

// BullMQ takes jobs without a priority (0) before any with one: a scheduled job waits behind
// every interactive one.
const SCHEDULED_PRIORITY = 10;

/** Adds a BullMQ job whose id is the job id: adding it twice while it exists is a no-op. */
export async function enqueue(queue: Queue<JobData>, jobId: string, kind: JobKind = 'interactive'): Promise<void> {
  const priority = kind === 'scheduled' ? { priority: SCHEDULED_PRIORITY } : {};
  await within(
    queue.add('ingest', { jobId }, { jobId, removeOnComplete: true, removeOnFail: true, ...priority }),
    ENQUEUE_TIMEOUT_MS,
    'enqueue',
  );
}

/** The API side: commits are done by the caller; this only enqueues the job id. */
export function createQueueDispatcher(queue: Queue<JobData>, log: FastifyBaseLogger): Dispatcher {
  return {
    async dispatch(jobId, kind) {
      try {
        await enqueue(queue, jobId, kind);
      } catch (err) {
        // The row is committed: the reconciler will find it without a live BullMQ job.
        log.warn({ jobId, err: (err as Error).message }, 'enqueue failed; the reconciler will dispatch the job');
      }
    },
    async start() {},
    async close() {},
  };
}

export interface QueueWorkerOptions {
  pipeline: PipelineDeps;
  connection: Redis;
  prefix: string;
  concurrency: number;
  lockMs: number;
}

/**
 * A BullMQ worker running the pipeline. BullMQ guarantees one worker holds a job at a time
 * (its lock); a worker that dies loses the lock and the job is redelivered as stalled, to
 * resume from its checkpoint. Redeliveries are bounded by the job row's attempts, not by
 * BullMQ, so the same limit holds however the job came back.
 */
export function startQueueWorker(options: QueueWorkerOptions): { close(): Promise<void> } {
  const { pipeline } = options;
  const stop = new AbortController();

  // Runs the job to its end, holding its BullMQ job meanwhile: its errors are retried and end
  // the job here, so a failed BullMQ job never leaves the row to be claimed again as a crash.
  const runPatiently = (jobId: string): Promise<RunOutcome> =>
    runToEnd(pipeline, jobId, stop.signal, { maxErrors: MAX_ERRORS, retryDelayMs: RETRY_DELAY_MS });

  const worker = new Worker<JobData>(
    QUEUE_NAME,
    async (job: Job<JobData>, token?: string) => {
      const jobId = job.data.jobId;
      let outcome = await runPatiently(jobId);
      // Skipped: not claimed, or lost to a cancel. A job canceled while running and retried at
      // once was enqueued again under this BullMQ job's id, which was a no-op while this one
      // was active: claimed here, it starts now rather than at the reconciler's next pass.
      if (outcome === 'skipped') outcome = await runPatiently(jobId);
      pipeline.log.info({ jobId, outcome }, 'job run ended');
      if (outcome === 'stopped') {
        // Shutting down between batches: hand the job straight back for another worker.
        await job.moveToDelayed(Date.now(), token);
        throw new DelayedError();
      }
      return outcome;
    },
    {
      connection: options.connection,
      prefix: options.prefix,
      concurrency: options.concurrency,
      lockDuration: options.lockMs,
      stalledInterval: options.lockMs,
      maxStalledCount: 1000, // the row's attempts decide when a job is given up
      autorun: true,
    },
  );
  worker.on('error', (err) => pipeline.log.error({ err }, 'queue worker error'));
  worker.on('failed', (job, err) => pipeline.log.error({ jobId: job?.data.jobId, err }, 'job run failed unexpectedly'));
  return {
    async close() {
      stop.abort();
      await worker.close();
    },
  };
}
