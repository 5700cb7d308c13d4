import { existsSync } from 'node:fs';
import type { FastifyBaseLogger } from 'fastify';
import type { InputLimits } from '../config.js';
import { CheckpointConflictError, incrementProgress, markCompleted, markFailed, markRunning, releaseAttempt, type Batch, type Tracker } from '../jobs/tracking.js';
import type { Db } from '../storage/db.js';
import { IngestError } from './errors.js';
import { rowError, type RowProblem } from './record.js';
import { readRecords, type ReadProgress } from './parse.js';
import { uploadPath } from './uploads.js';

export interface PipelineDeps {
  db: Db;
  tracker: Tracker;
  uploadDir: string;
  batchSize: number;
  limits: InputLimits;
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

// JSON.stringify writes a surrogate as a \uD800–\uDFFF escape only when it is unpaired
// (pairs stay characters); an escape is one preceded by an even number of backslashes.
const LONE_SURROGATE = /(?:^|[^\\])(?:\\\\)*\\ud[89a-f][0-9a-f]{2}/i;

// Batches are also cut at this many characters of JSON, so that memory stays bounded when
// records are large (BATCH_SIZE records of MAX_RECORD_LENGTH each would not be).
const BATCH_MAX_CHARS = 32 * 1024 ** 2;

/**
 * A record's JSON text as PostgreSQL will store it, or a row error when it cannot be: nested
 * too deeply to serialise, or holding an unpaired surrogate (which jsonb rejects). A JSON
 * record is stored as written (numbers exactly as they are, never through a double), with
 * its line breaks and tabs, which valid JSON has only between tokens, made spaces.
 */
function storable(record: { data: Record<string, unknown>; raw?: string }, line: number, recordNo: number): string | RowProblem {
  let json: string;
  if (record.raw !== undefined) json = /[\t\n\r]/.test(record.raw) ? record.raw.replace(/[\t\n\r]/g, ' ') : record.raw;
  else {
    try {
      json = JSON.stringify(record.data);
    } catch {
      return rowError(line, `record ${recordNo} (line ${line}) is nested too deeply to store`, '');
    }
  }
  // Escaped surrogates: written as text, a pair is fine and only a lone one is not. Parsed,
  // a lone one stays lone, and JSON.stringify writes only lone ones as escapes.
  if (json.includes('\\ud') || json.includes('\\uD')) {
    let written = json;
    try {
      if (record.raw !== undefined) written = JSON.stringify(record.data);
    } catch {
      return rowError(line, `record ${recordNo} (line ${line}) is nested too deeply to store`, '');
    }
    if (LONE_SURROGATE.test(written)) {
      return rowError(line, `record ${recordNo} (line ${line}) contains an unpaired UTF-16 surrogate, which PostgreSQL cannot store`, json);
    }
  }
  return json;
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
  if (job.attempts - job.attempts_before_retry > deps.maxAttempts) {
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
  let batchChars = 0;
  const commit = async (done: Batch, after?: Promise<void>) => {
    try {
      await incrementProgress(tracker, jobId, done, after);
    } catch (err) {
      if (!isDataError(err)) throw err;
      const last = done.from + done.records.length + done.errors.length - 1;
      throw new IngestError(`records ${done.from}–${last} could not be stored: ${(err as Error).message}`);
    }
  };
  // Batches are committed while the next ones are parsed: PostgreSQL loads while Node parses.
  // With a PostgreSQL server two are in flight, on two connections: each copies its records
  // at once but moves the checkpoint only after the one before it has committed, so they
  // still commit one at a time, in order. (With one connection, as PGlite has: one at a time.)
  const depth = deps.db.connections > 1 ? 2 : 1;
  const window: Promise<void>[] = [];
  let inFlight: Promise<void> | undefined; // the latest commit: it settles after all before it
  let position = 0;
  try {
    for await (const record of readRecords(path, job.format, progress, deps.limits)) {
      const recordNo = position++;
      if (recordNo < checkpoint) continue; // committed by an earlier run
      // Parsing runs in microtasks, which starve I/O: let the socket carrying the batch in
      // flight drain now and then, so PostgreSQL loads while Node parses.
      if ((recordNo & 255) === 0 && inFlight) await new Promise<void>((resolve) => setImmediate(resolve));
      const item = record.error === undefined ? storable(record, record.line, recordNo) : record;
      if (typeof item === 'string') {
        batch.records.push({ recordNo, json: item });
        batchChars += item.length;
      } else {
        batch.errors.push({ recordNo, line: item.line, message: item.error, excerpt: item.excerpt });
        if (++failed > job.max_errors) {
          // Commit what came before it, and the bad row itself, then fail the job there.
          await inFlight;
          batch.bytesProcessed = progress.bytes;
          await commit(batch, inFlight);
          batch = newBatch(position);
          const limit = job.max_errors === 0 ? '' : ` (more than max_errors=${job.max_errors} bad rows)`;
          throw new IngestError(`${item.error}${limit}`);
        }
      }
      if (batch.records.length + batch.errors.length >= deps.batchSize || batchChars >= BATCH_MAX_CHARS) {
        if (window.length >= depth) await window.shift();
        // PGlite runs queries on this thread: let requests and events in between batches.
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (signal.aborted) {
          await inFlight;
          await releaseAttempt(tracker, jobId);
          return 'stopped';
        }
        batch.bytesProcessed = progress.bytes;
        inFlight = commit(batch, inFlight);
        inFlight.catch(() => {}); // awaited (and thrown) in turn
        window.push(inFlight);
        batch = newBatch(position);
        batchChars = 0;
      }
    }
    await inFlight;
    batch.bytesProcessed = progress.bytes;
    await commit(batch, inFlight); // also when empty: bytes_processed reaches bytes_total
  } catch (err) {
    const committed = await (inFlight ?? Promise.resolve()).then(
      () => true,
      () => false,
    ); // never leave a commit running behind a failure
    if (err instanceof CheckpointConflictError) {
      log.warn({ jobId }, err.message);
      return 'skipped';
    }
    if (!(err instanceof IngestError)) throw err;
    // The input broke off (a truncated file, an unclosed quote...): the good records read
    // before it are committed too, so what is kept does not depend on BATCH_SIZE.
    if (committed && batch.records.length + batch.errors.length > 0) {
      batch.bytesProcessed = progress.bytes;
      await commit(batch).catch((e: unknown) => log.warn({ jobId, err: e }, 'could not commit the records before a fatal error'));
    }
    await markFailed(tracker, jobId, err.message);
    return 'failed';
  }
  if (!(await markCompleted(tracker, jobId))) return 'skipped';
  return 'completed';
}
