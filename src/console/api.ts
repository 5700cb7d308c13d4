import { ApiError, createApi, type SubmittedJob } from '../client/api.js';
import type { JobPayload, WriteMode } from '../schemas/job.js';

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
export { TERMINAL_STATUSES as TERMINAL } from '../schemas/job.js';

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

/** How an upload is loaded; an empty dataset or key is left out (the server's defaults). */
export interface UploadOptions {
  maxErrors: number;
  dataset: string;
  mode: WriteMode;
  key: string;
}

/**
 * POST /api/upload with upload progress (fetch cannot report it, XMLHttpRequest can).
 * The options go first in the form: the server reads fields sent before the file.
 */
export function uploadFile(file: File, options: UploadOptions, onProgress: (sent: number, total: number) => void): Promise<SubmittedJob> {
  const form = new FormData();
  form.append('max_errors', String(options.maxErrors));
  if (options.dataset) form.append('dataset', options.dataset);
  form.append('mode', options.mode);
  if (options.key) form.append('key', options.key);
  form.append('file', file, file.name);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/upload');
    xhr.responseType = 'json';
    xhr.setRequestHeader('accept', 'application/json');
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.total);
    xhr.onload = () => (xhr.status === 202 ? resolve(xhr.response as SubmittedJob) : reject(api.answerError(xhr.status, xhr.response)));
    xhr.onerror = () => reject(new ApiError(0, 'network', 'The upload failed: cannot reach Intake'));
    xhr.send(form);
  });
}
