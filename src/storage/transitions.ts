/**
 * The statements that change a job: one function per statement. Each UPDATE is guarded in its
 * WHERE clause, so an illegal or repeated transition matches no row and returns null; each
 * bumps `version`. They run inside the transactions of jobs/tracking.ts, which decides what a
 * change means and who is told about it. Times are clock_timestamp(), when the statement runs:
 * NOW() is when its transaction began, which for a completing job is before its publish.
 */
import type { ReadOptions } from '../formats/parse.js';
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
     SET status = 'running', phase = 'reading', started_at = COALESCE(started_at, clock_timestamp()), heartbeat_at = clock_timestamp(),
         attempts = attempts + 1, version = version + 1
     WHERE job_id = $1 AND (status = 'queued' OR (status = 'running' AND ${STALE_HEARTBEAT('$2')}))
     RETURNING ${JOB_COLUMNS}`,
    [jobId, staleAfterMs],
  );
}

/**
 * A running job's heartbeat, beaten while its worker waits on its source between batches (a
 * slow URL or Jira page would otherwise look like a dead worker, and another would take the
 * job up while this one still runs it). Answers whether the job is still running. $1 job_id
 */
export async function updateHeartbeat(db: Queryable, jobId: string): Promise<boolean> {
  const result = await db.query(`UPDATE ingest_jobs SET heartbeat_at = clock_timestamp() WHERE job_id = $1 AND status = 'running'`, [
    jobId,
  ]);
  return result.rowCount > 0;
}

/**
 * A canceled job's bytes read, as far as its worker got before it heard the cancel (its last
 * batch was not committed, so the counter stood where the one before left it). $1 job_id, $2 bytes
 */
export function updateCanceledBytes(tx: Queryable, jobId: string, bytes: number): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs SET bytes_processed = $2, version = version + 1
     WHERE job_id = $1 AND status = 'canceled' AND bytes_processed < $2
     RETURNING ${JOB_COLUMNS}`,
    [jobId, bytes],
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
  /** What the loader has learnt of the input by the batch's end (JSON), kept for a resumed run. */
  loadState: string;
  /** How the file is being read (a CSV's dialect, JSON), once the reader has looked at it: a resumed run reads the same way. */
  dialect?: string;
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
         bytes_processed = GREATEST(bytes_processed, $4), load_state = $6::jsonb, dialect = COALESCE($7::json, dialect),
         heartbeat_at = clock_timestamp(), version = version + 1
     WHERE job_id = $1 AND status = 'running' AND records_processed + records_failed = $5
     RETURNING ${JOB_COLUMNS}`,
    [jobId, progress.records, progress.errors, progress.bytesProcessed, progress.from, progress.loadState, progress.dialect ?? null],
  );
}

/**
 * How far a fast-path load has read (it commits no batch, its COPY commits with the job): the
 * counters and the heartbeat. A run that dies leaves records_processed above its empty stage's
 * count, so the next run starts the job over. $1 job_id, $2 records read, $3 bytes read, $4 the dialect (JSON)
 */
export function updateReading(tx: Queryable, jobId: string, records: number, bytes: number, dialect: string): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs SET records_processed = GREATEST(records_processed, $2), bytes_processed = GREATEST(bytes_processed, $3),
         dialect = $4::json, heartbeat_at = clock_timestamp(), version = version + 1
     WHERE job_id = $1 AND status = 'running'
     RETURNING ${JOB_COLUMNS}`,
    [jobId, records, bytes, dialect],
  );
}

