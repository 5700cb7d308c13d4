import { readEvents } from '../client/sse.js';
import { ApiError, authHeaders, errorFrom, getJson, jobPath, TERMINAL, type Job } from './api.js';

/** live: the event stream is open; polling: it dropped and the status URL is polled instead. */
export type LiveState = 'connecting' | 'live' | 'polling' | 'done';

const POLL_MS = 1500;
const REOPEN_MS = 3000;

interface StreamHandlers {
  onOpen(): void;
  onEvent(type: string, data: string): void;
  /** The stream could not be opened, broke, or ended; err is the API's answer when it refused. */
  onClose(err?: Error): void;
}

/** Reads a job event stream (see readEvents). Returns the function that closes it. */
function openStream(url: string, handlers: StreamHandlers): () => void {
  const controller = new AbortController();
  (async () => {
    const res = await fetch(url, { signal: controller.signal, headers: { accept: 'text/event-stream', ...authHeaders() } });
    if (!res.ok || !res.body) {
      const body: unknown = await res.json().catch(() => undefined);
      if (controller.signal.aborted) return; // closed meanwhile: nobody is listening
      throw errorFrom(res.status, body);
    }
    handlers.onOpen();
    for await (const { event, data } of readEvents(res.body)) handlers.onEvent(event, data);
  })().then(
    () => !controller.signal.aborted && handlers.onClose(),
    (err: Error) => !controller.signal.aborted && handlers.onClose(err),
  );
  return () => controller.abort();
}

/**
 * Follows one job: its event stream while it is open, polling its status URL while it is not
 * (and reopening the stream now and then). Stops after the terminal state, or when the job
 * does not exist. Returns the stop function.
 */
export function followJob(jobId: string, onJob: (job: Job) => void, onState: (state: LiveState) => void, onError: (err: Error) => void): () => void {
  let stopped = false;
  let closeStream: (() => void) | undefined;
  let pollTimer: number | undefined;
  let reopenTimer: number | undefined;

  function stop(): void {
    stopped = true;
    closeStream?.();
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

  function failed(err: Error): void {
    if (stopped) return;
    if (err instanceof ApiError && (err.status === 404 || err.status === 401)) stop(); // gone, or a token is needed first
    onError(err);
  }

  function poll(): void {
    getJson<Job>(jobPath(jobId)).then(deliver, failed);
  }

  function startPolling(): void {
    if (pollTimer !== undefined || stopped) return;
    onState('polling');
    poll();
    pollTimer = window.setInterval(poll, POLL_MS);
  }

  function open(): void {
    closeStream = openStream(`${jobPath(jobId)}/events`, {
      onOpen() {
        window.clearInterval(pollTimer);
        pollTimer = undefined;
        onState('live');
      },
      onEvent: (_type, data) => deliver(JSON.parse(data) as Job),
      onClose(err) {
        if (stopped) return;
        if (err instanceof ApiError && (err.status === 404 || err.status === 401)) return failed(err);
        startPolling();
        reopenTimer = window.setTimeout(open, REOPEN_MS);
      },
    });
  }

  onState('connecting');
  open();
  return stop;
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
