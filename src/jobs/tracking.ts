/**
 * The job tracking helpers: the only code that changes a job's status or counters.
 * Each transition is guarded in its WHERE clause, so an illegal or repeated transition
 * changes no row and the caller can tell (null / false) instead of corrupting state.
 * Every change bumps `version` and, after its commit, is handed to `changed` (which
 * refreshes the status cache and publishes the live event).
 */
import type { StatusCache } from '../cache/status-cache.js';
import type { JobEvents } from '../events/job-events.js';
import type { Db } from '../storage/db.js';
import { JOB_COLUMNS, payloadJson, type JobRow } from '../storage/jobs.js';

export interface Tracker {
  db: Db;
  /** Called after each committed change, with the row as committed. Must not throw. */
  changed(row: JobRow): Promise<void>;
}

/** The tracker of a running Intake: each change is written through to the cache, then published. */
export function createTracker(db: Db, cache: StatusCache | undefined, events: JobEvents): Tracker {
  return {
    db,
    async changed(row) {
      const payload = payloadJson(row);
      await cache?.store(row.job_id, row.version, payload);
      await events.publish(row.job_id, payload);
    },
  };
}

/** A tracker that tells nobody: for tools and tests that only need the database. */
export function quietTracker(db: Db): Tracker {
  return { db, changed: async () => {} };
}

/** Another process moved the job on (or holds its checkpoint); this one must let go. */
export class CheckpointConflictError extends Error {
  constructor(jobId: string, expected: number) {
    super(`job ${jobId} is no longer running at checkpoint ${expected}`);
    this.name = 'CheckpointConflictError';
  }
}

async function update(t: Tracker, sql: string, params: unknown[]): Promise<JobRow | null> {
  const { rows } = await t.db.query<JobRow>(sql, params);
  const row = rows[0] ?? null;
  if (row) await t.changed(row);
  return row;
}

/**
 * queued → running, counting the attempt. A job already `running` is claimed again as it is,
 * keeping started_at and records_processed (where the work resumes), but only when its
 * heartbeat is older than `staleAfterMs`: a fresh one means its worker is alive (a duplicate
 * delivery, say after Redis was flushed), and a second claim would count a crash that did not
 * happen. Returns null when the job is gone, finished, or held by a live worker.
 * $1 job_id, $2 staleAfterMs
 */
export function markRunning(t: Tracker, jobId: string, staleAfterMs = 0): Promise<JobRow | null> {
  return update(
    t,
    `UPDATE ingest_jobs
     SET status = 'running', started_at = COALESCE(started_at, NOW()), heartbeat_at = NOW(),
         attempts = attempts + 1, version = version + 1
     WHERE job_id = $1 AND (status = 'queued'
       OR (status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < NOW() - make_interval(secs => $2 / 1000.0))))
     RETURNING ${JOB_COLUMNS}`,
    [jobId, staleAfterMs],
  );
}

/**
 * A worker stopping cleanly (shutdown) gives its attempt back: only crashes count towards
 * MAX_JOB_ATTEMPTS. It also clears the heartbeat, so the next worker may claim the job at
 * once instead of waiting for the heartbeat to go stale. No version bump: nothing a client
 * sees has changed. $1 job_id
 */
export async function releaseAttempt(t: Tracker, jobId: string): Promise<void> {
  await t.db.query(
    `UPDATE ingest_jobs SET attempts = GREATEST(attempts - 1, 0), heartbeat_at = NULL WHERE job_id = $1 AND status = 'running'`,
    [jobId],
  );
}

/** A run of consecutive input records: the good ones and the bad ones, by input position. */
export interface Batch {
  /** Input position of the batch's first record: the checkpoint it continues from. */
  from: number;
  /** Each record as JSON text (JSON.stringify of its data). */
  records: { recordNo: number; json: string }[];
  errors: { recordNo: number; line: number; message: string; excerpt: string }[];
  /** Bytes of the input read when the batch was cut. */
  bytesProcessed: number;
}

/**
 * Commits one batch: its records, its row errors, and the counters, in one transaction.
 * The checkpoint (records_processed + records_failed) must be exactly `batch.from`, and the
 * job running; otherwise nothing is written and CheckpointConflictError is thrown. `after`
 * is the previous batch's commit: the records are copied at once, but the checkpoint moves
 * only once that one has committed (and not at all if it failed). Returns the row as committed.
 */
