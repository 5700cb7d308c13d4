import type { FastifyBaseLogger } from 'fastify';
import type { Dispatcher, JobKind } from './dispatcher.js';
import { AppError } from '../core/errors.js';
import type { JobEvents } from '../live/job-events.js';
import { AddressRefused, checkImportHost, isPublicAddress } from '../net/fetch.js';
import type { UploadStore } from '../sources/uploads.js';
import type { Db } from '../storage/db.js';
import { datasetCapReached, tooManyDatasets } from '../storage/datasets.js';
import { claimKey, findJob, findKey, insertJob, payloadJson, type JobRow, type NewJob } from '../storage/jobs.js';

export interface SubmitDeps {
  db: Db;
  dispatcher: Dispatcher;
  events: JobEvents;
  uploads: UploadStore;
  log: FastifyBaseLogger;
  /** A callback_url may name a loopback or private address (IMPORT_ALLOW_PRIVATE). */
  allowPrivate: boolean;
  /** Datasets Intake may hold (MAX_DATASETS): a load that would create one more is refused. */
  maxDatasets?: number;
}

/** A submit's Idempotency-Key and a hash of what it submitted. */
export interface Idempotency {
  key: string;
  fingerprint: string;
}

class KeyTaken extends Error {}

/**
 * Commits the `queued` row for a stored upload (with its idempotency key, in the same
 * transaction), then dispatches it. If the row cannot be written, or the key already names a
 * job, the stored file is removed, so nothing is left half-made: a repeated key answers the
 * original job (`replayed`), or 422 if it came with another payload.
 */
export async function submitJob(deps: SubmitDeps, job: NewJob, idempotency?: Idempotency): Promise<{ row: JobRow; replayed: boolean }> {
  let row: JobRow | undefined;
  try {
    if (job.load.callbackUrl && !deps.allowPrivate) await checkCallback(job.load.callbackUrl);
    // The publish checks again (datasets made meanwhile): this answers most such loads at once.
    if (job.load.dataset && deps.maxDatasets !== undefined && (await datasetCapReached(deps.db, job.load.dataset, deps.maxDatasets))) {
      throw new AppError(409, 'too_many_datasets', tooManyDatasets(deps.maxDatasets, job.load.dataset).message);
    }
    row = await insertOrReplay(deps.db, job, idempotency);
  } finally {
    // Whatever answers the request other than the new job (an error, a replay), the upload goes.
    if (row?.job_id !== job.jobId) await deps.uploads.remove(job.jobId);
  }
  if (row.job_id !== job.jobId) return { row, replayed: true };
  await announce(deps, row);
  return { row, replayed: false };
}

/** A new job's committed row told to live lists and handed to a worker. */
export async function announce(
  deps: Pick<SubmitDeps, 'events' | 'dispatcher' | 'log'>,
  row: JobRow,
  kind: JobKind = 'interactive',
): Promise<void> {
  // Live job lists show the new job at once; best effort, like every event.
  await deps.events.publish(row.job_id, payloadJson(row));
  // A failed dispatch loses nothing: the row is committed and is taken up again at start.
  await deps.dispatcher.dispatch(row.job_id, kind).catch((err: unknown) => deps.log.error({ err, jobId: row.job_id }, 'dispatch failed'));
}

/** A callback URL whose host resolves to a loopback, private or metadata address is refused (it is checked again at each delivery). */
export async function checkCallback(raw: string): Promise<void> {
  try {
    await checkImportHost(new URL(raw), { allowed: isPublicAddress }, 'callback URLs');
  } catch (err) {
    if (err instanceof AddressRefused) throw new AppError(422, 'callback_refused', err.message);
    throw err;
  }
}

/** The new job's row, or with a key already taken for the same payload, the original job's. */
async function insertOrReplay(db: Db, job: NewJob, idempotency?: Idempotency): Promise<JobRow> {
  for (let tries = 0; tries < 3; tries++) {
    try {
      return await db.transaction(async (tx) => {
        const inserted = await insertJob(tx, job);
        if (idempotency && !(await claimKey(tx, idempotency, job.jobId))) throw new KeyTaken();
        return inserted;
      });
    } catch (err) {
      if (!(err instanceof KeyTaken)) throw err;
    }
    const existing = await findKey(db, idempotency!.key);
    if (!existing) continue; // gone meanwhile (expired and swept, or its job deleted): take the key again
    if (existing.fingerprint !== idempotency!.fingerprint) {
      throw new AppError(
        422,
        'idempotency_key_reused',
        'This Idempotency-Key was used in the last 24 hours for a different request: use a new key for new data',
      );
    }
    const original = await findJob(db, existing.job_id);
    if (original) return original;
    // deleted between the two reads: try again
  }
  throw new AppError(409, 'idempotency_key_busy', 'The Idempotency-Key is being used by another request: try again');
}
