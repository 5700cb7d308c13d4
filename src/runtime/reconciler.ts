import type { Queue } from 'bullmq';
import type { FastifyBaseLogger } from 'fastify';
import type { Db } from '../storage/db.js';
import { listOrphanedJobIds, tryTransactionLock } from '../storage/jobs.js';
import { LOCK_KEYS } from '../core/lock-keys.js';
import { within } from '../core/within.js';
import { enqueue, type JobData } from './queue.js';

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
    if (!(await tryTransactionLock(tx, LOCK_KEYS.reconciler))) return [];
    const jobIds = await listOrphanedJobIds(tx, intervalMs, staleAfterMs);
    const dispatched: string[] = [];
    for (const jobId of jobIds) {
      const state = await bounded(queue.getJobState(jobId), 'getJobState');
      if (state === 'active' || state === 'waiting' || state === 'delayed' || state === 'prioritized' || state === 'waiting-children')
        continue;
      if (state !== 'unknown') await bounded(queue.remove(jobId), 'remove'); // a finished BullMQ record would block the re-add
      await enqueue(queue, jobId);
      dispatched.push(jobId);
    }
    if (dispatched.length > 0)
      log.warn({ count: dispatched.length, jobIds: dispatched.slice(0, 10) }, 'reconciler re-enqueued jobs with no live queue entry');
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