/** A running job begins to publish its rows (shown as its phase while the publish runs). $1 job_id */
export function updatePublishing(tx: Queryable, jobId: string): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs SET phase = 'publishing', version = version + 1
     WHERE job_id = $1 AND status = 'running'
     RETURNING ${JOB_COLUMNS}`,
    [jobId],
  );
}

/** Locks a running job's row for its completing transaction; false when it is no longer running. $1 job_id */
export async function lockRunning(tx: Queryable, jobId: string): Promise<boolean> {
  const { rows } = await tx.query(`SELECT 1 FROM ingest_jobs WHERE job_id = $1 AND status = 'running' FOR UPDATE`, [jobId]);
  return rows.length === 1;
}

/** What a completing job says of how it read its input. */
export interface ReadSummary {
  /** The final dialect (JSON), or null to keep what the batches wrote. */
  dialect: string | null;
  warnings: string[];
  /** A fast-path load, which commits no batch: the records and bytes it read. */
  copied?: { records: number; bytes: number };
}

/**
 * running → completed, with what it did to its dataset and how it read its input.
 * $1 job_id, $2 rows inserted, $3 rows updated, $4 dialect (JSON) or null, $5 warnings (none: NULL),
 * $6 and $7 the records and bytes read (null: as the batches counted them)
 */
export function updateCompleted(
  tx: Queryable,
  jobId: string,
  rows: { inserted: number; updated: number } | null,
  read: ReadSummary = { dialect: null, warnings: [] },
): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs SET status = 'completed', phase = NULL, completed_at = clock_timestamp(), rows_inserted = $2, rows_updated = $3, load_state = NULL,
         dialect = COALESCE($4::json, dialect), warnings = $5::text[], version = version + 1,
         records_processed = COALESCE($6, records_processed), bytes_processed = COALESCE($7, bytes_processed)
     WHERE job_id = $1 AND status = 'running'
     RETURNING ${JOB_COLUMNS}`,
    [
      jobId,
      rows?.inserted ?? null,
      rows?.updated ?? null,
      read.dialect,
      read.warnings.length > 0 ? read.warnings : null,
      read.copied?.records ?? null,
      read.copied?.bytes ?? null,
    ],
  );
}

/**
 * A running job started over from its first record: its stage was lost (a PostgreSQL crash
 * empties unlogged tables) or no longer matches its checkpoint. $1 job_id
 */
export function updateRestarted(tx: Queryable, jobId: string): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs SET records_processed = 0, records_failed = 0, bytes_processed = 0, load_state = NULL, dialect = NULL, phase = 'reading', version = version + 1
     WHERE job_id = $1 AND status = 'running'
     RETURNING ${JOB_COLUMNS}`,
    [jobId],
  );
}

/** What a job's loader had learnt, the types its submit declared, how its file is read. $1 job_id */
export async function findLoadState(
  tx: Queryable,
  jobId: string,
): Promise<{ load_state: unknown; declared_types: Record<string, string> | null; read_options: ReadOptions | null } | undefined> {
  const { rows } = await tx.query<{ load_state: unknown; declared_types: Record<string, string> | null; read_options: ReadOptions | null }>(
    'SELECT load_state, declared_types, read_options FROM ingest_jobs WHERE job_id = $1',
    [jobId],
  );
  return rows[0];
}

/** queued | running → failed, with the reason. $1 job_id, $2 error */
export function updateFailed(tx: Queryable, jobId: string, error: string): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs SET status = 'failed', phase = NULL, completed_at = clock_timestamp(), error = $2, version = version + 1
     WHERE job_id = $1 AND status IN ('queued', 'running')
     RETURNING ${JOB_COLUMNS}`,
    [jobId, error],
  );
}

/** queued | running → canceled. $1 job_id */
export function updateCanceled(tx: Queryable, jobId: string): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs SET status = 'canceled', phase = NULL, completed_at = clock_timestamp(), version = version + 1
     WHERE job_id = $1 AND status IN ('queued', 'running')
     RETURNING ${JOB_COLUMNS}`,
    [jobId],
  );
}

/**
 * failed | canceled → queued with its counters reset; `attempts` keeps counting and
 * attempts_before_retry remembers where this run's count starts; a new encoding joins its read options.
 * $1 job_id, $2 max_errors or null, $3 encoding or null
 */
export function updateRequeued(
  tx: Queryable,
  jobId: string,
  maxErrors: number | null,
  encoding: string | null = null,
): Promise<JobRow | null> {
  return one(
    tx,
    `UPDATE ingest_jobs
     SET status = 'queued', phase = NULL, started_at = NULL, completed_at = NULL, heartbeat_at = NULL, error = NULL,
         records_processed = 0, records_failed = 0, bytes_processed = 0, load_state = NULL, rows_inserted = NULL, rows_updated = NULL,
         dialect = NULL, warnings = NULL,
         max_errors = COALESCE($2, max_errors), attempts_before_retry = attempts, version = version + 1,
         read_options = CASE WHEN $3::text IS NULL THEN read_options ELSE COALESCE(read_options, '{}') || jsonb_build_object('encoding', $3::text) END
     WHERE job_id = $1 AND status IN ('failed', 'canceled')
     RETURNING ${JOB_COLUMNS}`,
    [jobId, maxErrors, encoding],
  );
}

/** A job's row errors, gone (a retry starts from a clean slate). $1 job_id */
export async function deleteRowErrors(tx: Queryable, jobId: string): Promise<void> {
  await tx.query('DELETE FROM ingest_errors WHERE job_id = $1', [jobId]);
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
