/**
 * The job tracking helpers: the only code that changes a job's status or counters (through
 * the guarded statements of storage/transitions.ts), so an illegal or repeated transition
 * changes no row and the caller can tell (null / false) instead of corrupting state.
 * Every change bumps `version` and runs in a transaction (see `Tracker.change`): once its guard has
 * matched the row and just before its COMMIT the tracker is told it is `changing` (the status
 * cache marks the key, so readers go to the database), and after the COMMIT how it went (the
 * cache gets the new payload and the live event is published).
 */
import type { StatusCache } from '../live/status-cache.js';
import type { JobEvents } from '../live/job-events.js';
import { limitLockWait, type Db, type Queryable } from '../storage/db.js';
import { payloadJson, type JobRow } from '../storage/jobs.js';
import { copyStage } from '../storage/datasets.js';
import {
  deleteRowErrors,
  insertRowErrors,
  lockRunning,
  updateCanceled,
  updateCanceledBytes,
  updateClaimed,
  updateCompleted,
  updateReading,
  updateFailed,
  updateProgress,
  updatePublishing,
  updateReleased,
  updateRequeued,
  updateRestarted,
  type ReadSummary,
  type RowError,
} from '../storage/transitions.js';

/** Where every change to a job goes through: the database it is made in, and who is told. */
export interface Tracker {
  /**
   * Runs one change in a transaction: `apply` makes it and returns the row as changed, or null
   * when its guard matched no row (then nobody is told: nothing changed). Observers are told
   * after `apply`, while the row is locked and before the COMMIT, so that no reader can see the
   * change in the database while the cache still answers the state before it.
   */
  change(jobId: string, apply: (tx: Queryable) => Promise<JobRow | null>): Promise<JobRow | null>;
}

/** A change about to commit. Exactly one of these is called, once. Neither throws. */
interface Change {
  /** It committed: the row as committed. */
  committed(row: JobRow): Promise<void>;
  /** Its COMMIT failed, which leaves open whether it happened. */
  failed(): Promise<void>;
}

/** Called just before a change to the job commits; the change it returns is told how that went. Must not throw. */
type Changing = (jobId: string) => Promise<Change>;

/** Where a job's end is told: its webhook deliveries, written with the change (see webhooks/deliver.ts). */
export interface Outbox {
  /** In the changing transaction: true when it wrote deliveries. */
  write(tx: Queryable, row: JobRow): Promise<boolean>;
  /** After the COMMIT of a change that wrote some. */
  written(): void;
}

function trackerOf(db: Db, changing: Changing, outbox?: Outbox): Tracker {
  return {
    async change(jobId, apply) {
      let change: Change | undefined;
      let row: JobRow | null;
      let wrote = false;
      try {
        row = await db.transaction(async (tx) => {
          const changed = await apply(tx);
          if (changed && outbox) wrote = await outbox.write(tx, changed);
          if (changed) change = await changing(jobId);
          return changed;
        });
      } catch (err) {
        await change?.failed(); // set only if the COMMIT itself failed
        throw err;
      }
      if (row) await change!.committed(row);
      if (wrote) outbox!.written();
      return row;
    },
  };
}

/** The tracker of a running Intake: each change is written through to the cache, then published. */
export function createTracker(db: Db, cache: StatusCache | undefined, events: JobEvents, outbox?: Outbox): Tracker {
  return trackerOf(
    db,
    async (jobId) => {
      const pending = await cache?.changing(jobId);
      return {
        async committed(row) {
          const payload = payloadJson(row);
          await pending?.stored(row.version, payload);
          await events.publish(row.job_id, payload);
        },
        failed: async () => pending?.failed(),
      };
    },
    outbox,
  );
}

/** Another process moved the job on (or holds its checkpoint); this one must let go. */
export class CheckpointConflictError extends Error {
  constructor(jobId: string, expected: number) {
    super(`job ${jobId} is no longer running at checkpoint ${expected}`);
    this.name = 'CheckpointConflictError';
  }
}

/**
 * queued → running, counting the attempt. A job already `running` is claimed again as it is,
 * keeping started_at and records_processed (where the work resumes), but only when its
 * heartbeat is older than `staleAfterMs`: a fresh one means its worker is alive (a duplicate
 * delivery, say after Redis was flushed), and a second claim would count a crash that did not
 * happen. Returns null when the job is gone, finished, or held by a live worker.
 */
export function markRunning(t: Tracker, jobId: string, staleAfterMs = 0): Promise<JobRow | null> {
  return t.change(jobId, (tx) => updateClaimed(tx, jobId, staleAfterMs));
}

/**
 * A worker stopping cleanly (shutdown) gives its attempt back: only crashes count towards
 * MAX_JOB_ATTEMPTS. It also clears the heartbeat, so the next worker may claim the job at
 * once instead of waiting for the heartbeat to go stale. `attempts` is part of what a client
 * sees, so this is a change like the others (a new version, cached, published).
 */
export async function releaseAttempt(t: Tracker, jobId: string): Promise<void> {
  await t.change(jobId, (tx) => updateReleased(tx, jobId));
}

/** A run of consecutive input records: the good ones and the bad ones, by input position. */
export interface Batch {
  /** Input position of the batch's first record: the checkpoint it continues from. */
  from: number;
  /** The good records as rows of the job's stage (COPY text), how many there are, and how many columns they fill. */
  rows: Uint8Array<ArrayBuffer>;
  rowCount: number;
  width: number;
  /** Stage columns to add before the copy (from, to). */
  columns: { from: number; to: number };
  errors: RowError[];
  /** Bytes of the input read when the batch was cut. */
  bytesProcessed: number;
  /** What the loader had learnt of the input when the batch was cut (JSON). */
  loadState: string;
  /** How the input is being read (a CSV's dialect, JSON), when known. */
  dialect?: string;
}

