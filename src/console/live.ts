import { follow, type FollowState } from '../client/follow.js';
import { readEvents } from '../client/sse.js';
import { api, ApiError, type Job } from './api.js';

export type LiveState = FollowState;

const POLL_MS = 1500;
const REOPEN_MS = 3000;

interface StreamHandlers {
  onOpen(): void;
  onEvent(type: string, data: string): void;
  /** The stream could not be opened, broke, or ended; err is the API's answer when it refused. */
  onClose(err?: Error): void;
}

/** Reads a job event stream (see readEvents). Returns the function that closes it. */
function openStream(path: string, handlers: StreamHandlers): () => void {
  const controller = new AbortController();
  (async () => {
    const body = await api.stream(path, controller.signal);
    handlers.onOpen();
    for await (const { event, data } of readEvents(body)) handlers.onEvent(event, data);
  })().then(
    () => !controller.signal.aborted && handlers.onClose(),
    (err: Error) => !controller.signal.aborted && handlers.onClose(err),
  );
  return () => controller.abort();
}

/**
 * Follows one job (see follow): its event stream while it is open, polling its status URL
 * while it is not. Stops after the terminal state, or when the job does not exist or a token
 * is needed. A poll that fails is told to onError; a stream that drops only shows as polling.
 * Returns the stop function.
 */
export function followJob(
  jobId: string,
  onJob: (job: Job) => void,
  onState: (state: LiveState) => void,
  onError: (err: Error) => void,
): () => void {
  const controller = new AbortController();
  follow({
    openStream: (signal) => api.events(jobId, signal),
    read: (signal) => api.job(jobId, signal),
    isFatal: (err) => err instanceof ApiError && (err.status === 404 || err.status === 401),
    onJob,
    onState,
    onError: (err, during) => during === 'poll' && onError(err as Error),
    pollMs: POLL_MS,
    reopenMs: REOPEN_MS,
    signal: controller.signal,
  }).catch((err: Error) => !controller.signal.aborted && onError(err));
  return () => controller.abort();
}

/**
 * Follows every job (GET /api/jobs/events) for the jobs list. onLive(false) tells the list
 * to poll while the stream is down; it is reopened every few seconds.
 */
export function followAllJobs(onEvent: (job: Job, kind: 'status' | 'progress') => void, onLive: (live: boolean) => void): () => void {
  let stopped = false;
  let closeStream: (() => void) | undefined;
  let reopenTimer: number | undefined;

  function open(): void {
    closeStream = openStream('/api/jobs/events', {
      onOpen: () => onLive(true),
      onEvent: (type, data) => (type === 'status' || type === 'progress') && onEvent(JSON.parse(data) as Job, type),
      onClose(err) {
        if (stopped) return;
        onLive(false);
        if (err instanceof ApiError && err.status === 401) return; // reopened once a token is given
        reopenTimer = window.setTimeout(open, REOPEN_MS);
      },
    });
  }

  open();
  return () => {
    stopped = true;
    closeStream?.();
    window.clearTimeout(reopenTimer);
  };
}
