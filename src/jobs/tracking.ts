/**
 * The job tracking helpers: the only code that changes a job's status or counters.
 * Each transition is guarded in its WHERE clause, so an illegal or repeated transition
 * changes no row and the caller can tell (null / false) instead of corrupting state.
 * Every change bumps `version` and runs in a transaction (see `tracked`): once its guard has
 * matched the row and just before its COMMIT the tracker is told it is `changing` (the status
 * cache marks the key, so readers go to the database), and after the COMMIT how it went (the
 * cache gets the new payload and the live event is published).
 */
import type { StatusCache } from '../cache/status-cache.js';
import type { JobEvents } from '../events/job-events.js';
import type { Db, Queryable } from '../storage/db.js';
import { JOB_COLUMNS, payloadJson, type JobRow } from '../storage/jobs.js';

export interface Tracker {
  db: Db;
  /** Called just before a change to the job commits; the change it returns is told how that went. Must not throw. */
  changing(jobId: string): Promise<Change>;
}

/** A change about to commit. Exactly one of these is called, once. Neither throws. */
export interface Change {
  /** It committed: the row as committed. */
  committed(row: JobRow): Promise<void>;
  /** Its COMMIT failed, which leaves open whether it happened. */
  failed(): Promise<void>;
}

/** The tracker of a running Intake: each change is written through to the cache, then published. */
export function createTracker(db: Db, cache: StatusCache | undefined, events: JobEvents): Tracker {
  return {
    db,
    async changing(jobId) {
      const pending = await cache?.changing(jobId);
      return {
        async committed(row) {
          const payload = payloadJson(row);
          await pending?.stored(row.version, payload);
          await events.publish(row.job_id, payload);
        },
        failed: async () => pending?.failed(),
      };
    },
  };
}

const UNTOLD: Change = { committed: async () => {}, failed: async () => {} };

/** A tracker that tells nobody: for tools and tests that only need the database. */
export function quietTracker(db: Db): Tracker {
  return { db, changing: async () => UNTOLD };
}

/** Another process moved the job on (or holds its checkpoint); this one must let go. */
export class CheckpointConflictError extends Error {
  constructor(jobId: string, expected: number) {
    super(`job ${jobId} is no longer running at checkpoint ${expected}`);
    this.name = 'CheckpointConflictError';
  }
}

/**
 * Runs one change in a transaction: `apply` makes it and returns the row as changed, or null
 * when its guard matched no row (then nobody is told: nothing changed). The tracker is told
 * after `apply`, while the row is locked and before the COMMIT, so that no reader can see the
 * change in the database while the cache still answers the state before it.
 */
async function tracked(t: Tracker, jobId: string, apply: (tx: Queryable) => Promise<JobRow | null>): Promise<JobRow | null> {
  let change: Change | undefined;
  let row: JobRow | null;
  try {
    row = await t.db.transaction(async (tx) => {
      const changed = await apply(tx);
      if (changed) change = await t.changing(jobId);
      return changed;
    });
  } catch (err) {
    await change?.failed(); // set only if the COMMIT itself failed
    throw err;
  }
  if (row) await change!.committed(row);
  return row;
}

/** One guarded UPDATE … RETURNING as a tracked change. */
function update(t: Tracker, jobId: string, sql: string, params: unknown[]): Promise<JobRow | null> {
  return tracked(t, jobId, async (tx) => (await tx.query<JobRow>(sql, params)).rows[0] ?? null);
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
    jobId,
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
 * once instead of waiting for the heartbeat to go stale. `attempts` is part of what a client
 * sees, so this is a change like the others (a new version, cached, published). $1 job_id
 */
export async function releaseAttempt(t: Tracker, jobId: string): Promise<void> {
  await update(
    t,
    jobId,
    `UPDATE ingest_jobs SET attempts = GREATEST(attempts - 1, 0), heartbeat_at = NULL, version = version + 1
     WHERE job_id = $1 AND status = 'running'
     RETURNING ${JOB_COLUMNS}`,
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
  const row = await tracked(t, jobId, async (tx) => {
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
  return row!;
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
    jobId,
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
    jobId,
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
    jobId,
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
export function retryJob(t: Tracker, jobId: string, maxErrors: number | null): Promise<JobRow | null> {
  return tracked(t, jobId, async (tx) => {
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
}
