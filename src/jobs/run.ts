import { setTimeout as sleep } from 'node:timers/promises';
import { markFailed, releaseAttempt, type Tracker } from './tracking.js';
import { runJob, type PipelineDeps, type RunOutcome } from './runner.js';
import { DatabaseUnavailableError } from '../storage/db.js';

/**
 * After a run ended in DatabaseUnavailableError: waits until the database answers again and
 * gives back the attempt the run claimed (a lost connection is not a crash, and only crashes
 * count toward MAX_JOB_ATTEMPTS); that release is the probe. The pool replaces a dropped
 * connection at once, so the first probe comes after `delayMs`; an outage is probed less and
 * less often, down to every 5 × delayMs. Returns false if `signal` aborts first.
 */
export async function waitForDatabase(tracker: Tracker, jobId: string, delayMs: number, signal: AbortSignal): Promise<boolean> {
  for (let wait = delayMs; ; wait = Math.min(wait * 2, delayMs * 5)) {
    await sleep(wait, undefined, { signal }).catch(() => {});
    if (signal.aborted) return false;
    try {
      await releaseAttempt(tracker, jobId);
      return true;
    } catch (err) {
      // Any other error is an answer: the next run meets it and reports it.
      if (!(err instanceof DatabaseUnavailableError)) return true;
    }
  }
}

export interface RetryOptions {
  /** Runs that may end in an unexpected error before the job fails with it. */
  maxErrors: number;
  retryDelayMs: number;
}

/**
 * Runs a job to its end in this worker, whichever dispatcher took it. The pipeline fails the
 * job itself on a bad input or a permanent database error; what reaches here is transient (a
 * serialization failure, a lost connection) or unexpected, and is tried again from the
 * checkpoint. A run that met an error did not crash: it gives its claim back, so that
 * MAX_JOB_ATTEMPTS counts only the runs that stopped their worker, and the job ends with the
 * last error's own message. A lost database is waited for, as long as it takes. 'stopped'
 * when `signal` (shutdown) aborts first.
 */
export async function runToEnd(pipeline: PipelineDeps, jobId: string, signal: AbortSignal, options: RetryOptions): Promise<RunOutcome> {
  const { log, tracker } = pipeline;
  const giveBack = () =>
    releaseAttempt(tracker, jobId).catch((err: unknown) => log.warn({ err, jobId }, 'could not give back the attempt'));
  for (let attempt = 1; ; attempt++) {
    try {
      return await runJob(pipeline, jobId, signal);
    } catch (err) {
      if (signal.aborted) {
        await giveBack();
        return 'stopped';
      }
      if (err instanceof DatabaseUnavailableError) {
        // Not the job's fault, and it could not be marked failed anyway: wait and resume.
        log.warn({ jobId, err: err.cause }, 'database unavailable; the job resumes when it is back');
        attempt--;
        if (!(await waitForDatabase(tracker, jobId, options.retryDelayMs, signal))) return 'stopped';
        continue;
      }
      log.error({ err, jobId, attempt }, 'job run failed unexpectedly');
      if (attempt >= options.maxErrors) {
        const reason = err instanceof Error ? err.message : String(err);
        await markFailed(tracker, jobId, `ingestion failed after ${attempt} attempts: ${reason}`);
        return 'failed';
      }
      await giveBack();
      await sleep(options.retryDelayMs * attempt, undefined, { signal }).catch(() => {});
      if (signal.aborted) return 'stopped';
    }
  }
}
