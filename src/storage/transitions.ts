/**
 * The statements that change a job: one function per statement. Each UPDATE is guarded in its
 * WHERE clause, so an illegal or repeated transition matches no row and returns null; each
 * bumps `version`. They run inside the transactions of jobs/tracking.ts, which decides what a
 * change means and who is told about it.
 */
import type { Queryable } from './db.js';
import { JOB_COLUMNS, STALE_HEARTBEAT, type JobRow } from './jobs.js';

async function one(tx: Queryable, sql: string, params: unknown[]): Promise<JobRow | null> {
  return (await tx.query<JobRow>(sql, params)).rows[0] ?? null;
}

/**
 * queued → running, counting the attempt; or a running job claimed again as it is (keeping
 * started_at and records_processed) when its heartbeat is stale. $1 job_id, $2 staleAfterMs
 */
export function updateClaimed(tx: Queryable, jobId: string, staleAfterMs: number): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs
     SET status = 'running', started_at = COALESCE(started_at, NOW()), heartbeat_at = NOW(),
         attempts = attempts + 1, version = version + 1
     WHERE job_id = $1 AND (status = 'queued' OR (status = 'running' AND ${STALE_HEARTBEAT('$2')}))
     RETURNING ${JOB_COLUMNS}`,
    [jobId, staleAfterMs],
  );
}

/** A running job's attempt given back and its heartbeat cleared. $1 job_id */
export function updateReleased(tx: Queryable, jobId: string): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs SET attempts = GREATEST(attempts - 1, 0), heartbeat_at = NULL, version = version + 1
     WHERE job_id = $1 AND status = 'running'
     RETURNING ${JOB_COLUMNS}`,
    [jobId],
  );
}

export interface Progress {
  records: number;
  errors: number;
  bytesProcessed: number;
  /** The checkpoint the batch continues from: records_processed + records_failed must equal it. */
  from: number;
}

/**
 * A batch's counters, if the job is running at the batch's checkpoint. The row lock serialises
 * two workers that both believe they own the job; the loser matches no row.
 * $1 job_id, $2 records, $3 errors, $4 bytes read, $5 expected checkpoint
 */
export function updateProgress(tx: Queryable, jobId: string, progress: Progress): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs
     SET records_processed = records_processed + $2, records_failed = records_failed + $3,
         bytes_processed = GREATEST(bytes_processed, $4), heartbeat_at = NOW(), version = version + 1
     WHERE job_id = $1 AND status = 'running' AND records_processed + records_failed = $5
     RETURNING ${JOB_COLUMNS}`,
    [jobId, progress.records, progress.errors, progress.bytesProcessed, progress.from],
  );
}

/** running → completed. $1 job_id */
export function updateCompleted(tx: Queryable, jobId: string): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs SET status = 'completed', completed_at = NOW(), version = version + 1
     WHERE job_id = $1 AND status = 'running'
     RETURNING ${JOB_COLUMNS}`,
    [jobId],
  );
}

/** queued | running → failed, with the reason. $1 job_id, $2 error */
export function updateFailed(tx: Queryable, jobId: string, error: string): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs SET status = 'failed', completed_at = NOW(), error = $2, version = version + 1
     WHERE job_id = $1 AND status IN ('queued', 'running')
     RETURNING ${JOB_COLUMNS}`,
    [jobId, error],
  );
}

/** queued | running → canceled. $1 job_id */
export function updateCanceled(tx: Queryable, jobId: string): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs SET status = 'canceled', completed_at = NOW(), version = version + 1
     WHERE job_id = $1 AND status IN ('queued', 'running')
     RETURNING ${JOB_COLUMNS}`,
    [jobId],
  );
}

/**
 * failed | canceled → queued with its counters reset; `attempts` keeps counting and
 * attempts_before_retry remembers where this run's count starts. $1 job_id, $2 max_errors or null
 */
export function updateRequeued(tx: Queryable, jobId: string, maxErrors: number | null): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs
     SET status = 'queued', started_at = NULL, completed_at = NULL, heartbeat_at = NULL, error = NULL,
         records_processed = 0, records_failed = 0, bytes_processed = 0,
         max_errors = COALESCE($2, max_errors), attempts_before_retry = attempts, version = version + 1
     WHERE job_id = $1 AND status IN ('failed', 'canceled')
     RETURNING ${JOB_COLUMNS}`,
    [jobId, maxErrors],
  );
}

/** A job's records and row errors, gone (a retry starts from a clean slate). $1 job_id */
export async function deleteJobData(tx: Queryable, jobId: string): Promise<void> {
  await tx.query('DELETE FROM ingest_records WHERE job_id = $1', [jobId]);
  await tx.query('DELETE FROM ingest_errors WHERE job_id = $1', [jobId]);
}

/**
 * Copies records (each as JSON text) with COPY. JSON.stringify escapes every control
 * character inside strings, so the only character COPY's text format needs escaped is '\\'.
 */
export async function copyRecords(tx: Queryable, jobId: string, records: { recordNo: number; json: string }[]): Promise<void> {
  let text = '';
  for (const { recordNo, json } of records) text += `${jobId}\t${recordNo}\t${json.replaceAll('\\', '\\\\')}\n`;
  await tx.copyFrom('COPY ingest_records (job_id, record_no, data) FROM STDIN', text);
}

export interface RowError {
  recordNo: number;
  line: number;
  message: string;
  excerpt: string;
}

/** A batch's row errors in one statement. $1 job_id, $2 the errors as a JSON array */
export async function insertRowErrors(tx: Queryable, jobId: string, errors: RowError[]): Promise<void> {
  await tx.query(
    `INSERT INTO ingest_errors (job_id, record_no, line, message, excerpt)
     SELECT $1, e.record_no, e.line, e.message, e.excerpt
     FROM jsonb_to_recordset($2::jsonb) AS e(record_no INTEGER, line INTEGER, message TEXT, excerpt TEXT)`,
    [jobId, JSON.stringify(errors.map((e) => ({ record_no: e.recordNo, line: e.line, message: e.message, excerpt: e.excerpt })))],
  );
}
