import type { Queue } from 'bullmq';
import type { FastifyBaseLogger } from 'fastify';
import type { Db } from '../storage/db.js';
import { enqueue, type JobData } from './queue.js';

// Any constant, the same in every process: whoever holds it is the one active reconciler.
const RECONCILER_LOCK_KEY = 7_277_462;

export interface ReconcilerOptions {
  db: Db;
  queue: Queue<JobData>;
  log: FastifyBaseLogger;
  intervalMs: number;
}

/**
 * Finds rows left `queued` or `running` with no live BullMQ job — a lost enqueue, a flushed
 * Redis, a job whose BullMQ record failed — and enqueues them again. One process at a time
 * does this (a transaction-scoped advisory lock); rows younger than one interval are left
 * alone, since their enqueue may still be on its way. Returns the ids it enqueued.
 */
export async function reconcileOnce({ db, queue, log, intervalMs }: ReconcilerOptions): Promise<string[]> {
  return db.transaction(async (tx) => {
    const { rows: lock } = await tx.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS locked', [RECONCILER_LOCK_KEY]);
    if (!lock[0]?.locked) return [];
    // $1 minimum age in ms
    const { rows } = await tx.query<{ job_id: string }>(
      `SELECT job_id FROM ingest_jobs
       WHERE status IN ('queued', 'running') AND submitted_at < NOW() - make_interval(secs => $1 / 1000.0)
       ORDER BY submitted_at LIMIT 1000`,
      [intervalMs],
    );
    const dispatched: string[] = [];
    for (const { job_id: jobId } of rows) {
      const state = await queue.getJobState(jobId);
      if (state === 'active' || state === 'waiting' || state === 'delayed' || state === 'prioritized' || state === 'waiting-children') continue;
      if (state !== 'unknown') await queue.remove(jobId); // a finished BullMQ record would block the re-add
      await enqueue(queue, jobId);
      dispatched.push(jobId);
    }
    if (dispatched.length > 0) log.warn({ count: dispatched.length, jobIds: dispatched.slice(0, 10) }, 'reconciler re-enqueued jobs with no live queue entry');
    return dispatched;
  });
}

export function startReconciler(options: ReconcilerOptions): { close(): Promise<void> } {
  let running: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    running = reconcileOnce(options).catch((err: unknown) => options.log.warn({ err: (err as Error).message }, 'reconciler pass failed'));
  }, options.intervalMs);
  timer.unref();
  return {
    async close() {
      clearInterval(timer);
      await running;
    },
  };
}
