import { existsSync } from 'node:fs';
import type { FastifyBaseLogger } from 'fastify';
import { CheckpointConflictError, incrementProgress, markCompleted, markFailed, markRunning, releaseAttempt, type Tracker } from '../jobs/tracking.js';
import { IngestError } from './errors.js';
import { readRecords } from './parse.js';
import { uploadPath } from './uploads.js';

export interface PipelineDeps {
  tracker: Tracker;
  uploadDir: string;
  batchSize: number;
  /** Claims allowed before a job that keeps stopping its workers is failed. */
  maxAttempts: number;
  /**
   * A running job is claimed only if its heartbeat is older than this: 0 in-process (where a
   * running row can only be left by a dead process), the queue's lock time with BullMQ.
   */
  claimStaleAfterMs: number;
  log: FastifyBaseLogger;
}

export type RunOutcome = 'completed' | 'failed' | 'skipped' | 'stopped';

// SQLSTATE class 22 (data exception), e.g. a string PostgreSQL's jsonb cannot hold.
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('22');
}

/**
 * Runs one job from its checkpoint to a terminal state: parse the stored upload, skip the
 * records already committed, commit the rest batch by batch. A bad input fails the job with
 * a message saying where; an abort (shutdown) stops at a batch boundary and leaves the job
 * `running` at its checkpoint for the next worker; any other error is thrown to the caller,
 * which decides whether to retry.
 */
export async function runJob(deps: PipelineDeps, jobId: string, signal: AbortSignal): Promise<RunOutcome> {
  const { tracker, log } = deps;
  const job = await markRunning(tracker, jobId, deps.claimStaleAfterMs);
  if (!job) return 'skipped'; // deleted, finished, or held by a live worker
  if (job.attempts > deps.maxAttempts) {
    await markFailed(
      tracker,
      jobId,
      `gave up after ${deps.maxAttempts} attempts: each time, the worker ingesting this job stopped before finishing ` +
        `(it crashed, was killed or ran out of memory); ${job.records_processed} records were committed`,
    );
    return 'failed';
  }
  const path = uploadPath(deps.uploadDir, jobId);
  if (!existsSync(path)) {
    await markFailed(tracker, jobId, 'the stored upload is missing (was UPLOAD_DIR changed or cleaned?)');
    return 'failed';
  }
  let checkpoint = job.records_processed;
  if (checkpoint > 0) log.info({ jobId, checkpoint, attempt: job.attempts }, 'resuming job from its checkpoint');
  let seen = 0;
  let batch: object[] = [];
  const commit = async () => {
    try {
      checkpoint = (await incrementProgress(tracker, jobId, checkpoint, batch)).records_processed;
    } catch (err) {
      if (!isDataError(err)) throw err;
      const last = checkpoint + batch.length - 1;
      throw new IngestError(`records ${checkpoint}–${last} could not be stored: ${(err as Error).message}`);
    }
    batch = [];
  };
  try {
    for await (const record of readRecords(path, job.format)) {
      if (seen++ < checkpoint) continue; // committed by an earlier run
      batch.push(record.data);
      if (batch.length >= deps.batchSize) {
        await commit();
        // PGlite runs queries on this thread: let requests and events in between batches.
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (signal.aborted) {
          await releaseAttempt(tracker, jobId);
          return 'stopped';
        }
      }
    }
    if (batch.length > 0) await commit();
  } catch (err) {
    if (err instanceof CheckpointConflictError) {
      log.warn({ jobId }, err.message);
      return 'skipped';
    }
    if (!(err instanceof IngestError)) throw err;
    // The records before the bad one stay committed and counted; the job says where it broke.
    await markFailed(tracker, jobId, err.message);
    return 'failed';
  }
  if (!(await markCompleted(tracker, jobId))) return 'skipped';
  return 'completed';
}