export async function incrementProgress(t: Tracker, jobId: string, batch: Batch, after?: Promise<unknown>): Promise<JobRow> {
  const row = await t.db.transaction(async (tx) => {
    try {
      if (batch.records.length > 0) {
        await tx.copyFrom('COPY ingest_records (job_id, record_no, data) FROM STDIN', copyRows(jobId, batch.records));
      }
      if (batch.errors.length > 0) {
        // $1 job_id, $2 the errors as a JSON array
        await tx.query(
          `INSERT INTO ingest_errors (job_id, record_no, line, message, excerpt)
           SELECT $1, e.record_no, e.line, e.message, e.excerpt
           FROM jsonb_to_recordset($2::jsonb) AS e(record_no INTEGER, line INTEGER, message TEXT, excerpt TEXT)`,
          [jobId, JSON.stringify(batch.errors.map((e) => ({ record_no: e.recordNo, line: e.line, message: e.message, excerpt: e.excerpt })))],
        );
      }
    } catch (err) {
      // 23505: another worker holding the same checkpoint wrote these record numbers first;
      // 23503: the job row is gone (deleted). Either way this worker must let go.
      const code = (err as { code?: unknown }).code;
      if (code === '23505' || code === '23503') throw new CheckpointConflictError(jobId, batch.from);
      throw err;
    }
    await after;
    // $1 job_id, $2 records, $3 errors, $4 bytes read, $5 expected checkpoint. The row lock
    // serialises two workers that both believe they own the job; the loser changes nothing.
    const { rows } = await tx.query<JobRow>(
      `UPDATE ingest_jobs
       SET records_processed = records_processed + $2, records_failed = records_failed + $3,
           bytes_processed = GREATEST(bytes_processed, $4), heartbeat_at = NOW(), version = version + 1
       WHERE job_id = $1 AND status = 'running' AND records_processed + records_failed = $5
       RETURNING ${JOB_COLUMNS}`,
      [jobId, batch.records.length, batch.errors.length, batch.bytesProcessed, batch.from],
    );
    if (rows.length !== 1) throw new CheckpointConflictError(jobId, batch.from);
    return rows[0]!;
  });
  await t.changed(row);
  return row;
}

/**
 * Records in COPY text format: job_id, record_no, data. JSON.stringify escapes every control
 * character inside strings, so the only character COPY needs escaped is '\\'.
 */
function copyRows(jobId: string, records: Batch['records']): string {
  let text = '';
  for (const { recordNo, json } of records) text += `${jobId}\t${recordNo}\t${json.replaceAll('\\', '\\\\')}\n`;
  return text;
}

/** running → completed. $1 job_id */
export async function markCompleted(t: Tracker, jobId: string): Promise<boolean> {
  const row = await update(
    t,
    `UPDATE ingest_jobs SET status = 'completed', completed_at = NOW(), version = version + 1
     WHERE job_id = $1 AND status = 'running'
     RETURNING ${JOB_COLUMNS}`,
    [jobId],
  );
  return row !== null;
}

/** queued | running → failed, with the reason. $1 job_id, $2 error */
export async function markFailed(t: Tracker, jobId: string, error: string): Promise<boolean> {
  const row = await update(
    t,
    `UPDATE ingest_jobs SET status = 'failed', completed_at = NOW(), error = $2, version = version + 1
     WHERE job_id = $1 AND status IN ('queued', 'running')
     RETURNING ${JOB_COLUMNS}`,
    [jobId, error],
  );
  return row !== null;
}

/**
 * queued | running → canceled. A running job's worker is not interrupted: its next batch
 * commit finds the job no longer running (the guard in incrementProgress) and lets go, its
 * uncommitted batch rolled back, so what stays is exactly the records counted here.
 * Returns null when the job is gone or already finished. $1 job_id
 */
export function cancelJob(t: Tracker, jobId: string): Promise<JobRow | null> {
  return update(
    t,
    `UPDATE ingest_jobs SET status = 'canceled', completed_at = NOW(), version = version + 1
     WHERE job_id = $1 AND status IN ('queued', 'running')
     RETURNING ${JOB_COLUMNS}`,
    [jobId],
  );
}

/**
 * failed | canceled → queued, from a clean slate: the records and row errors of earlier runs
 * are deleted and the counters reset, so the job's result is always one whole run over its
 * stored upload. `attempts` keeps counting; MAX_JOB_ATTEMPTS counts again from here.
 * `maxErrors` replaces the job's max_errors when given. Returns null when the job is gone or
 * not failed or canceled. $1 job_id, $2 max_errors or null
 */
export async function retryJob(t: Tracker, jobId: string, maxErrors: number | null): Promise<JobRow | null> {
  const row = await t.db.transaction(async (tx) => {
    const { rows } = await tx.query<JobRow>(
      `UPDATE ingest_jobs
       SET status = 'queued', started_at = NULL, completed_at = NULL, heartbeat_at = NULL, error = NULL,
           records_processed = 0, records_failed = 0, bytes_processed = 0,
           max_errors = COALESCE($2, max_errors), attempts_before_retry = attempts, version = version + 1
       WHERE job_id = $1 AND status IN ('failed', 'canceled')
       RETURNING ${JOB_COLUMNS}`,
      [jobId, maxErrors],
    );
    if (rows.length === 0) return null;
    await tx.query('DELETE FROM ingest_records WHERE job_id = $1', [jobId]);
    await tx.query('DELETE FROM ingest_errors WHERE job_id = $1', [jobId]);
    return rows[0]!;
  });
  if (row) await t.changed(row);
  return row;
}
