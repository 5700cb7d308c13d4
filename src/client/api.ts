import type { JobPayload } from '../core/job.js';

/** The API's answers, as the CLI and the console read them (the server's schemas are in src/schemas). */
export type SubmittedJob = JobPayload & { status_url: string };
export interface JobList {
  results: JobPayload[];
  limit: number;
  next_cursor: string | null;
}
export interface Page<T> {
  results: T[];
  next_cursor: string | null;
}
export interface RecordRow {
  record_no: number;
  data: Record<string, unknown>;
}
export interface DatasetColumn {
  name: string;
  type: string;
  original_name: string;
}
export interface Dataset {
  name: string;
  columns: DatasetColumn[];
  row_count: number;
  created_at: string;
  updated_at: string;
  last_job_id: string | null;
}
export interface SqlResult {
  /** The result's columns in the query's order (a name given twice is there twice), each with its PostgreSQL type. */
  columns: { name: string; type: string }[];
  /** Each row as an array in the columns' order (bigint and numeric as JSON numbers with every digit). */
  rows: unknown[][];
  /** More rows were there than the answer holds. */
  truncated: boolean;
}
export interface RowError {
  line: number;
  record_no: number;
  message: string;
  excerpt: string;
}

/** POST /api/preview: the start of a file read as a load would read it. */
export interface Preview {
  format: string;
  encoding: string;
  dialect: JobPayload['dialect'];
  columns: { name: string; original: string; type: string; reading: Record<string, unknown> | null; evidence: string[] }[];
  rows: (string | null)[][];
  row_errors: { line: number; error: string; excerpt: string }[];
  truncated: boolean;
  warnings: string[];
}

/** An error answer of the API ({detail, code}), or no answer at all (status 0, code "network"). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The API's `detail` as one line: a validation error lists each issue as `where: what`. */
function detailText(detail: unknown, status: number): string {
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((issue: { loc?: unknown[]; msg?: string }) =>
        issue.loc?.length ? `${issue.loc.join('.')}: ${issue.msg}` : (issue.msg ?? JSON.stringify(issue)),
      )
      .join('; ');
  }
  return `Intake answered ${status}`;
}

export function jobPath(jobId: string): string {
  return `/api/job/${encodeURIComponent(jobId)}`;
}

export function datasetPath(name: string): string {
  return `/api/datasets/${encodeURIComponent(name)}`;
}

/** `?name=value&…` of the values given (none: ''). */
function queryOf(query: Record<string, string | number | null | undefined>): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query))
    if (value !== undefined && value !== null && value !== '') params.set(name, String(value));
  const text = params.toString();
  return text ? `?${text}` : '';
}

export interface ApiOptions {
  /** Where Intake is: '' (the page's own origin) in the console, INTAKE_URL in the CLI. */
  base: string;
  /** The bearer token, read at every call: the console's can change. */
  token?: () => string | null | undefined;
  /** Told of every error answer before it is thrown (the console asks for a token on a 401). */
  onError?: (error: ApiError) => void;
}

export type Api = ReturnType<typeof createApi>;

