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
      `UPDATE ingest_jobs SET records_processed = records_processed + $2, heartbeat_at = NOW(), version = version + 1
       WHERE job_id = $1 AND status = 'running' AND records_processed = $3
       RETURNING ${JOB_COLUMNS}`,
      [jobId, records.length, from],
    );
    if (rows.length !== 1) throw new CheckpointConflictError(jobId, from);
    // $1 job_id, $2 first record_no, $3 the batch as one JSON array
    await tx.query(
      `INSERT INTO ingest_records (job_id, record_no, data)
       SELECT $1, $2 + r.ord - 1, r.value
       FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS r(value, ord)`,
      [jobId, from, JSON.stringify(records)],
    );
    return rows[0]!;
  });
  await t.changed(row);
  return row;
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
