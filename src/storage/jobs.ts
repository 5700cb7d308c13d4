import type { LoadOptions } from '../datasets/options.js';
import { jobFields, type Format, type JobRow, type JobPayload, type JobStatus, type SourceType } from '../core/job.js';
import type { Queryable, TextRow } from './db.js';

/** A row of ingest_jobs as the queries below return it (JOB_COLUMNS), made from JOB_FIELDS. */
export type { JobRow } from '../core/job.js';

/** What a pulling job reads. */
export type JobSource = NonNullable<JobRow['source']>;

const FIELDS = jobFields();
const PAYLOAD = FIELDS.filter((field) => field.payload);

export const JOB_COLUMNS = FIELDS.map((field) => field.column).join(', ');

/**
 * A running job whose worker has shown no sign of life for longer than the parameter named (in
 * milliseconds): its heartbeat is older than that, or it has none. Claims and the reconciler
 * use this one condition.
 */
export const STALE_HEARTBEAT = (ms: string) => `(heartbeat_at IS NULL OR heartbeat_at < NOW() - make_interval(secs => ${ms} / 1000.0))`;

/** The job as the API shows it: the fields JOB_FIELDS marks payload, timestamps in ISO 8601. */
export function toPayload(row: JobRow): JobPayload {
  const payload: Record<string, unknown> = {};
  for (const { name, column } of PAYLOAD) {
    const value = row[column as keyof JobRow];
    payload[name] = value instanceof Date ? value.toISOString() : value;
  }
  return payload as JobPayload;
}

/**
 * The payload as sent: one serialisation for the database path, the cache and the event
 * stream, so a cached answer is byte for byte the uncached one.
 */
export function payloadJson(row: JobRow): string {
  return JSON.stringify(toPayload(row));
}

const quoted = (sql: string) => `'"' || ${sql} || '"'`;

/** A payload field's value (not null) as PostgreSQL writes it in JSON, by the field's schema. */
function valueSql({ name, column, schema }: (typeof PAYLOAD)[number]): string {
  if (schema.format === 'date-time') return quoted(`to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`);
  if (schema.format === 'uuid' || schema.enum) return quoted(column);
  if (schema.type === 'string') return `to_json(${column})::text`;
  if (schema.type === 'integer' || schema.type === 'boolean') return `${column}::text`;
  if (schema.type === 'array' && schema.items?.type === 'string') return `array_to_json(${column})::text`;
  // A json column (not jsonb) keeps the text Node wrote with JSON.stringify as it was written.
  if (schema.type === 'object') return `${column}::text`;
  throw new Error(`payload field ${name}: no SQL here writes its JSON as JSON.stringify does`);
}

/**
 * A job's payload JSON written by PostgreSQL, byte for byte what payloadJson writes (a test
 * holds them together): fields in toPayload's order; ids, enum labels and integers as their
 * text; the free-text columns escaped by to_json as JSON.stringify escapes them; timestamps in
 * UTC to the millisecond, truncated, as toISOString gives them. Plain concatenation: the API
 * process gets one string per job instead of a row's fields to parse and serialise (under load
 * the API process is what limits the status and list reads; the database has time to spare).
 */
const PAYLOAD_JSON_SQL = `'{' || ${PAYLOAD.map((field, i) => {
  const value = valueSql(field);
  return `'${i > 0 ? ',' : ''}"${field.name}":' || ${field.nullable ? `COALESCE(${value}, 'null')` : value}`;
}).join(' || ')} || '}'`;

export interface NewJob {
  jobId: string;
  sourceType: SourceType;
  fileName: string | null;
  format: Format;
  maxErrors: number;
  bytesTotal: number | null;
  load: LoadOptions;
  /** An import's URL. */
  sourceUrl?: string;
  /** What a pulling job reads (a Jira query). */
  source?: JobSource;
  /** The schedule that made it. */
  scheduleId?: string;
}

