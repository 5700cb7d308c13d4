/**
 * The job tracking helpers: the only code that changes a job's status or counters.
 * Each transition is guarded in its WHERE clause, so an illegal or repeated transition
 * changes no row and the caller can tell (null / false) instead of corrupting state.
 */
import type { Db } from '../storage/db.js';
import { JOB_COLUMNS, type JobRow } from '../storage/jobs.js';

/** Another process moved the job on (or holds its checkpoint); this one must let go. */
export class CheckpointConflictError extends Error {
  constructor(jobId: string, expected: number) {
    super(`job ${jobId} is no longer running at checkpoint ${expected}`);
    this.name = 'CheckpointConflictError';
  }
}

/**
 * queued → running. A job already `running` (its process died) is claimed again as it is,
 * keeping started_at and records_processed, which is where the work resumes.
 * Returns null when the job is gone or already finished.
 * $1 job_id
 */
export async function markRunning(db: Db, jobId: string): Promise<JobRow | null> {
  const { rows } = await db.query<JobRow>(
    `UPDATE ingest_jobs
     SET status = 'running', started_at = COALESCE(started_at, NOW())
     WHERE job_id = $1 AND status IN ('queued', 'running')
     RETURNING ${JOB_COLUMNS}`,
    [jobId],
  );
  return rows[0] ?? null;
}

/**
 * Commits one batch: its records and the new records_processed, in one transaction.
 * `from` is the checkpoint the batch starts at; if the row is not running at exactly that
 * checkpoint, nothing is written and CheckpointConflictError is thrown. Record numbers are
 * from, from + 1, ... in file order. Returns the new checkpoint.
 */
export async function incrementProgress(db: Db, jobId: string, from: number, records: readonly object[]): Promise<number> {
  if (records.length === 0) return from;
  return db.transaction(async (tx) => {
    // $1 job_id, $2 batch size, $3 expected checkpoint. Taking the row lock first serialises
    // two workers that both believe they own the job.
    const { rowCount } = await tx.query(
      `UPDATE ingest_jobs SET records_processed = records_processed + $2
       WHERE job_id = $1 AND status = 'running' AND records_processed = $3`,
      [jobId, records.length, from],
    );
    if (rowCount !== 1) throw new CheckpointConflictError(jobId, from);
    // $1 job_id, $2 first record_no, $3 the batch as one JSON array
    await tx.query(
      `INSERT INTO ingest_records (job_id, record_no, data)
       SELECT $1, $2 + r.ord - 1, r.value
       FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS r(value, ord)`,
      [jobId, from, JSON.stringify(records)],
    );
    return from + records.length;
  });
}

/** running → completed. $1 job_id */
export async function markCompleted(db: Db, jobId: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE ingest_jobs SET status = 'completed', completed_at = NOW()
     WHERE job_id = $1 AND status = 'running'`,
    [jobId],
  );
  return rowCount === 1;
}

/** queued | running → failed, with the reason. $1 job_id, $2 error */
export async function markFailed(db: Db, jobId: string, error: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE ingest_jobs SET status = 'failed', completed_at = NOW(), error = $2
     WHERE job_id = $1 AND status IN ('queued', 'running')`,
    [jobId, error],
  );
  return rowCount === 1;
}
