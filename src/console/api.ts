import type { JobPayload, JobStatus } from '../schemas/job.js';

export { TERMINAL_STATUSES as TERMINAL } from '../schemas/job.js';

export type Job = JobPayload;
export type SubmittedJob = Job & { status_url: string };
export interface JobList {
  results: Job[];
  offset: number;
  limit: number;
  next_offset: number | null;
}
export interface Page<T> {
  results: T[];
  next_cursor: string | null;
}
export interface RecordRow {
  record_no: number;
  data: Record<string, unknown>;
}
export interface RowError {
  line: number;
  record_no: number;
  message: string;
  excerpt: string;
}

/** An error answer of the API ({detail, code}), or the network failing (code "network"). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The API's `detail` as one readable line: validation errors list their messages. */
function detailText(detail: unknown): string {
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) return detail.map((issue: { msg?: string }) => issue.msg ?? JSON.stringify(issue)).join('; ');
  return 'unexpected answer';
}

function errorFrom(status: number, body: unknown): ApiError {
  const { detail, code } = (body ?? {}) as { detail?: unknown; code?: string };
  if (detail === undefined) return new ApiError(status, 'http_error', `Intake answered ${status}`);
  return new ApiError(status, code ?? 'http_error', detailText(detail));
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, { signal, headers: { accept: 'application/json' } });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new ApiError(0, 'network', 'Intake cannot be reached');
  }
  const body: unknown = await res.json().catch(() => undefined);
  if (!res.ok) throw errorFrom(res.status, body);
  return body as T;
}

export function jobPath(jobId: string): string {
  return `/api/job/${encodeURIComponent(jobId)}`;
}

export function listJobs(query: { status?: JobStatus; offset: number; limit: number }, signal?: AbortSignal): Promise<JobList> {
  const params = new URLSearchParams({ limit: String(query.limit), offset: String(query.offset) });
  if (query.status) params.set('status', query.status);
  return getJson<JobList>(`/api/jobs?${params}`, signal);
}

export function pagePath(jobId: string, kind: 'records' | 'errors', limit: number, cursor: string | null): string {
  const params = new URLSearchParams({ limit: String(limit) });
  if (cursor) params.set('cursor', cursor);
  return `${jobPath(jobId)}/${kind}?${params}`;
}

/**
 * POST /api/upload with upload progress (fetch cannot report it, XMLHttpRequest can).
 * max_errors goes first in the form: the server reads fields sent before the file.
 */
export function uploadFile(file: File, maxErrors: number, onProgress: (sent: number, total: number) => void): Promise<SubmittedJob> {
  const form = new FormData();
  form.append('max_errors', String(maxErrors));
  form.append('file', file, file.name);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/upload');
    xhr.responseType = 'json';
    xhr.setRequestHeader('accept', 'application/json');
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.total);
    xhr.onload = () => (xhr.status === 202 ? resolve(xhr.response as SubmittedJob) : reject(errorFrom(xhr.status, xhr.response)));
    xhr.onerror = () => reject(new ApiError(0, 'network', 'The upload failed: Intake cannot be reached'));
    xhr.send(form);
  });
}
