import type { PipelineDeps } from '../jobs/runner.js';
import { listUnfinishedJobIds } from '../storage/jobs.js';
import type { Dispatcher, JobKind } from '../jobs/dispatcher.js';
import { runToEnd } from '../jobs/run.js';

export interface LocalDispatcherOptions {
  pipeline: PipelineDeps;
  concurrency: number;
  /** Runs that may end in an unexpected (transient) error before the job fails with it. */
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
  const { log } = pipeline;
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
    try {
      const outcome = await runToEnd(pipeline, jobId, stop.signal, { maxErrors, retryDelayMs });
      log.info({ jobId, outcome }, 'job run ended');
    } catch (err) {
      log.error({ err, jobId }, 'could not end the job');
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
