/**
 * The job's values and its fields, once, with no dependencies: the console and the CLI import
 * it too (a bundle keeps only what it uses). storage/jobs.ts makes the row and the payload's
 * writers from JOB_FIELDS, http/schemas.ts the API's JSON schemas.
 */
/** Job statuses, defined once: the SQL enum (migrations 001 and 006), the API schema, the tracking SQL and the console. */
export const JOB_STATUSES = ['queued', 'running', 'completed', 'failed', 'canceled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** A job in one of these states never changes again. */
export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(['completed', 'failed', 'canceled']);

export const SOURCE_TYPES = [
  'csv_upload',
  'json_upload',
  'xlsx_upload',
  'json_api',
  'url_import',
  's3_import',
  'jira_ingest',
  'sql_query',
] as const;
export type SourceType = (typeof SOURCE_TYPES)[number];

/** How a stored upload is parsed. */
export const FORMATS = ['csv', 'json', 'ndjson', 'xlsx'] as const;

/** The types a dataset's column (and a load's `schema`) takes. */
export const COLUMN_TYPES = ['bigint', 'numeric', 'boolean', 'date', 'timestamptz', 'text', 'jsonb'] as const;
export type ColumnType = (typeof COLUMN_TYPES)[number];
export type Format = (typeof FORMATS)[number];

/** Rows of text values under a header row (CSV, a sheet), as opposed to JSON records. */
export const isTabular = (format: Format) => format === 'csv' || format === 'xlsx';

/** Encodings a file may be read in besides UTF-8 (WHATWG names; iso-8859-1 is read as windows-1252, as browsers do). */
export const ENCODINGS = [
  'utf-8',
  'utf-16le',
  'utf-16be',
  'windows-1252',
  'iso-8859-1',
  'iso-8859-15',
  'windows-1250',
  'windows-1251',
  'macintosh',
] as const;
export type Encoding = (typeof ENCODINGS)[number];

/** How a job writes its dataset. */
export const WRITE_MODES = ['append', 'replace', 'merge'] as const;
export type WriteMode = (typeof WRITE_MODES)[number];

/** A JSON schema as the job's fields use them (the API's schemas are these, with null where a field may be null). */
type FieldType = 'string' | 'integer' | 'boolean' | 'array' | 'object';

export interface FieldSchema {
  /** A field's value inside an object may be null: [type, 'null']. */
  type: FieldType | readonly [FieldType, 'null'];
  format?: 'uuid' | 'date-time';
  enum?: readonly string[];
  minimum?: number;
  items?: FieldSchema;
  properties?: Readonly<Record<string, FieldSchema>>;
  /** An object's properties, all of them (JsonValue reads them all as required). */
  required?: readonly string[];
  additionalProperties?: false;
  description?: string;
}

export interface FieldSpec {
  /** Shown by the API: in the payload (the status URL, a list item, an event, a webhook). */
  payload: boolean;
  nullable: boolean;
  /** Its column of ingest_jobs, when not named as the field. */
  column?: string;
  /** Its value (without null). A timestamp (date-time) is a Date in the row, ISO 8601 in UTC in the payload. */
  schema: FieldSchema;
}

const timestamp = { type: 'string', format: 'date-time' } as const;

/** The properties of an object's schema, each required (as JsonValue reads them), none other. */
const closed = <const P extends Record<string, FieldSchema>>(properties: P, description?: string) =>
  ({
    type: 'object',
    properties,
    required: Object.keys(properties) as (keyof P & string)[],
    additionalProperties: false,
    ...(description !== undefined && { description }),
  }) as const;

/** How a CSV file was read (formats/csv.ts CsvReport), as the job shows it. */
const dialectSchema = closed(
  {
    encoding: { type: 'string', description: 'The encoding the bytes are read in: given, or detected from the first 256 KiB' },
    delimiter: { type: 'string', enum: [',', ';', '\t', '|', ' ', ', '] },
    quote: { type: 'string', enum: ['"', "'"] },
    escape: { type: 'string', enum: ['double', 'backslash'], description: 'How a quote is written in a quoted field: "" or \\"' },
    line_ending: { type: 'string', enum: ['LF', 'CRLF', 'CR'] },
    header_row: { type: ['integer', 'null'], description: "The line of the header's first row (null: the file has no header row)" },
    header_rows: { type: 'integer', minimum: 0, description: 'Rows the header is written over, joined into one name per column' },
    columns: { type: 'array', items: { type: 'string' }, description: 'The columns as the header names them' },
    skipped: {
      type: 'array',
      items: closed({
        from: { type: 'integer', minimum: 1 },
        to: { type: 'integer', minimum: 1 },
        why: { type: 'string', enum: ['above the table', 'after the table'] },
        text: { type: 'string', description: 'The first of the lines as written (at most 120 characters)' },
      }),
      description: 'Runs of lines that are not part of the table (the first few)',
    },
    skipped_lines: { type: 'integer', minimum: 0, description: 'Lines skipped in all' },
  },
  'How the CSV file is read: what was detected or given (null for other formats, and until the reader has looked at the file). Final once the job completes',
);

/**
 * The job's fields, each once, in the order the payload writes them (Node and PostgreSQL
 * alike). The row type and the payload's writers (storage/jobs.ts), the payload's type (below)
 * and the API's JSON schemas (http/schemas.ts) are made from this table.
 */
export const JOB_FIELDS = {
  job_id: { payload: true, nullable: false, schema: { type: 'string', format: 'uuid' } },
  source_type: {
    payload: true,
    nullable: false,
    schema: { type: 'string', enum: SOURCE_TYPES, description: 'csv_upload, json_upload (a .json/.ndjson file) or json_api' },
  },
  file_name: {
    payload: true,
    nullable: true,
    schema: {
      type: 'string',
      description:
        'The uploaded file name as the client sent it (null for json_api), at most 255 characters, with control characters replaced by U+FFFD and characters that reorder or hide text (bidi controls, zero-width and other format characters) written out as \\u{202e}',
    },
  },
  status: { payload: true, nullable: false, schema: { type: 'string', enum: JOB_STATUSES } },
  submitted_at: { payload: true, nullable: false, schema: timestamp },
  started_at: { payload: true, nullable: true, schema: timestamp },
  completed_at: { payload: true, nullable: true, schema: timestamp },
  records_processed: { payload: true, nullable: false, schema: { type: 'integer', minimum: 0, description: 'Records committed so far' } },
  records_failed: {
    payload: true,
    nullable: false,
    schema: { type: 'integer', minimum: 0, description: 'Bad rows skipped and reported so far (see /errors)' },
  },
  max_errors: {
    payload: true,
    nullable: false,
    schema: { type: 'integer', minimum: 0, description: 'Bad rows the job may skip before it fails' },
  },
  bytes_total: { payload: true, nullable: true, schema: { type: 'integer', description: 'Size of the stored input in bytes' } },
  bytes_processed: {
    payload: true,
    nullable: false,
    schema: { type: 'integer', minimum: 0, description: 'Bytes of the input read so far' },
  },
  dataset: {
    payload: true,
    nullable: true,
    schema: {
      type: 'string',
      description: 'The dataset the job loads into (table <DATASET_SCHEMA>.<dataset>)',
    },
  },
  mode: { payload: true, nullable: true, schema: { type: 'string', enum: WRITE_MODES, description: 'append, replace or merge (on key)' } },
  key: {
    payload: true,
    nullable: true,
    column: 'merge_key',
    schema: { type: 'array', items: { type: 'string' }, description: 'The key columns of a merge' },
  },
  rows_inserted: {
    payload: true,
    nullable: true,
    schema: { type: 'integer', description: 'Rows the job inserted into its dataset (null until it completes)' },
  },
  rows_updated: {
    payload: true,
    nullable: true,
    schema: { type: 'integer', description: 'Rows of the dataset a merge updated (null until it completes)' },
  },
  error: {
    payload: true,
    nullable: true,
    schema: { type: 'string', description: 'Why the job failed, with the line or record where it did' },
  },
  dialect: { payload: true, nullable: true, schema: dialectSchema },
  phase: {
    payload: true,
    nullable: true,
    schema: {
      type: 'string',
      enum: ['reading', 'publishing'],
      description:
        'While the job runs: reading (its input, staged batch by batch) or publishing (its rows moving into the dataset, in the transaction that completes it; on the fast path, from the start of its COPY). Null while queued and once ended',
    },
  },
  warnings: {
    payload: true,
    nullable: true,
    schema: {
      type: 'array',
      items: { type: 'string' },
      description:
        'What the load found that a preview of the file would not have shown: a column typed otherwise by the whole file than by its first 2,000 records; and why a CSV upload was loaded by the checked path when the fast path (COPY) could not load it as Intake reads it (null: none)',
    },
  },
  attempts: {
    payload: true,
    nullable: false,
    schema: { type: 'integer', minimum: 0, description: 'Times a worker has started the job, over all its runs (a retry keeps counting)' },
  },
  version: {
    payload: true,
    nullable: false,
    schema: {
      type: 'integer',
      minimum: 1,
      description: 'Grows with every change to the job: of two answers, the higher version is the newer',
    },
  },
  // The row's own, not shown.
  /** How the stored input is parsed. */
  format: { payload: false, nullable: false, schema: { type: 'string', enum: FORMATS } },
  /** The dataset's existing columns may be widened to hold the job's values. */
  widen: { payload: false, nullable: false, schema: { type: 'boolean' } },
  /** `attempts` when the job was last retried: the current run's count starts there. */
  attempts_before_retry: { payload: false, nullable: false, schema: { type: 'integer' } },
  /** What an import reads (not shown: a signed URL's query holds its credentials). */
  source_url: { payload: false, nullable: true, schema: { type: 'string' } },
  /** What a pulling job reads. */
  source: {
    payload: false,
    nullable: true,
    schema: {
      type: 'object',
      properties: {
        jira: { type: 'object', properties: { connection: { type: 'string' }, jql: { type: 'string' } } },
        sql: { type: 'object', properties: { query: { type: 'string' } } },
      },
      required: [],
    },
  },
  /** Where the job's end is posted, besides WEBHOOK_URLS (not shown, like source_url). */
  callback_url: { payload: false, nullable: true, schema: { type: 'string' } },
} as const satisfies Record<string, FieldSpec>;

type Fields = typeof JOB_FIELDS;
export type JobField = keyof Fields;
export type PayloadField = { [K in JobField]: Fields[K]['payload'] extends true ? K : never }[JobField];

/** The value a JSON schema of the table describes (an object's properties are all required, or all optional when it says `required: []`). */
export type JsonValue<S> = S extends { type: readonly [infer T, 'null'] }
  ? JsonValue<Omit<S, 'type'> & { type: T }> | null
  : S extends { enum: readonly (infer E)[] }
    ? E
    : S extends { type: 'string' }
      ? string
      : S extends { type: 'integer' }
        ? number
        : S extends { type: 'boolean' }
          ? boolean
          : S extends { type: 'array'; items: infer I }
            ? JsonValue<I>[]
            : S extends { type: 'object'; properties: infer P; required: readonly [] }
              ? { -readonly [K in keyof P]?: JsonValue<P[K]> }
              : S extends { type: 'object'; properties: infer P }
                ? { -readonly [K in keyof P]: JsonValue<P[K]> }
                : never;
type OrNull<F> = F extends { nullable: true } ? null : never;
type RowValue<S> = S extends { format: 'date-time' } ? Date : JsonValue<S>;
type ColumnOf<K, F> = F extends { column: infer C extends string } ? C : K;

/** The job as the API shows it. Timestamps are ISO 8601 in UTC, or null. */
export type JobPayload = { -readonly [K in PayloadField]: JsonValue<Fields[K]['schema']> | OrNull<Fields[K]> };

/** A row of ingest_jobs as storage/jobs.ts reads it (JOB_COLUMNS): every field, under its column's name. */
export type JobRow = { -readonly [K in JobField as ColumnOf<K, Fields[K]>]: RowValue<Fields[K]['schema']> | OrNull<Fields[K]> };

/** The fields in the table's order, each with its column. */
export function jobFields(): (FieldSpec & { name: JobField; column: string })[] {
  return (Object.entries(JOB_FIELDS) as [JobField, FieldSpec][]).map(([name, spec]) => ({ ...spec, name, column: spec.column ?? name }));
}