/** A typed client of the API, for the CLI (Node's fetch) and the console (the browser's). */
export function createApi({ base, token, onError }: ApiOptions) {
  function fail(status: number, body: unknown): ApiError {
    const { detail, code } = (body ?? {}) as { detail?: unknown; code?: unknown };
    const error = new ApiError(status, typeof code === 'string' ? code : 'http_error', detailText(detail, status));
    onError?.(error);
    return error;
  }

  /** The answer, when it is a success; an error answer or none at all throws an ApiError. An abort throws as fetch does. */
  async function send(path: string, init: RequestInit = {}): Promise<Response> {
    const bearer = token?.();
    let res: Response;
    try {
      res = await fetch(base + path, {
        ...init,
        headers: { accept: 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}), ...init.headers },
      });
    } catch (err) {
      if (init.signal?.aborted) throw err;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message;
      throw new ApiError(0, 'network', `cannot reach Intake${base ? ` at ${base}` : ''}${why ? `: ${why}` : ''}`);
    }
    if (!res.ok) {
      const body: unknown = await res.json().catch(() => undefined);
      init.signal?.throwIfAborted(); // closed meanwhile: nobody is waiting for the error
      throw fail(res.status, body);
    }
    return res;
  }

  async function json<T>(path: string, init?: RequestInit): Promise<T> {
    const res = await send(path, init);
    const body: unknown = await res.json().catch(() => {
      throw new ApiError(res.status, 'bad_answer', `Intake answered ${res.status} with a body that is not JSON`);
    });
    init?.signal?.throwIfAborted(); // closed meanwhile: an unread body is not an answer
    return body as T;
  }

  /** An event stream (text/event-stream) of the API: its body, to read with readEvents. */
  async function stream(path: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const res = await send(path, { headers: { accept: 'text/event-stream' }, signal });
    if (!res.body) throw new ApiError(res.status, 'bad_answer', 'Intake answered without an event stream');
    return res.body;
  }

  return {
    base,
    send,
    /** An error answer (its status and body) as the ApiError it means, told to onError: for answers not read through send. */
    answerError: fail,
    job: (jobId: string, signal?: AbortSignal) => json<JobPayload>(jobPath(jobId), { signal }),
    jobs(query: { status?: string; dataset?: string; limit?: number | string; cursor?: string | null }, signal?: AbortSignal) {
      return json<JobList>(`/api/jobs${queryOf(query)}`, { signal });
    },
    page<T>(jobId: string, kind: 'records' | 'errors', limit: number, cursor: string | null, signal?: AbortSignal) {
      const params = new URLSearchParams({ limit: String(limit) });
      if (cursor) params.set('cursor', cursor);
      return json<Page<T>>(`${jobPath(jobId)}/${kind}?${params}`, { signal });
    },
    stream,
    /** The job's event stream (see stream). */
    events: (jobId: string, signal?: AbortSignal) => stream(`${jobPath(jobId)}/events`, signal),
    upload: (form: FormData) => json<SubmittedJob>('/api/upload', { method: 'POST', body: form }),
    preview: (form: FormData) => json<Preview>('/api/preview', { method: 'POST', body: form }),
    import: (body: Record<string, unknown>) =>
      json<SubmittedJob>('/api/import', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    cancel: (jobId: string) => json<JobPayload>(`${jobPath(jobId)}/cancel`, { method: 'POST' }),
    retry: (jobId: string, maxErrors?: number | string, encoding?: string) =>
      json<SubmittedJob>(`${jobPath(jobId)}/retry${queryOf({ max_errors: maxErrors, encoding })}`, { method: 'POST' }),
    async remove(jobId: string): Promise<void> {
      await send(jobPath(jobId), { method: 'DELETE' });
    },
    datasets: (query: { limit?: number; cursor?: string | null } = {}, signal?: AbortSignal) =>
      json<Page<Dataset>>(`/api/datasets${queryOf(query)}`, { signal }),
    dataset: (name: string, signal?: AbortSignal) => json<Dataset>(datasetPath(name), { signal }),
    datasetRows: (name: string, query: { limit?: number; cursor?: string | null } = {}, signal?: AbortSignal) =>
      json<Page<Record<string, unknown>>>(`${datasetPath(name)}/rows${queryOf(query)}`, { signal }),
    /** The export's answer, to read as a stream (CLI) or a blob (console). */
    /** `excelSafe`: CSV with formulas and control characters made inert, for a spreadsheet. */
    exportDataset: (name: string, format: 'csv' | 'ndjson', signal?: AbortSignal, excelSafe = false) =>
      send(`${datasetPath(name)}/export${queryOf({ format, excel_safe: excelSafe ? 'true' : undefined })}`, {
        signal,
        headers: { accept: '*/*' },
      }),
    async removeDataset(name: string): Promise<void> {
      await send(datasetPath(name), { method: 'DELETE' });
    },
    /** A read-only query of the datasets (POST /api/sql). */
    sql: (text: string, signal?: AbortSignal) =>
      json<SqlResult>('/api/sql', {
        method: 'POST',
        body: JSON.stringify({ sql: text }),
        headers: { 'content-type': 'application/json' },
        signal,
      }),
    /** A query's whole result, streamed (POST /api/sql/export): to read as a stream (CLI) or a blob (console). */
    exportSql: (text: string, format: 'csv' | 'ndjson', signal?: AbortSignal) =>
      send(`/api/sql/export${queryOf({ format })}`, {
        method: 'POST',
        body: JSON.stringify({ sql: text }),
        headers: { 'content-type': 'application/json', accept: '*/*' },
        signal,
      }),
    /** A query's whole result saved as a dataset, by a job (POST /api/sql with into). */
    saveSql: (text: string, into: string, mode: 'append' | 'replace') =>
      json<SubmittedJob>('/api/sql', {
        method: 'POST',
        body: JSON.stringify({ sql: text, into, mode }),
        headers: { 'content-type': 'application/json' },
      }),
  };
}
