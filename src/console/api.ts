import type { JobPayload, JobStatus } from '../schemas/job.js';

export { TERMINAL_STATUSES as TERMINAL } from '../schemas/job.js';

export type Job = JobPayload;
export type SubmittedJob = Job & { status_url: string };
export interface JobList {
  results: Job[];
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

// The access token (when Intake has API_TOKENS), kept for this browser tab's session only.
const TOKEN_KEY = 'intake-token';
export const accessToken = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (token: string) => sessionStorage.setItem(TOKEN_KEY, token),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** Told when the API answers 401: the console asks for a token. */
let unauthorized: (message: string) => void = () => {};
export function onUnauthorized(listener: (message: string) => void): void {
  unauthorized = listener;
}

export function authHeaders(): Record<string, string> {
  const token = accessToken.get();
  return token ? { authorization: `Bearer ${token}` } : {};
}

export function errorFrom(status: number, body: unknown): ApiError {
  const { detail, code } = (body ?? {}) as { detail?: unknown; code?: string };
  const error = detail === undefined ? new ApiError(status, 'http_error', `Intake answered ${status}`) : new ApiError(status, code ?? 'http_error', detailText(detail));
  if (status === 401) unauthorized(error.message);
  return error;
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, { signal, headers: { accept: 'application/json', ...authHeaders() } });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new ApiError(0, 'network', 'Intake cannot be reached');
  }
  const body: unknown = await res.json().catch(() => undefined);
  signal?.throwIfAborted(); // closed meanwhile: an unread body is not an answer
  if (!res.ok) throw errorFrom(res.status, body);
  return body as T;
}

export function jobPath(jobId: string): string {
  return `/api/job/${encodeURIComponent(jobId)}`;
}

export function listJobs(query: { status?: JobStatus; cursor: string | null; limit: number }, signal?: AbortSignal): Promise<JobList> {
  const params = new URLSearchParams({ limit: String(query.limit) });
  if (query.status) params.set('status', query.status);
  if (query.cursor) params.set('cursor', query.cursor);
  return getJson<JobList>(`/api/jobs?${params}`, signal);
}

export function pagePath(jobId: string, kind: 'records' | 'errors', limit: number, cursor: string | null): string {
  const params = new URLSearchParams({ limit: String(limit) });
  if (cursor) params.set('cursor', cursor);
  return `${jobPath(jobId)}/${kind}?${params}`;
}

/** POST or DELETE on a job (cancel, retry, delete); answers the job, or nothing for a delete. */
export async function jobAction(jobId: string, action: 'cancel' | 'retry' | 'delete'): Promise<Job | null> {
  const path = action === 'delete' ? jobPath(jobId) : `${jobPath(jobId)}/${action}`;
  let res: Response;
  try {
    res = await fetch(path, { method: action === 'delete' ? 'DELETE' : 'POST', headers: { accept: 'application/json', ...authHeaders() } });
  } catch {
    throw new ApiError(0, 'network', 'Intake cannot be reached');
  }
  const body: unknown = res.status === 204 ? null : await res.json().catch(() => undefined);
  if (!res.ok) throw errorFrom(res.status, body);
  return body as Job | null;
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
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.total);
    xhr.onload = () => (xhr.status === 202 ? resolve(xhr.response as SubmittedJob) : reject(errorFrom(xhr.status, xhr.response)));
    xhr.onerror = () => reject(new ApiError(0, 'network', 'The upload failed: Intake cannot be reached'));
    xhr.send(form);
  });
}
