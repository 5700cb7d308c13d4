import { ApiError, createApi, type SubmittedJob } from '../client/api.js';
import type { JobPayload } from '../core/job.js';

export {
  ApiError,
  jobPath,
  type Dataset,
  type JobList,
  type Page,
  type RecordRow,
  type RowError,
  type SqlResult,
  type SubmittedJob,
} from '../client/api.js';
export { TERMINAL_STATUSES as TERMINAL } from '../core/job.js';

export type Job = JobPayload;

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

/** The API, from the page's own origin, with the session's token; a 401 asks for a token. */
export const api = createApi({
  base: '',
  token: accessToken.get,
  onError: (error) => error.status === 401 && unauthorized(error.message),
});

/**
 * POST /api/upload with upload progress (fetch cannot report it, XMLHttpRequest can). `fields`
 * are the load options (max_errors, dataset, mode, key, encoding, delimiter, header, sheet…);
 * they go first in the form: the server reads fields sent before the file. `format` is the
 * file's format when its name does not say it.
 */
export function uploadFile(
  file: File,
  fields: Record<string, string>,
  format: string | undefined,
  onProgress: (sent: number, total: number) => void,
): Promise<SubmittedJob> {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  form.append('file', file, file.name);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/api/upload${format ? `?${new URLSearchParams({ format })}` : ''}`);
    xhr.responseType = 'json';
    xhr.setRequestHeader('accept', 'application/json');
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.total);
    xhr.onload = () => (xhr.status === 202 ? resolve(xhr.response as SubmittedJob) : reject(api.answerError(xhr.status, xhr.response)));
    xhr.onerror = () => reject(new ApiError(0, 'network', 'The upload failed: cannot reach Intake'));
    xhr.send(form);
  });
}

/** The import a schedule submits at each beat (the body of POST /api/import; URLs without their query). */
export type ScheduleImport = Record<string, unknown> & {
  source?: 'url' | 'jira' | 'sql';
  url?: string;
  sql?: string;
  connection?: string;
  jql?: string;
  dataset?: string;
};

/** A schedule as GET /api/schedules lists it (see src/http/routes/schedules.ts). */
export interface Schedule {
  schedule_id: string;
  import: ScheduleImport;
  every: string;
  every_ms: number;
  paused: boolean;
  created_at: string;
  /** null while paused */
  next_run_at: string | null;
  last_run_at: string | null;
  /** Why the last beat could not start a job, or its last run failed (and, paused after a day of failures, that it was). */
  last_error: string | null;
  runs: number;
  /** Beats skipped because the previous run was still queued or running. */
  skipped: number;
  /** Beats put off while schedules together had spent MAX_SCHEDULED_JOBS_PER_MINUTE. */
  deferred: number;
  /** Failures in a row: from the 3rd each next run waits twice as long. */
  consecutive_failures: number;
  failing_since: string | null;
  last_run: Job | null;
}

/** GET /api/schedules/{id}: the schedule and its last jobs, newest first. */
export type ScheduleDetail = Schedule & { recent_runs: Job[] };

export function schedulePath(scheduleId: string): string {
  return `/api/schedules/${encodeURIComponent(scheduleId)}`;
}

/** An answer of the API as JSON (an error answer throws an ApiError, through api.send). */
async function readJson<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await api.send(path, init);
  const body: unknown = await res.json().catch(() => {
    throw new ApiError(res.status, 'bad_answer', `Intake answered ${res.status} with a body that is not JSON`);
  });
  init.signal?.throwIfAborted(); // closed meanwhile: an unread body is not an answer
  return body as T;
}

export const listSchedules = (signal?: AbortSignal) =>
  readJson<{ results: Schedule[] }>('/api/schedules', { signal }).then((answer) => answer.results);
export const getSchedule = (scheduleId: string, signal?: AbortSignal) => readJson<ScheduleDetail>(schedulePath(scheduleId), { signal });
export const pauseSchedule = (scheduleId: string) => readJson<Schedule>(`${schedulePath(scheduleId)}/pause`, { method: 'POST' });
export const resumeSchedule = (scheduleId: string) => readJson<Schedule>(`${schedulePath(scheduleId)}/resume`, { method: 'POST' });
export const createSchedule = (body: { import: Record<string, unknown>; every: string }) =>
  readJson<Schedule>('/api/schedules', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
export async function removeSchedule(scheduleId: string): Promise<void> {
  await api.send(schedulePath(scheduleId), { method: 'DELETE' });
}

import type { Preview } from '../client/api.js';
export type { Preview } from '../client/api.js';

/** POST /api/preview of a file (or its first bytes: all a preview reads), with the reading options as form fields before it. */
export function previewFile(file: Blob, name: string, fields: Record<string, string>, signal?: AbortSignal): Promise<Preview> {
  const form = new FormData();
  for (const [field, value] of Object.entries(fields)) form.append(field, value);
  form.append('file', file, name);
  return readJson<Preview>('/api/preview', { method: 'POST', body: form, signal });
}

/** POST /api/preview of an import: the start of the file at a URL or s3:// address, read by the server. */
export const previewImport = (body: Record<string, unknown>, signal?: AbortSignal) =>
  readJson<Preview>('/api/preview', {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
    signal,
  });

/** A saved connection as GET /api/connections lists it (never its secret; see src/http/routes/connections.ts). */
export interface Connection {
  id: string;
  type: 'jira';
  name: string;
  base_url: string;
  email: string;
  created_at: string;
}

export const listConnections = (signal?: AbortSignal) =>
  readJson<{ results: Connection[] }>('/api/connections', { signal }).then((answer) => answer.results);

/** PATCH /api/schedules/{id}: a new interval; the next run is one new interval after the last run, never before now. */
export const editSchedule = (scheduleId: string, every: string) =>
  readJson<Schedule>(schedulePath(scheduleId), {
    method: 'PATCH',
    body: JSON.stringify({ every }),
    headers: { 'content-type': 'application/json' },
  });

/** POST /api/connections: saved only once the site accepts the token (a 422 says what it answered); the token is never answered. */
export const createConnection = (body: { type: 'jira'; name?: string; base_url: string; email: string; api_token: string }) =>
  readJson<Connection>('/api/connections', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

export async function removeConnection(id: string): Promise<void> {
  await api.send(`/api/connections/${encodeURIComponent(id)}`, { method: 'DELETE' });
}
