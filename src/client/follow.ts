import { TERMINAL_STATUSES, type JobPayload } from '../core/job.js';
import { readEvents } from './sse.js';

/** connecting: opening the event stream; live: it is open; polling: it is down and the status URL is polled; done: the job ended. */
export type FollowState = 'connecting' | 'live' | 'polling' | 'done';

export interface FollowOptions {
  /** Opens the job's event stream: its body, or throws (an API refusal, a network error). */
  openStream(signal: AbortSignal): Promise<ReadableStream<Uint8Array>>;
  /** Reads the job's status URL once. */
  read(signal: AbortSignal): Promise<JobPayload>;
  /** An error that ends the following (the job is gone, a token is needed); any other is retried. */
  isFatal(err: unknown): boolean;
  onJob(job: JobPayload): void;
  onState?(state: FollowState): void;
  /** Each error that did not end the following: a stream that could not open or broke, a poll that failed. */
  onError?(err: unknown, during: 'stream' | 'poll'): void;
  pollMs: number;
  /** While polling, the stream is tried again after this long. */
  reopenMs: number;
  signal?: AbortSignal;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- rejects with the signal's own reason, as follow() promises
    if (signal.aborted) return reject(signal.reason);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stop = () => {
      clearTimeout(timer);
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- as above
      reject(signal.reason);
    };
    timer = setTimeout(() => {
      signal.removeEventListener('abort', stop);
      resolve();
    }, ms);
    signal.addEventListener('abort', stop, { once: true });
  });
}

/**
 * Follows a job to its end: its event stream while that is open, its status URL polled while
 * it is not (the stream is tried again every `reopenMs`). Each payload newer than the last is
 * told once, in version order. Resolves with the terminal payload; rejects with a fatal error,
 * or with the signal's reason when it aborts.
 */
export async function follow(options: FollowOptions): Promise<JobPayload> {
  const signal = options.signal ?? new AbortController().signal;
  let last: JobPayload | undefined;
  const ended = () => last !== undefined && TERMINAL_STATUSES.has(last.status);
  const deliver = (job: JobPayload) => {
    if (last && job.version <= last.version) return;
    last = job;
    options.onJob(job);
  };
  const survive = (err: unknown, during: 'stream' | 'poll') => {
    if (signal.aborted) throw signal.reason;
    if (options.isFatal(err)) throw err;
    options.onError?.(err, during);
  };

  options.onState?.('connecting');
  for (;;) {
    const stream = new AbortController();
    const stop = () => stream.abort(signal.reason);
    signal.addEventListener('abort', stop, { once: true });
    try {
      const body = await options.openStream(stream.signal);
      options.onState?.('live');
      for await (const { data } of readEvents(body)) {
        deliver(JSON.parse(data) as JobPayload);
        if (ended()) break;
      }
    } catch (err) {
      survive(err, 'stream');
    } finally {
      signal.removeEventListener('abort', stop);
      stream.abort(); // ends the request if the loop left the stream early
    }
    if (ended()) break;

    // The stream is down (or the server ended it early, e.g. while shutting down): poll.
    options.onState?.('polling');
    const reopenAt = Date.now() + options.reopenMs;
    do {
      try {
        deliver(await options.read(signal));
      } catch (err) {
        survive(err, 'poll');
      }
      if (ended()) break;
      await sleep(options.pollMs, signal);
    } while (Date.now() < reopenAt);
    if (ended()) break;
  }
  options.onState?.('done');
  return last!;
}
