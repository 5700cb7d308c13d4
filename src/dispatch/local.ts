import { setTimeout as sleep } from 'node:timers/promises';
import { markFailed, releaseAttempt, type Tracker } from '../jobs/tracking.js';
import { runJob, type PipelineDeps } from '../ingest/pipeline.js';
import { DatabaseUnavailableError } from '../storage/db.js';
import { listUnfinishedJobIds } from '../storage/jobs.js';
import type { Dispatcher, JobKind } from './dispatcher.js';

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

export interface LocalDispatcherOptions {
  pipeline: PipelineDeps;
  concurrency: number;
  /** Runs after an unexpected (not input) error before the job is failed. */
  maxErrors?: number;
  retryDelayMs?: number;
}

/**
 * Runs jobs in this process, `concurrency` at a time, in submission order, interactive ones
 * (uploads, imports, retries) before scheduled ones waiting with them. The job rows are
 * the queue's truth: at start every `queued` or `running` row is taken up again, so a
 * restart (even after kill -9) resumes all unfinished work from its checkpoint.
 */
export function createLocalDispatcher(options: LocalDispatcherOptions): Dispatcher {
  const { pipeline, concurrency, maxErrors = 3, retryDelayMs = 1000 } = options;
  const { log, tracker } = pipeline;
  const pending: string[] = [];
  const scheduled: string[] = []; // taken only when no interactive job waits
  const known = new Set<string>(); // queued or in hand, so a job is never run twice at once
  // Dispatched again while in hand (a retry of a job whose canceled run has not let go yet):
  // run once more when the current run ends.
  const again = new Set<string>();
  const active = new Set<Promise<void>>();
  const stop = new AbortController();
  let started = false;

  async function work(jobId: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        const outcome = await runJob(pipeline, jobId, stop.signal);
        log.info({ jobId, outcome }, 'job run ended');
        return;
      } catch (err) {
        if (stop.signal.aborted) return; // shutting down: the job resumes on the next start
        if (err instanceof DatabaseUnavailableError) {
          // Not the job's fault, and it could not be marked failed anyway: wait and resume.
          log.warn({ jobId, err: err.cause }, 'database unavailable; the job resumes when it is back');
          attempt--;
          if (!(await waitForDatabase(tracker, jobId, retryDelayMs, stop.signal))) return;
          continue;
        }
        log.error({ err, jobId, attempt }, 'job run failed unexpectedly');
        if (attempt >= maxErrors) {
          const reason = err instanceof Error ? err.message : String(err);
          await markFailed(tracker, jobId, `ingestion failed after ${attempt} attempts: ${reason}`).catch((e: unknown) =>
            log.error({ err: e, jobId }, 'could not mark the job failed'),
          );
          return;
        }
        await sleep(retryDelayMs * attempt, undefined, { signal: stop.signal }).catch(() => {});
        if (stop.signal.aborted) return;
      }
    }
  }

  function pump(): void {
    while (started && !stop.signal.aborted && active.size < concurrency && pending.length + scheduled.length > 0) {
      const jobId = pending.length > 0 ? pending.shift()! : scheduled.shift()!;
      const run: Promise<void> = work(jobId).finally(() => {
        active.delete(run);
        known.delete(jobId);
        if (again.delete(jobId)) enqueue(jobId);
        pump();
      });
      active.add(run);
    }
  }

  function enqueue(jobId: string, kind: JobKind = 'interactive'): void {
    if (known.has(jobId)) {
      if (!pending.includes(jobId) && !scheduled.includes(jobId)) again.add(jobId);
      return;
    }
    known.add(jobId);
    (kind === 'scheduled' ? scheduled : pending).push(jobId);
    pump();
  }

  return {
    async dispatch(jobId, kind) {
      // Without workers nothing would ever take it off the list. The committed row is the
      // job: a process with workers takes it up at its start.
      if (concurrency > 0) enqueue(jobId, kind);
    },
    async start() {
      if (concurrency === 0) return;
      started = true;
      const unfinished = await listUnfinishedJobIds(pipeline.db);
      if (unfinished.length > 0) log.info({ count: unfinished.length }, 'taking up unfinished jobs');
      for (const jobId of unfinished) enqueue(jobId);
    },
    async close() {
      stop.abort();
      await Promise.allSettled([...active]);
    },
  };
}
