import type { Queue } from 'bullmq';
import type { FastifyBaseLogger } from 'fastify';
import type { Db } from '../storage/db.js';
import { within } from '../within.js';
import { enqueue, type JobData } from './queue.js';

// Any constant, the same in every process: whoever holds it is the one active reconciler.
const RECONCILER_LOCK_KEY = 7_277_462;
// Every Redis call of a pass is bounded, so a pass always ends (and releases the lock) even
// when this process cannot reach Redis: another process's reconciler then takes over.
const REDIS_TIMEOUT_MS = 2000;

export interface ReconcilerOptions {
  db: Db;
  queue: Queue<JobData>;
  log: FastifyBaseLogger;
  intervalMs: number;
  /** A running row whose heartbeat is younger than this has a live worker. */
  staleAfterMs: number;
}

function bounded<T>(promise: Promise<T>, what: string): Promise<T> {
  return within(promise, REDIS_TIMEOUT_MS, what);
}

/**
 * Finds rows with no live BullMQ job — `queued` ones whose enqueue was lost (a Redis that
 * failed or was flushed), `running` ones whose worker stopped showing progress — and enqueues
 * them again. One process at a time does this (a transaction-scoped advisory lock); rows
 * younger than one interval are left alone, since their enqueue may still be on its way.
 * Returns the ids it enqueued.
 */
export async function reconcileOnce({ db, queue, log, intervalMs, staleAfterMs }: ReconcilerOptions): Promise<string[]> {
  await bounded(queue.waitUntilReady(), 'connecting to Redis'); // no lock taken without Redis
  return db.transaction(async (tx) => {
    const { rows: lock } = await tx.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS locked', [RECONCILER_LOCK_KEY]);
    if (!lock[0]?.locked) return [];
    // $1 minimum age in ms, $2 heartbeat age after which a running job's worker is presumed gone
    const { rows } = await tx.query<{ job_id: string }>(
      `SELECT job_id FROM ingest_jobs
       WHERE submitted_at < NOW() - make_interval(secs => $1 / 1000.0)
         AND (status = 'queued'
           OR (status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < NOW() - make_interval(secs => $2 / 1000.0))))
       ORDER BY submitted_at LIMIT 1000`,
      [intervalMs, staleAfterMs],
    );
    const dispatched: string[] = [];
    for (const { job_id: jobId } of rows) {
      const state = await bounded(queue.getJobState(jobId), 'getJobState');
      if (state === 'active' || state === 'waiting' || state === 'delayed' || state === 'prioritized' || state === 'waiting-children') continue;
      if (state !== 'unknown') await bounded(queue.remove(jobId), 'remove'); // a finished BullMQ record would block the re-add
      await enqueue(queue, jobId);
      dispatched.push(jobId);
    }
    if (dispatched.length > 0) log.warn({ count: dispatched.length, jobIds: dispatched.slice(0, 10) }, 'reconciler re-enqueued jobs with no live queue entry');
    return dispatched;
  });
}

export function startReconciler(options: ReconcilerOptions): { close(): Promise<void> } {
  let running: Promise<unknown> | undefined;
  const timer = setInterval(() => {
    if (running) return; // the previous pass is still going
    running = reconcileOnce(options)
      .catch((err: unknown) => options.log.warn({ err: (err as Error).message }, 'reconciler pass failed'))
      .finally(() => (running = undefined));
  }, options.intervalMs);
  timer.unref();
  return {
    async close() {
      clearInterval(timer);
      await running;
    },
  };
}
