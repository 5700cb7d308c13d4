import { existsSync } from 'node:fs';
import type { FastifyBaseLogger } from 'fastify';
import { CheckpointConflictError, incrementProgress, markCompleted, markFailed, markRunning, releaseAttempt, type Batch, type Tracker } from '../jobs/tracking.js';
import { IngestError } from './errors.js';
import { readRecords, type ReadProgress } from './parse.js';
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
  const checkpoint = job.records_processed + job.records_failed; // input position to resume at
  if (checkpoint > 0) log.info({ jobId, checkpoint, attempt: job.attempts }, 'resuming job from its checkpoint');
  let failed = job.records_failed;
  const progress: ReadProgress = { bytes: 0 };
  const newBatch = (from: number): Batch => ({ from, records: [], errors: [], bytesProcessed: 0 });
  let batch = newBatch(checkpoint);
  const commit = async (done: Batch) => {
    try {
      await incrementProgress(tracker, jobId, done);
    } catch (err) {
      if (!isDataError(err)) throw err;
      const last = done.from + done.records.length + done.errors.length - 1;
      throw new IngestError(`records ${done.from}–${last} could not be stored: ${(err as Error).message}`);
    }
  };
  // One batch is committed while the next is parsed: PostgreSQL loads on one core while
  // Node parses on the other. Batches still commit one at a time, in order.
  let inFlight: Promise<void> | undefined;
  let position = 0;
  try {
    for await (const record of readRecords(path, job.format, progress)) {
      const recordNo = position++;
      if (recordNo < checkpoint) continue; // committed by an earlier run
      // Parsing runs in microtasks, which starve I/O: let the socket carrying the batch in
      // flight drain now and then, so PostgreSQL loads while Node parses.
      if ((recordNo & 255) === 0 && inFlight) await new Promise<void>((resolve) => setImmediate(resolve));
      if (record.error === undefined) batch.records.push({ recordNo, data: record.data });
      else {
        batch.errors.push({ recordNo, line: record.line, message: record.error, excerpt: record.excerpt });
        if (++failed > job.max_errors) {
          // Commit what came before it, and the bad row itself, then fail the job there.
          await inFlight;
          batch.bytesProcessed = progress.bytes;
          await commit(batch);
          const limit = job.max_errors === 0 ? '' : ` (more than max_errors=${job.max_errors} bad rows)`;
          throw new IngestError(`${record.error}${limit}`);
        }
      }
      if (batch.records.length + batch.errors.length >= deps.batchSize) {
        await inFlight;
        // PGlite runs queries on this thread: let requests and events in between batches.
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (signal.aborted) {
          await releaseAttempt(tracker, jobId);
          return 'stopped';
        }
        batch.bytesProcessed = progress.bytes;
        inFlight = commit(batch);
        inFlight.catch(() => {}); // awaited (and thrown) before the next batch
        batch = newBatch(position);
      }
    }
    await inFlight;
    batch.bytesProcessed = progress.bytes;
    await commit(batch); // also when empty: bytes_processed reaches bytes_total
  } catch (err) {
    await inFlight?.catch(() => {}); // never leave a commit running behind a failure
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
