/**
 * The job's values and shape, with no schema objects: small enough for the console and the CLI
 * to import (src/http/schemas.ts holds the JSON schemas of the HTTP API built from them).
 */
/** Job statuses, defined once: the SQL enum (migrations 001 and 006), the API schema, the tracking SQL and the console. */
export const JOB_STATUSES = ['queued', 'running', 'completed', 'failed', 'canceled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** A job in one of these states never changes again. */
export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(['completed', 'failed', 'canceled']);

export const SOURCE_TYPES = ['csv_upload', 'json_upload', 'xlsx_upload', 'json_api', 'url_import', 's3_import', 'jira_ingest'] as const;
export type SourceType = (typeof SOURCE_TYPES)[number];

/** How a stored upload is parsed. */
export const FORMATS = ['csv', 'json', 'ndjson', 'xlsx'] as const;
export type Format = (typeof FORMATS)[number];

/** Rows of text values under a header row (CSV, a sheet), as opposed to JSON records. */
export const isTabular = (format: Format) => format === 'csv' || format === 'xlsx';

/** How a job writes its dataset. */
export const WRITE_MODES = ['append', 'replace', 'merge'] as const;
export type WriteMode = (typeof WRITE_MODES)[number];

/** The job as the API shows it. Timestamps are ISO 8601 in UTC, or null. */
export interface JobPayload {
  job_id: string;
  source_type: SourceType;
  file_name: string | null;
  status: JobStatus;
  submitted_at: string;
  started_at: string | null;
  completed_at: string | null;
  records_processed: number;
  records_failed: number;
  max_errors: number;
  bytes_total: number | null;
  bytes_processed: number;
  /** The dataset the job loads into (null for jobs from before datasets, whose records are kept as JSON). */
  dataset: string | null;
  mode: WriteMode | null;
  /** The key columns of a merge. */
  key: string[] | null;
  /** Rows the job inserted into and updated in its dataset (null until it completes). */
  rows_inserted: number | null;
  rows_updated: number | null;
  error: string | null;
  /** Times a worker has started the job, over all its runs (a retry keeps counting). */
  attempts: number;
  version: number;
}