/** Inserts the `queued` row; committed before the job is dispatched. */
export async function insertJob(db: Queryable, job: NewJob): Promise<JobRow> {
  const { rows } = await db.query<JobRow>(
    `INSERT INTO ingest_jobs (job_id, source_type, file_name, format, status, max_errors, bytes_total, dataset, mode, merge_key, declared_types, widen, read_options, source_url, source, callback_url, schedule_id)
     VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
     RETURNING ${JOB_COLUMNS}`,
    [
      job.jobId,
      job.sourceType,
      job.fileName,
      job.format,
      job.maxErrors,
      job.bytesTotal,
      job.load.dataset,
      job.load.mode,
      job.load.mode === 'merge' ? job.load.key : null,
      Object.keys(job.load.types).length > 0 ? JSON.stringify(job.load.types) : null,
      job.load.widen,
      Object.keys(job.load.read).length > 0 ? JSON.stringify(job.load.read) : null,
      job.sourceUrl ?? null,
      job.source ? JSON.stringify(job.source) : null,
      job.load.callbackUrl ?? null,
      job.scheduleId ?? null,
    ],
  );
  return rows[0]!;
}

export interface PayloadText {
  payload: string;
  version: number;
}

/**
 * Jobs' payload JSON as PostgreSQL writes it (PAYLOAD_JSON_SQL), and their versions, by job
 * id: the status URL's database path, with no row to parse and nothing to serialise. One
 * statement for any number of ids (the status route batches the reads that arrive together).
 */
export async function findPayloads(db: Queryable, jobIds: string[]): Promise<Map<string, PayloadText>> {
  const rows = await db.queryText(`SELECT job_id, ${PAYLOAD_JSON_SQL}, version FROM ingest_jobs WHERE job_id = ANY($1::uuid[])`, [jobIds]);
  return new Map(rows.map(([jobId, payload, version]) => [jobId!, { payload: payload!, version: Number(version) }]));
}

export async function findPayload(db: Queryable, jobId: string): Promise<PayloadText | undefined> {
  return (await findPayloads(db, [jobId])).get(jobId.toLowerCase());
}

/** $1 job_id */
export async function findJob(db: Queryable, jobId: string): Promise<JobRow | undefined> {
  const { rows } = await db.query<JobRow>(`SELECT ${JOB_COLUMNS} FROM ingest_jobs WHERE job_id = $1`, [jobId]);
  return rows[0];
}

export interface ListOptions {
  status?: JobStatus;
  sourceType?: SourceType;
  dataset?: string;
  /** submitted_at >= this (ISO 8601). */
  submittedAfter?: string;
  /** submitted_at < this (ISO 8601). */
  submittedBefore?: string;
  /** Rows after this position (keyset): the last row of the previous page. */
  after?: { submittedAt: string; jobId: string };
  limit: number;
  offset: number;
}

/** A job of a list page: its payload JSON as the status URL writes it, and its place for the next cursor. */
export interface ListedJob {
  payload: string;
  /** submitted_at in UTC to the microsecond, whatever the DateStyle. */
  submittedAt: string;
  jobId: string;
}

const LIST_COLUMNS = `${PAYLOAD_JSON_SQL}, to_char(submitted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), job_id`;
const listed = (rows: TextRow[]): ListedJob[] =>
  rows.map(([payload, submittedAt, jobId]) => ({ payload: payload!, submittedAt: submittedAt!, jobId: jobId! }));

/**
 * The WHERE clause of a list and its parameters, from the filters given.
 */
function listFilter(options: Omit<ListOptions, 'limit' | 'offset'>): { where: string; params: unknown[] } {
  const conditions: string[] = [];
  const params: unknown[] = [];
  const param = (value: unknown) => `$${params.push(value)}`;
  if (options.status) conditions.push(`status = ${param(options.status)}::ingest_job_status`);
  if (options.sourceType) conditions.push(`source_type = ${param(options.sourceType)}`);
  if (options.dataset) conditions.push(`dataset = ${param(options.dataset)}`);
  if (options.submittedAfter) conditions.push(`submitted_at >= ${param(options.submittedAfter)}::timestamptz`);
  if (options.submittedBefore) conditions.push(`submitted_at < ${param(options.submittedBefore)}::timestamptz`);
  if (options.after) {
    const at = `${param(options.after.submittedAt)}::timestamp AT TIME ZONE 'UTC'`;
    conditions.push(`(submitted_at, job_id) < (${at}, ${param(options.after.jobId)}::uuid)`);
  }
  return { where: conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '', params };
}