/**
 * Commits one batch: its records, its row errors, and the counters, in one transaction.
 * The checkpoint (records_processed + records_failed) must be exactly `batch.from`, and the
 * job running; otherwise nothing is written and CheckpointConflictError is thrown. `after`
 * is the previous batch's commit: the records are copied at once, but the checkpoint moves
 * only once that one has committed (and not at all if it failed). Returns the row as committed.
 */
export async function incrementProgress(t: Tracker, jobId: string, batch: Batch, after?: Promise<unknown>): Promise<JobRow> {
  const row = await t.change(jobId, async (tx) => {
    try {
      if (batch.rowCount > 0 || batch.columns.to > batch.columns.from) await copyStage(tx, jobId, batch.columns, batch.width, batch.rows);
      if (batch.errors.length > 0) await insertRowErrors(tx, jobId, batch.errors);
    } catch (err) {
      // 23505: another worker holding the same checkpoint wrote these row errors first;
      // 23503: the job row is gone (deleted); 42P01: so is its stage (deleted, or dropped by
      // another worker starting the job over). Either way this worker must let go.
      const code = (err as { code?: unknown }).code;
      if (code === '23505' || code === '23503' || code === '42P01') throw new CheckpointConflictError(jobId, batch.from);
      throw err;
    }
    await after;
    const progress = {
      records: batch.rowCount,
      errors: batch.errors.length,
      bytesProcessed: batch.bytesProcessed,
      from: batch.from,
      loadState: batch.loadState,
      dialect: batch.dialect,
    };
    const changed = await updateProgress(tx, jobId, progress);
    if (!changed) throw new CheckpointConflictError(jobId, batch.from);
    return changed;
  });
  return row!;
}

/** The job was canceled (or taken) while its rows were published: they are rolled back. */
class JobNoLongerRunning extends Error {}

/**
 * running → completed. `publish` moves the job's rows into its dataset in the same
 * transaction, so they appear exactly when the job is completed, and never for a job that is
 * not (canceled meanwhile: nothing is published).
 */
export async function markCompleted(
  t: Tracker,
  jobId: string,
  publish?: (tx: Queryable) => Promise<{ inserted: number; updated: number }>,
  read?: ReadSummary,
  /**
   * Publish first, then lock the job's row: a cancel made meanwhile is not kept waiting behind
   * a long publish (a fast-path COPY), and it wins (the publish is rolled back).
   */
  lockLast = false,
): Promise<boolean> {
  const row = await t
    .change(jobId, async (tx) => {
      if (!lockLast && !(await lockRunning(tx, jobId))) return null;
      const rows = publish ? await publish(tx) : null;
      if (lockLast && !(await lockRunning(tx, jobId))) throw new JobNoLongerRunning();
      return updateCompleted(tx, jobId, rows, read);
    })
    .catch((err: unknown) => {
      if (err instanceof JobNoLongerRunning) return null;
      throw err;
    });
  return row !== null;
}

/** A fast-path load's reading so far (see updateReading): null when the job is no longer running. */
export function noteReading(t: Tracker, jobId: string, records: number, bytes: number, dialect: string): Promise<JobRow | null> {
  return t.change(jobId, (tx) => updateReading(tx, jobId, records, bytes, dialect));
}

/** A running job's phase becomes publishing: its readers see it before the publish's transaction holds the row. */
export async function markPublishing(t: Tracker, jobId: string): Promise<void> {
  await t.change(jobId, (tx) => updatePublishing(tx, jobId));
}

/** A running job started over from its first record (see updateRestarted); its row errors go too. */
export function restartJob(t: Tracker, jobId: string): Promise<JobRow | null> {
  return t.change(jobId, async (tx) => {
    const row = await updateRestarted(tx, jobId);
    if (row) await deleteRowErrors(tx, jobId);
    return row;
  });
}

/** queued | running → failed, with the reason. */
export async function markFailed(t: Tracker, jobId: string, error: string): Promise<boolean> {
  return (await t.change(jobId, (tx) => updateFailed(tx, jobId, error))) !== null;
}

/**
 * queued | running → canceled. A running job's worker is not interrupted: its next batch
 * commit finds the job no longer running (the guard in incrementProgress) and lets go, its
 * uncommitted batch rolled back, so what stays is exactly the records counted here.
 * Returns null when the job is gone or already finished. Made for an API client, it waits a
 * bounded time for the row's lock (limitLockWait).
 */
export function cancelJob(t: Tracker, jobId: string): Promise<JobRow | null> {
  return t.change(jobId, async (tx) => {
    await limitLockWait(tx);
    return updateCanceled(tx, jobId);
  });
}

/** A canceled job shows how far its worker read before it heard the cancel (the bytes only: no record is added). */
export async function noteCanceledRead(t: Tracker, jobId: string, bytes: number): Promise<void> {
  if (bytes > 0) await t.change(jobId, (tx) => updateCanceledBytes(tx, jobId, bytes));
}

/**
 * failed | canceled → queued, from a clean slate: the row errors of earlier runs are deleted
 * and the counters reset, so the job's result is always one whole run over its stored upload.
 * `attempts` keeps counting; MAX_JOB_ATTEMPTS counts again from here.
 * `maxErrors` and `encoding` replace the job's when given. Returns null when the job is gone or
 * not failed or canceled. Like a cancel, it waits a bounded time for the row's lock.
 */
export function retryJob(t: Tracker, jobId: string, maxErrors: number | null, encoding: string | null = null): Promise<JobRow | null> {
  return t.change(jobId, async (tx) => {
    await limitLockWait(tx);
    const row = await updateRequeued(tx, jobId, maxErrors, encoding);
    if (row) await deleteRowErrors(tx, jobId);
    return row;
  });
}
