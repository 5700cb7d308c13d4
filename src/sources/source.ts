import type { Input } from '../formats/parse.js';
import type { Queryable } from '../storage/db.js';

/**
 * Where a job's bytes come from, as the runner needs it: the bytes (`open` takes the signal
 * that a cancel aborts), whether a later run may resume where an earlier one stopped, and what
 * the source keeps when the job's rows are published. A stored upload or an import is read the
 * same each time and keeps nothing: it is its Input as it is.
 */
export interface Source extends Input {
  /**
   * Set when a run never resumes at an earlier run's checkpoint, because reading again may give
   * other records (a Jira pull: its pages change): what the log says as the run starts over.
   */
  readonly startsOver?: string;
  /**
   * Runs in the transaction that publishes the job's rows into `dataset`, just after them, so
   * that what it records commits exactly when the job completes.
   */
  published?(tx: Queryable, dataset: string): Promise<void>;
}
