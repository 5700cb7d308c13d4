/**
 * Who is waiting for a job: a client (an upload, an import, a retry) or nobody (a schedule's
 * beat). Interactive jobs are taken before scheduled ones that are waiting.
 */
export type JobKind = 'interactive' | 'scheduled';

/** Hands committed `queued` jobs to workers. Embedded: in-process; scale-out: a queue. */
export interface Dispatcher {
  /** Called after the job's `queued` row is committed. */
  dispatch(jobId: string, kind?: JobKind): Promise<void>;
  /** Starts working, including on jobs left unfinished by a previous run. */
  start(): Promise<void>;
  /** Stops taking jobs; a job in hand stops at its next batch boundary. */
  close(): Promise<void>;
}
