import type { FastifyBaseLogger } from 'fastify';
import { LOCK_KEYS } from '../core/lock-keys.js';
import type { PendingChange, StatusCache } from '../live/status-cache.js';
import type { UploadStore } from '../sources/uploads.js';
import { dropOrphanStages, dropStage } from '../storage/datasets.js';
import { limitLockWait, type Db, type Queryable } from '../storage/db.js';
import { deleteOrphanDeliveries } from '../storage/deliveries.js';
import { deleteExpiredKeys, deleteJobs, listExpiredJobIds, tryTransactionLock } from '../storage/jobs.js';

export interface RemovalDeps {
  db: Db;
  uploads: UploadStore;
  cache?: StatusCache;
  log: FastifyBaseLogger;
}

/**
 * The traces of jobs whose rows are already deleted: their stored uploads, stages (the rows of
 * a job that had not completed) and cache keys. The row goes first, so a crash in between
 * leaves at worst an orphan file or stage (swept later), never a job whose upload is missing.
 * Rows a completed job published stay in its dataset: they are the user's data now.
 */
async function removeTraces(deps: RemovalDeps, jobIds: string[]): Promise<void> {
  for (const jobId of jobIds) {
    await deps.uploads.remove(jobId).catch((err: unknown) => deps.log.warn({ jobId, err }, 'could not remove the upload of a deleted job'));
    await dropStage(deps.db, jobId).catch((err: unknown) => deps.log.warn({ jobId, err }, 'could not drop the stage of a deleted job'));
    await deps.cache?.forget(jobId);
  }
}

/**
 * Deletes jobs in a transaction: their rows (with records, row errors and idempotency keys),
 * then their uploads and cache keys. Each key is marked just before the delete commits, so
 * from then until the tombstone replaces the mark (in removeTraces) the status URL reads the
 * database: no reader is shown a job after the database has stopped showing it. `select`
 * returns the ids to delete, or null to delete nothing.
 */
async function removeJobs(deps: RemovalDeps, select: (tx: Queryable) => Promise<string[] | null>): Promise<string[] | null> {
  let pending: PendingChange[] = [];
  let deleted: string[] | null;
  try {
    deleted = await deps.db.transaction(async (tx) => {
      const ids = await select(tx);
      if (!ids || ids.length === 0) return ids;
      const gone = await deleteJobs(tx, ids);
      const { cache } = deps;
      if (cache) pending = await Promise.all(gone.map((id) => cache.changing(id)));
      return gone;
    });
  } catch (err) {
    await Promise.all(pending.map((change) => change.failed())); // set only if the COMMIT itself failed
    throw err;
  }
  if (deleted) await removeTraces(deps, deleted);
  return deleted;
}

/** Deletes one job, its upload and its cache key; false if there was no such job. */
export async function removeJob(deps: RemovalDeps, jobId: string): Promise<boolean> {
  const deleted = await removeJobs(deps, async (tx) => {
    await limitLockWait(tx); // asked by an API client: never left waiting on a worker's lock
    return [jobId];
  });
  return (deleted?.length ?? 0) > 0;
}

const SWEEP_BATCH = 200; // jobs per transaction: a sweep never holds a long transaction

export interface RetentionOptions extends RemovalDeps {
  /** Finished jobs older than this are deleted; 0 keeps them forever. */
  retentionDays: number;
  intervalMs: number;
  /** Partial uploads untouched for this long are removed (see UploadStore.sweep). */
  partialMaxAgeMs: number;
}

/**
 * One pass: deletes finished jobs older than the retention, SWEEP_BATCH at a time, and
 * idempotency keys older than 24 hours. Returns how many jobs it deleted.
 */
export async function sweepOnce(options: RetentionOptions, signal?: AbortSignal): Promise<number> {
  let total = 0;
  for (;;) {
    const deleted = await removeJobs(options, async (tx) => {
      if (!(await tryTransactionLock(tx, LOCK_KEYS.retention))) return null;
      await deleteExpiredKeys(tx, SWEEP_BATCH * 10);
      await deleteOrphanDeliveries(tx);
      if (options.retentionDays <= 0) return [];
      return listExpiredJobIds(tx, options.retentionDays, SWEEP_BATCH);
    });
    if (!deleted) return total; // another process is sweeping
    total += deleted.length;
    if (deleted.length < SWEEP_BATCH || signal?.aborted) return total;
  }
}

export function startRetention(options: RetentionOptions): { close(): Promise<void> } {
  const stop = new AbortController();
  let running: Promise<unknown> | undefined;
  const pass = () => {
    if (running) return;
    running = sweepOnce(options, stop.signal)
      .then((count) => count > 0 && options.log.info({ count, retentionDays: options.retentionDays }, 'retention deleted finished jobs'))
      .then(() => options.uploads.sweep(options.partialMaxAgeMs))
      .then((count) => count > 0 && options.log.info({ count }, 'removed partial uploads left by a process that stopped mid-upload'))
      .then(() => dropOrphanStages(options.db))
      .then((count) => count > 0 && options.log.info({ count }, 'dropped the stages of jobs that ended without dropping them'))
      .catch((err: unknown) => options.log.warn({ err: (err as Error).message }, 'retention pass failed'))
      .finally(() => (running = undefined));
  };
  pass(); // at start too: what a crash left behind goes at once
  const timer = setInterval(pass, options.intervalMs);
  timer.unref();
  return {
    async close() {
      stop.abort();
      clearInterval(timer);
      await running;
    },
  };
}
