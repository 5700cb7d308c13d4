import { FORMATS, JOB_FIELDS, JOB_STATUSES, jobFields, SOURCE_TYPES, type PayloadField } from '../core/job.js';

/** A field's schema where it may be null: null is one of its types (and of its values, for an enum). */
type OrNullSchema<S> = {
  [K in keyof S]: K extends 'type'
    ? readonly [S[K], 'null']
    : K extends 'enum'
      ? S[K] extends readonly unknown[]
        ? readonly [...S[K], null]
        : never
      : S[K];
};
type PayloadProperties = {
  [K in PayloadField]: (typeof JOB_FIELDS)[K] extends { nullable: true; schema: infer S }
    ? OrNullSchema<S>
    : (typeof JOB_FIELDS)[K]['schema'];
};

function payloadSchemas(): { required: readonly PayloadField[]; properties: PayloadProperties } {
  const fields = jobFields().filter((field) => field.payload);
  const properties = fields.map(({ name, nullable, schema }) => [
    name,
    nullable ? { ...schema, type: [schema.type, 'null'], ...(schema.enum && { enum: [...schema.enum, null] }) } : schema,
  ]);
  return { required: fields.map((field) => field.name as PayloadField), properties: Object.fromEntries(properties) as PayloadProperties };
}

const payload = payloadSchemas();

/** The job's payload (core/job.ts JOB_FIELDS): the status URL, a list item, an event, a webhook. */
export const jobSchema = { $id: 'Job', type: 'object', required: payload.required, properties: payload.properties } as const;

export const submittedJobSchema = {
  $id: 'SubmittedJob',
  type: 'object',
  required: [...jobSchema.required, 'status_url'],
  properties: {
    ...jobSchema.properties,
    status_url: { type: 'string', description: 'Absolute URL of GET /api/job/{job_id}' },
  },
} as const;

/** The headers of a submit: an Idempotency-Key, described as `description` says. */
export const idempotencyHeaders = <D extends string>(description: D) =>
  ({
    type: 'object',
    properties: {
      'idempotency-key': { type: 'string', minLength: 1, maxLength: 255, pattern: '^[ -~]+$', description },
    },
  }) as const;

export const jobListSchema = {
  $id: 'JobList',
  type: 'object',
  required: ['results', 'offset', 'limit', 'next_offset', 'next_cursor'],
  properties: {
    results: { type: 'array', items: { $ref: 'Job#' } },
    offset: { type: 'integer' },
    limit: { type: 'integer' },
    next_offset: { type: ['integer', 'null'], description: 'offset of the next page, or null on the last page (or when paging by cursor)' },
    next_cursor: {
      type: ['string', 'null'],
      description: 'cursor of the next page, or null on the last page: as fast at any depth as the first page',
    },
    total: { type: 'integer', description: 'jobs matching the filters, with total=true only' },
  },
} as const;

export const listQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    status: { type: 'string', enum: JOB_STATUSES },
    source_type: { type: 'string', enum: SOURCE_TYPES },
    dataset: { type: 'string', maxLength: 63, description: 'jobs loading into this dataset' },
    submitted_after: { type: 'string', format: 'date-time', description: 'jobs submitted at or after this time' },
    submitted_before: { type: 'string', format: 'date-time', description: 'jobs submitted before this time' },
    limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
    cursor: { type: 'string', maxLength: 200, description: 'next_cursor of the previous page (keyset: fast at any depth)' },
    offset: {
      type: 'integer',
      minimum: 0,
      maximum: 2_147_483_647,
      default: 0,
      description: 'kept for compatibility; deep offsets are slow, use cursor',
    },
    total: { type: 'boolean', default: false, description: 'also count the matching jobs (reads all of them)' },
  },
} as const;

export const jobIdParamsSchema = {
  type: 'object',
  required: ['job_id'],
  properties: { job_id: { type: 'string', description: 'The job id (a UUID); anything else answers 404' } },
} as const;

export const errorSchema = {
  $id: 'Error',
  type: 'object',
  required: ['detail', 'code'],
  properties: {
    detail: {
      description: 'A message, or for validation errors a list of {loc, msg, type}',
      anyOf: [
        { type: 'string' },
        {
          type: 'array',
          items: {
            type: 'object',
            required: ['loc', 'msg', 'type'],
            properties: {
              loc: { type: 'array', items: { anyOf: [{ type: 'string' }, { type: 'integer' }] } },
              msg: { type: 'string' },
              type: { type: 'string' },
            },
          },
        },
      ],
    },
    code: { type: 'string', description: 'Stable machine-readable error code' },
  },
} as const;

export const errorRef = { $ref: 'Error#' } as const;

/**
 * POST /api/ingest/json. The records themselves are checked by the route, which can say
 * which record is wrong (loc ["body", index]) more plainly than an anyOf schema error can.
 */