const LIST_ORDER = 'ORDER BY submitted_at DESC, job_id DESC';

function checkLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, got ${limit}`);
}

/**
 * Newest first, by (submitted_at, job_id): job_id breaks ties so pages never overlap or skip a
 * row. With `after` (keyset) a page costs the same at any depth: the indexes on
 * (submitted_at DESC, job_id DESC) and (status, submitted_at DESC, job_id DESC) start there.
 */
export async function listJobs(db: Queryable, options: ListOptions): Promise<ListedJob[]> {
  const { where, params } = listFilter(options);
  checkLimit(options.limit);
  // LIMIT is written into the statement, and OFFSET only when there is one: with either as a
  // parameter PostgreSQL cannot cost a generic plan (it guesses 10% of the rows) and plans the
  // prepared statement again on every execution, which cost more than the scan itself.
  if (options.offset === 0)
    return listed(await db.queryText(`SELECT ${LIST_COLUMNS} FROM ingest_jobs ${where} ${LIST_ORDER} LIMIT ${options.limit}`, params));
  // Rows skipped by OFFSET go through the select list too: skip over bare ids, then write the
  // payloads of the page's rows only.
  const rows = await db.queryText(
    `SELECT ${LIST_COLUMNS} FROM ingest_jobs WHERE job_id IN
       (SELECT job_id FROM ingest_jobs ${where} ${LIST_ORDER} LIMIT ${options.limit} OFFSET $${params.push(options.offset)})
     ${LIST_ORDER}`,
    params,
  );
  return listed(rows);
}

/** How many jobs match the filters (only when asked: a count reads every matching row). */
export async function countJobs(db: Queryable, options: Omit<ListOptions, 'limit' | 'offset' | 'after'>): Promise<number> {
  const { where, params } = listFilter(options);
  const { rows } = await db.query<{ n: number }>(`SELECT count(*) AS n FROM ingest_jobs ${where}`, params);
  return rows[0]!.n;
}

/** How many jobs there are in each status (statuses with none are left out). */
export async function countJobsByStatus(db: Queryable): Promise<Map<string, number>> {
  const { rows } = await db.query<{ status: string; n: number }>('SELECT status, count(*) AS n FROM ingest_jobs GROUP BY status');
  return new Map(rows.map((row) => [row.status, row.n]));
}

/**
 * Jobs that may have no live queue entry: `queued`, or `running` with a stale heartbeat (see
 * STALE_HEARTBEAT), and submitted more than `minAgeMs` ago (a younger one's enqueue may still
 * be on its way). Oldest first, at most 1000. $1 minAgeMs, $2 staleAfterMs
 */
export async function listOrphanedJobIds(db: Queryable, minAgeMs: number, staleAfterMs: number): Promise<string[]> {
  const { rows } = await db.query<{ job_id: string }>(
    `SELECT job_id FROM ingest_jobs
     WHERE submitted_at < NOW() - make_interval(secs => $1 / 1000.0)
       AND (status = 'queued' OR (status = 'running' AND ${STALE_HEARTBEAT('$2')}))
     ORDER BY submitted_at LIMIT 1000`,
    [minAgeMs, staleAfterMs],
  );
  return rows.map((row) => row.job_id);
}

/** Jobs a worker still owes work: never started, or left running by a process that died. */
export async function listUnfinishedJobIds(db: Queryable): Promise<string[]> {
  const { rows } = await db.query<{ job_id: string }>(
    `SELECT job_id FROM ingest_jobs WHERE status IN ('queued', 'running') ORDER BY submitted_at, job_id`,
  );
  return rows.map((row) => row.job_id);
}

export interface ErrorRow {
  line: number;
  record_no: number;
  message: string;
  excerpt: string;
}

/** A page of a job's row errors after `after`, in input order. $1 job_id, $2 after, $3 limit */
export async function listErrors(db: Queryable, jobId: string, after: number, limit: number): Promise<ErrorRow[]> {
  const { rows } = await db.query<ErrorRow>(
    'SELECT line, record_no, message, excerpt FROM ingest_errors WHERE job_id = $1 AND record_no > $2 ORDER BY record_no LIMIT $3',
    [jobId, after, limit],
  );
  return rows;
}

/**
 * Deletes jobs with their records, row errors and idempotency keys (ON DELETE CASCADE).
 * Returns the ids deleted. $1 job ids
 */
export async function deleteJobs(db: Queryable, jobIds: string[]): Promise<string[]> {
  // Deliveries still pending are made all the same (retention removes them once finished).
  await db.query(`DELETE FROM intake_webhook_deliveries WHERE job_id = ANY($1::uuid[]) AND status <> 'pending'`, [jobIds]);
  const { rows } = await db.query<{ job_id: string }>('DELETE FROM ingest_jobs WHERE job_id = ANY($1::uuid[]) RETURNING job_id', [jobIds]);
  return rows.map((row) => row.job_id);
}

/** Finished jobs completed before `days` ago, oldest first, at most `limit`. $1 days, $2 limit */
export async function listExpiredJobIds(db: Queryable, days: number, limit: number): Promise<string[]> {
  const { rows } = await db.query<{ job_id: string }>(
    `SELECT job_id FROM ingest_jobs
     WHERE completed_at < NOW() - make_interval(days => $1) AND status IN ('completed', 'failed', 'canceled')
     ORDER BY completed_at LIMIT $2`,
    [days, limit],
  );
  return rows.map((row) => row.job_id);
}

/**
 * Takes an idempotency key for a job being inserted in the same transaction. A key older than
 * 24 hours is void and taken over. Returns false when a live key exists (a concurrent holder
 * is waited for by the unique index). $1 key, $2 fingerprint, $3 job_id
 */
export async function claimKey(db: Queryable, { key, fingerprint }: { key: string; fingerprint: string }, jobId: string): Promise<boolean> {
  const { rows } = await db.query<{ key: string }>(
    `INSERT INTO ingest_idempotency_keys (key, fingerprint, job_id) VALUES ($1, $2, $3)
     ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, job_id = EXCLUDED.job_id, created_at = NOW()
       WHERE ingest_idempotency_keys.created_at < NOW() - INTERVAL '24 hours'
     RETURNING key`,
    [key, fingerprint, jobId],
  );
  return rows.length === 1;
}

/** Idempotency keys older than 24 hours, oldest first, at most `limit`, deleted. $1 limit */
export async function deleteExpiredKeys(db: Queryable, limit: number): Promise<void> {
  await db.query(
    `DELETE FROM ingest_idempotency_keys WHERE key IN (
       SELECT key FROM ingest_idempotency_keys WHERE created_at < NOW() - INTERVAL '24 hours' ORDER BY created_at LIMIT $1)`,
    [limit],
  );
}

/**
 * Takes the transaction-scoped advisory lock `key` if no other transaction holds it; it is
 * released at COMMIT or ROLLBACK. One process at a time runs what it guards. $1 key
 */
export async function tryTransactionLock(tx: Queryable, key: number): Promise<boolean> {
  const { rows } = await tx.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS locked', [key]);
  return rows[0]?.locked === true;
}

/** A live (under 24 hours old) idempotency key. $1 key */
export async function findKey(db: Queryable, key: string): Promise<{ fingerprint: string; job_id: string } | undefined> {
  const { rows } = await db.query<{ fingerprint: string; job_id: string }>(
    `SELECT fingerprint, job_id FROM ingest_idempotency_keys WHERE key = $1 AND created_at >= NOW() - INTERVAL '24 hours'`,
    [key],
  );
  return rows[0];
}
