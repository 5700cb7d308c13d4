import { ApiError, getJson, jobPath, TERMINAL, type Job } from './api.js';

/** live: the event stream is open; polling: it dropped and the status URL is polled instead. */
export type LiveState = 'connecting' | 'live' | 'polling' | 'done';

const POLL_MS = 1500;
const REOPEN_MS = 5000;

/**
 * Follows one job: its event stream while it is open, polling its status URL while it is not
 * (EventSource reconnects by itself; one the server refused is reopened here). Stops after
 * the terminal state. Returns the stop function.
 */
export function followJob(jobId: string, onJob: (job: Job) => void, onState: (state: LiveState) => void, onError: (err: Error) => void): () => void {
  let stopped = false;
  let source: EventSource | undefined;
  let pollTimer: number | undefined;
  let reopenTimer: number | undefined;

  function stop(): void {
    stopped = true;
    source?.close();
    window.clearInterval(pollTimer);
    window.clearTimeout(reopenTimer);
  }

  function deliver(job: Job): void {
    if (stopped) return;
    onJob(job);
    if (TERMINAL.has(job.status)) {
      stop();
      onState('done');
    }
  }

  function poll(): void {
    getJson<Job>(jobPath(jobId)).then(deliver, (err: Error) => {
      if (stopped) return;
      if (err instanceof ApiError && err.status === 404) stop(); // deleted, or never was
      onError(err);
    });
  }

  function startPolling(): void {
    if (pollTimer !== undefined || stopped) return;
    onState('polling');
    poll();
    pollTimer = window.setInterval(poll, POLL_MS);
  }

  function open(): void {
    source = new EventSource(`${jobPath(jobId)}/events`);
    const onMessage = (event: MessageEvent<string>) => deliver(JSON.parse(event.data) as Job);
    source.addEventListener('status', onMessage);
    source.addEventListener('progress', onMessage);
    source.onopen = () => {
      window.clearInterval(pollTimer);
      pollTimer = undefined;
      onState('live');
    };
    source.onerror = () => {
      if (stopped) return;
      startPolling();
      // A refused stream (404, 503) is not retried by the browser: try again later.
      if (source?.readyState === EventSource.CLOSED) reopenTimer = window.setTimeout(open, REOPEN_MS);
    };
  }

  onState('connecting');
  open();
  return stop;
}

/**
 * Follows every job (GET /api/jobs/events) for the jobs list. onLive(false) tells the list
 * to poll while the stream is down.
 */
export function followAllJobs(onEvent: (job: Job, kind: 'status' | 'progress') => void, onLive: (live: boolean) => void): () => void {
  let stopped = false;
  let source: EventSource | undefined;
  let reopenTimer: number | undefined;

  function open(): void {
    source = new EventSource('/api/jobs/events');
    source.addEventListener('status', (event: MessageEvent<string>) => onEvent(JSON.parse(event.data) as Job, 'status'));
    source.addEventListener('progress', (event: MessageEvent<string>) => onEvent(JSON.parse(event.data) as Job, 'progress'));
    source.onopen = () => onLive(true);
    source.onerror = () => {
      if (stopped) return;
      onLive(false);
      if (source?.readyState === EventSource.CLOSED) reopenTimer = window.setTimeout(open, REOPEN_MS);
    };
  }

  open();
  return () => {
    stopped = true;
    source?.close();
    window.clearTimeout(reopenTimer);
  };
}
