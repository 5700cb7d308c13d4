/**
 * The job tracking helpers: the only code that changes a job's status or counters.
 * Each transition is guarded in its WHERE clause, so an illegal or repeated transition
 * changes no row and the caller can tell (null / false) instead of corrupting state.
 * Every change bumps `version` and, after its commit, is handed to `changed` (which
 * refreshes the status cache and publishes the live event).
 */
import type { Db } from '../storage/db.js';
import { JOB_COLUMNS, type JobRow } from '../storage/jobs.js';

export interface Tracker {
  db: Db;
  /** Called after each committed change, with the row as committed. Must not throw. */
  changed(row: JobRow): Promise<void>;
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
 * queued → running, counting the attempt. A job already `running` (its worker died or was
 * stopped) is claimed again as it is, keeping started_at and records_processed, which is
 * where the work resumes. Returns null when the job is gone or already finished.
 * $1 job_id
 */
export function markRunning(t: Tracker, jobId: string): Promise<JobRow | null> {
  return update(
    t,
    `UPDATE ingest_jobs
     SET status = 'running', started_at = COALESCE(started_at, NOW()), attempts = attempts + 1, version = version + 1
     WHERE job_id = $1 AND status IN ('queued', 'running')
     RETURNING ${JOB_COLUMNS}`,
    [jobId],
  );
}

/**
 * A worker stopping cleanly (shutdown) gives its attempt back: only crashes count towards
 * MAX_JOB_ATTEMPTS. No version bump: nothing a client sees has changed. $1 job_id
 */
export async function releaseAttempt(t: Tracker, jobId: string): Promise<void> {
  await t.db.query(`UPDATE ingest_jobs SET attempts = attempts - 1 WHERE job_id = $1 AND status = 'running' AND attempts > 0`, [jobId]);
}

/**
 * Commits one batch: its records and the new records_processed, in one transaction.
 * `from` is the checkpoint the batch starts at; if the row is not running at exactly that
 * checkpoint, nothing is written and CheckpointConflictError is thrown. Record numbers are
 * from, from + 1, ... in file order. Returns the row as committed.
 */
export async function incrementProgress(t: Tracker, jobId: string, from: number, records: readonly object[]): Promise<JobRow> {
  const row = await t.db.transaction(async (tx) => {
    // $1 job_id, $2 batch size, $3 expected checkpoint. Taking the row lock first serialises
    // two workers that both believe they own the job.
    const { rows } = await tx.query<JobRow>(
      `UPDATE ingest_jobs SET records_processed = records_processed + $2, version = version + 1
       WHERE job_id = $1 AND status = 'running' AND records_processed = $3
       RETURNING ${JOB_COLUMNS}`,
      [jobId, records.length, from],
    );
    if (rows.length !== 1) throw new CheckpointConflictError(jobId, from);
    await tx.copyFrom('COPY ingest_records (job_id, record_no, data) FROM STDIN', copyRows(jobId, from, records));
    return rows[0]!;
  });
  await t.changed(row);
  return row;
}

/**
 * The batch in COPY text format: job_id, record_no, data. JSON.stringify escapes every
 * control character inside strings, so the only character COPY needs escaped is '\\'.
 */
function copyRows(jobId: string, from: number, records: readonly object[]): string {
  let text = '';
  for (let i = 0; i < records.length; i++) {
    text += `${jobId}\t${from + i}\t${JSON.stringify(records[i]).replaceAll('\\', '\\\\')}\n`;
  }
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