export const ingestJsonBodySchema = {
  content: {
    'application/json': {
      // Read as bytes by the route (no type to check here): see routes/submit.ts.
      schema: { description: 'A JSON array of objects, or {"records": [...]}, in UTF-8' },
    },
    'application/x-ndjson': { schema: { description: 'One JSON object per line, in UTF-8' } },
  },
} as const;

export const MAX_ERRORS_LIMIT = 1_000_000_000;

const maxErrorsSchema = {
  type: 'integer',
  minimum: 0,
  maximum: MAX_ERRORS_LIMIT,
  default: 0,
  description: 'Bad rows to skip and report before the job fails (0: the first bad row fails it)',
} as const;

/** Where and how a job loads its rows (checked further by datasets/options.ts, which names every problem). */
export const loadOptionProperties = {
  dataset: {
    type: 'string',
    maxLength: 200,
    description:
      'The dataset to load into: lower-case letters, digits and _, starting with a letter, at most 63 characters. Default: made from the file name (records for posted records)',
  },
  mode: {
    type: 'string',
    maxLength: 40,
    description: "append (default), replace (the dataset holds exactly this job's rows) or merge (upsert on key)",
  },
  key: { type: 'string', maxLength: 2000, description: 'With mode=merge: the key column, or comma-separated columns' },
  schema: {
    type: 'string',
    maxLength: 65536,
    description:
      'Declared column types as a JSON object, e.g. {"qty": "bigint", "betrag": {"type": "numeric", "decimal": ","}, "datum": {"type": "date", "format": "DD.MM.YYYY"}} (bigint, numeric, boolean, date, timestamptz, text, jsonb); other columns are inferred',
  },
  schema_update: {
    type: 'string',
    maxLength: 40,
    description: "widen: existing columns may be widened to hold the job's values (bigint → numeric → text)",
  },
  delimiter: {
    type: 'string',
    maxLength: 20,
    description:
      'A CSV file\'s delimiter: , ; | a tab, a space or ", " (a comma and a space), or their names comma, semicolon, pipe, tab, space, comma_space. Default: detected from the file (a .tsv file: tab)',
  },
  header: {
    type: 'string',
    maxLength: 10,
    description: 'false: the CSV file (or sheet) has no header row (columns are column_1, column_2 …). Default true',
  },
  quote: {
    type: 'string',
    maxLength: 10,
    description: "The character a CSV file's fields are quoted with: \" or ' (or double, single). Default: detected",
  },
  escape: {
    type: 'string',
    maxLength: 20,
    description: 'How a quote inside a quoted CSV field is written: double ("") or backslash (\\"). Default: detected',
  },
  header_row: {
    type: 'string',
    maxLength: 10,
    description: "The line a CSV file's header is on (1 is the first); the lines above it are skipped. Default: detected",
  },
  skip_lines: {
    type: 'string',
    maxLength: 10,
    description: 'Lines before the table (its header, or its first row with header=false), skipped. Default: detected',
  },
  ragged: {
    type: 'string',
    maxLength: 20,
    description:
      'A CSV row of more or fewer fields than the header: error (a row error, the default), pad (missing trailing fields are NULL) or ignore_extra (extra fields are dropped)',
  },
  locale: {
    type: 'string',
    maxLength: 35,
    description:
      'A locale such as de-DE or en-US that settles columns whose values leave their reading open (a decimal comma, a date order)',
  },
  date_order: {
    type: 'string',
    maxLength: 10,
    description: "DMY or MDY: how dates such as 03/04/2025 are read where the column's values leave it open",
  },
  null_values: {
    type: 'string',
    maxLength: 2000,
    description: 'The values that mean NULL in a typed column, comma-separated. Default: NA, N/A, null, NULL, - and an empty field',
  },
  encoding: {
    type: 'string',
    maxLength: 40,
    description:
      "The file's encoding: utf-8 (default; UTF-16 is read by its byte order mark), utf-16le, utf-16be, windows-1252, iso-8859-1, iso-8859-15, windows-1250, windows-1251, macintosh",
  },
  sheet: {
    type: 'string',
    maxLength: 40,
    description: "An Excel workbook's sheet to load, by name or position (1 is the first). Default: the first",
  },
  callback_url: {
    type: 'string',
    maxLength: 2048,
    description:
      'An http(s) URL that receives a signed POST of the job payload when the job ends (besides WEBHOOK_URLS); loopback and private addresses are refused unless IMPORT_ALLOW_PRIVATE=true',
  },
} as const;

/** How a file is read when its name does not say (or says wrong): `data.zip` holding JSON, a URL without an extension. */
const formatHint = {
  type: 'string',
  enum: FORMATS,
  description: 'csv, json, ndjson or xlsx. Default: from the file name (orders.csv.gz, orders.json.zip …), else csv',
} as const;

export const submitQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { max_errors: maxErrorsSchema, ...loadOptionProperties },
} as const;

/** max_errors without a default: an upload may give it (and the load options) as form fields instead. */
export const uploadQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { max_errors: { ...maxErrorsSchema, default: undefined }, format: formatHint, ...loadOptionProperties },
} as const;

