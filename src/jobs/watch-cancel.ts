import type { JobEvents } from '../live/job-events.js';
import type { Queryable } from '../storage/db.js';
import { findJob } from '../storage/jobs.js';
import { updateHeartbeat } from '../storage/transitions.js';

// How often a running job's row is read for a cancel whose event was missed (events are best effort).
const CANCEL_POLL_MS = 2000;

/**
 * Aborts when the job is canceled (or deleted) while this worker runs it: heard at once from
 * its events (in scale-out they come over Redis from the API process that took the cancel), or
 * read from its row every CANCEL_POLL_MS. The job's input takes the signal, so a request in
 * flight to a source that hangs is aborted at once instead of holding the worker until
 * IMPORT_TIMEOUT_MS. Where a running job can be claimed by another worker once its heartbeat
 * is stale (claimStaleAfterMs > 0), the same read beats the heartbeat, at least three times
 * per stale period: batches beat it too, but a slow source can hold one batch far longer.
 */
export function watchCancel(
  deps: { db: Queryable; events: JobEvents; claimStaleAfterMs: number },
  jobId: string,
): { signal: AbortSignal; stop(): void } {
  const controller = new AbortController();
  const cancel = () => controller.abort(new Error('the job was canceled'));
  const unsubscribe = deps.events.subscribe(jobId, (payload) => {
    try {
      if ((JSON.parse(payload) as { status?: string }).status === 'canceled') cancel();
    } catch {
      // not a payload: the row is read in a moment anyway
    }
  });
  let reading = false;
  const timer = setInterval(
    () => {
      if (reading || controller.signal.aborted) return;
      reading = true;
      const beat = deps.claimStaleAfterMs > 0 ? updateHeartbeat(deps.db, jobId) : Promise.resolve(false);
      beat
        .then((running) => (running ? undefined : findJob(deps.db, jobId).then((row) => (!row || row.status === 'canceled') && cancel())))
        .catch(() => {}) // a failed read: the next one tells
        .finally(() => (reading = false));
    },
    deps.claimStaleAfterMs > 0 ? Math.min(CANCEL_POLL_MS, Math.floor(deps.claimStaleAfterMs / 3)) : CANCEL_POLL_MS,
  );
  timer.unref();
  return {
    signal: controller.signal,
    stop() {
      unsubscribe();
      clearInterval(timer);
    },
  };
}