/** A retry keeps the job's own max_errors and encoding unless given. */
export const retryQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { max_errors: { ...maxErrorsSchema, default: undefined }, encoding: loadOptionProperties.encoding },
} as const;

// No `type`: the file is streamed (receiveUpload checks the parts as they arrive), so the
// request has no parsed body, and a schema without a type accepts that while documenting the form.
export const uploadBodySchema = {
  required: ['file'],
  properties: {
    max_errors: { ...maxErrorsSchema, description: `${maxErrorsSchema.description}; as a form field it must come before the file` },
    format: {
      ...formatHint,
      description: `${formatHint.description}; as a form field it must come before the file (the query string wins)`,
    },
    ...Object.fromEntries(
      Object.entries(loadOptionProperties).map(([name, schema]) => [
        name,
        { ...schema, description: `${schema.description}; as a form field it must come before the file (the query string wins)` },
      ]),
    ),
    file: {
      type: 'string',
      format: 'binary',
      description: 'A .csv, .tsv, .json, .ndjson, .jsonl or .xlsx file, or one of them compressed (gzip, zstd) or zipped',
    },
  },
} as const;

export const pageQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    cursor: { type: 'string', pattern: '^(0|[1-9][0-9]{0,9})$', description: 'next_cursor of the previous page' },
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
  },
} as const;

/** A keyset page: `results`, and the cursor of the next page (null on the last). */
function pageSchema<Item extends object>(id: string, item: Item) {
  return {
    $id: id,
    type: 'object',
    required: ['results', 'next_cursor'],
    properties: {
      results: { type: 'array', items: item },
      next_cursor: { type: ['string', 'null'], description: 'cursor of the next page, or null on the last one' },
    },
  } as const;
}

export const recordPageSchema = pageSchema('RecordPage', {
  type: 'object',
  required: ['record_no', 'data'],
  properties: {
    record_no: { type: 'integer', description: 'Position among the input records, from 0' },
    data: { type: 'object', additionalProperties: true, description: 'The record as stored (JSONB)' },
  },
});

export const errorPageSchema = pageSchema('ErrorPage', {
  type: 'object',
  required: ['line', 'record_no', 'message', 'excerpt'],
  properties: {
    line: { type: 'integer', description: 'Line of the input where the bad row starts' },
    record_no: { type: 'integer', description: 'Position among the input records, from 0' },
    message: { type: 'string' },
    excerpt: { type: 'string', description: 'The start of the bad row' },
  },
});

/** The datasets' answers. */
export const datasetSchemas = [
  {
    $id: 'Dataset',
    type: 'object',
    required: ['name', 'columns', 'row_count', 'created_at', 'updated_at', 'last_job_id'],
    properties: {
      name: { type: 'string' },
      columns: {
        type: 'array',
        items: {
          type: 'object',
          required: ['name', 'type', 'original_name'],
          properties: {
            name: { type: 'string', description: 'The column in SQL' },
            type: { type: 'string', description: 'bigint, numeric, boolean, date, timestamptz, text or jsonb' },
            original_name: { type: 'string', description: 'The name as the input that brought the column wrote it' },
          },
        },
      },
      row_count: { type: 'integer', description: 'Rows after the last load (changes made with SQL outside Intake are not counted)' },
      created_at: { type: 'string', format: 'date-time' },
      updated_at: { type: 'string', format: 'date-time', description: 'When a job last loaded it' },
      last_job_id: { type: ['string', 'null'], format: 'uuid' },
    },
  },
  {
    $id: 'DatasetList',
    type: 'object',
    required: ['results', 'next_cursor'],
    properties: {
      results: { type: 'array', items: { $ref: 'Dataset#' } },
      next_cursor: { type: ['string', 'null'], description: 'cursor of the next page, or null on the last one' },
    },
  },
  {
    $id: 'SqlResult',
    type: 'object',
    required: ['columns', 'rows', 'truncated'],
    properties: {
      columns: {
        type: 'array',
        description: "The result's columns in the query's order: a name given twice is there twice",
        items: {
          type: 'object',
          required: ['name', 'type'],
          properties: {
            name: { type: 'string' },
            type: { type: 'string', description: "PostgreSQL's name of its type (integer, numeric, text, timestamp with time zone…)" },
          },
        },
      },
      rows: { type: 'array', items: { type: 'array', items: {}, description: "A row: its values in the columns' order" } },
      truncated: { type: 'boolean', description: 'More rows were there than the answer holds (at most SQL_MAX_ROWS rows, 8 MiB)' },
    },
  },
  {
    $id: 'RowPage',
    type: 'object',
    required: ['results', 'next_cursor'],
    properties: {
      results: { type: 'array', items: { type: 'object', additionalProperties: true, description: 'A row: column → value' } },
      next_cursor: { type: ['string', 'null'], description: 'cursor of the next page, or null on the last one' },
    },
  },
] as const;
