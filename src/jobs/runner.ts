import type { FastifyBaseLogger } from 'fastify';
import type { InputLimits } from '../formats/limits.js';
import type { JobEvents } from '../live/job-events.js';
import { Loader, type LoadState } from '../datasets/loader.js';
import { COLUMN_TYPES, type ColumnType } from '../datasets/types.js';
import {
  CheckpointConflictError,
  incrementProgress,
  markCompleted,
  markFailed,
  markRunning,
  noteCanceledRead,
  releaseAttempt,
  restartJob,
  type Batch,
  type Tracker,
} from './tracking.js';
import { isTabular, TERMINAL_STATUSES } from '../core/job.js';
import { createStage, datasetColumns, dropStage, publishStage, PublishConflict, stageRowCount } from '../storage/datasets.js';
import type { Db } from '../storage/db.js';
import { findJob, type JobRow } from '../storage/jobs.js';
import { findLoadState, updateHeartbeat, type RowError } from '../storage/transitions.js';
import { IngestError } from '../core/errors.js';
import { readRecords, type Input, type ReadProgress } from '../formats/parse.js';
import { jiraJobInput } from '../sources/jira.js';
import { saveJiraMark } from '../storage/connections.js';
import { importInput, type ImportSettings } from '../sources/imports.js';
import type { UploadStore } from '../sources/uploads.js';

export interface PipelineDeps {
  db: Db;
  tracker: Tracker;
  /** Where a cancel made by another request (or process) is heard. */
  events: JobEvents;
  uploads: UploadStore;
  imports: ImportSettings;
  batchSize: number;
  limits: InputLimits;
  /** The schema of the datasets' tables. */
  datasetSchema: string;
  /** Datasets Intake may hold (MAX_DATASETS). */
  maxDatasets: number;
  /** Claims allowed before a job that keeps stopping its workers is failed. */
  maxAttempts: number;
  /**
   * A running job is claimed only if its heartbeat is older than this: 0 in-process (where a
   * running row can only be left by a dead process), the queue's lock time with BullMQ.
   */
  claimStaleAfterMs: number;
  log: FastifyBaseLogger;
}

export type RunOutcome = 'completed' | 'failed' | 'skipped' | 'stopped';

// SQLSTATE classes that the same statement on the same data meets again, whatever the timing:
// 0A feature not supported, 21 cardinality violation, 22 data exception (a string jsonb cannot
// hold), 23 integrity constraint violation (a duplicate key), 42 syntax error or access rule
// violation (an object that exists already), 44 WITH CHECK OPTION violation, 54 program limit
// exceeded (too many columns). The others (40 a serialization failure or deadlock, 55P03 a lock
// not available, 57014 a canceled statement, XX internal errors) may pass when tried again.
const PERMANENT_CLASSES = new Set(['0A', '21', '22', '23', '42', '44', '54']);

/** A database error that retrying cannot mend: met by the publish, it fails the job at once. */
function isPermanentDatabaseError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length === 5 && PERMANENT_CLASSES.has(code.slice(0, 2));
}

// SQLSTATE class 22 (data exception), e.g. a string PostgreSQL's jsonb cannot hold: a batch's
// rows are wrong. A batch's other errors are about its stage (a column another batch in flight
// is adding, a stage another worker made anew) and pass when tried again.
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('22');
}

/** A database error's message with its detail (which names the key, the value or the column). */
function databaseMessage(err: unknown): string {
  const { message, detail } = err as { message?: unknown; detail?: unknown };
  return typeof detail === 'string' && detail ? `${String(message)} (${detail})` : String(message);
}

// Batches are also cut at this many bytes of staged rows, so that memory stays bounded when
// records are large (BATCH_SIZE records of MAX_RECORD_LENGTH each would not be).
const BATCH_MAX_BYTES = 32 * 1024 ** 2;

// Stage pages (8 KiB) an embedded publish moves per statement: about 40,000 rows of 150 bytes.
const PGLITE_PUBLISH_PAGES = 800;

/**
 * A batch's stage rows as UTF-8 bytes, each written as it is made: its text (built from
 * slices of the input's chunks) dies young, instead of living on, and being promoted to the
 * old generation, for as long as the batch is built and in flight.
 */
class RowBytes {
  private buffer = Buffer.allocUnsafe(256 * 1024);
  length = 0;

  add(text: string): void {
    const room = this.length + text.length * 3 + 1; // UTF-8 takes at most 3 bytes a UTF-16 unit
    if (room > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(room, this.buffer.length * 2));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    this.length += this.buffer.write(text, this.length);
    this.buffer[this.length++] = 0x0a;
  }

  bytes(): Uint8Array<ArrayBuffer> {
    return new Uint8Array(this.buffer.buffer, this.buffer.byteOffset, this.length);
  }
}

/**
 * The types a job's values must fit, by column name or name as written: those its submit
 * declared, then (unless it replaces the dataset or may widen it) the dataset's own. A CSV
 * value into an existing jsonb column must always be JSON.
 */
async function targetTypes(deps: PipelineDeps, job: JobRow, declared: Record<string, string> | null): Promise<Map<string, ColumnType>> {
  const targets = new Map(Object.entries(declared ?? {}) as [string, ColumnType][]);
  if (job.mode === 'replace') return targets;
  for (const column of await datasetColumns(deps.db, deps.datasetSchema, job.dataset!)) {
    if (targets.has(column.name) || !(COLUMN_TYPES as readonly string[]).includes(column.type)) continue;
    if (!job.widen || (column.type === 'jsonb' && isTabular(job.format))) targets.set(column.name, column.type as ColumnType);
  }
  return targets;
}

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
function watchCancel(deps: PipelineDeps, jobId: string): { signal: AbortSignal; stop(): void } {
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

/** Drops the job's stage unless the job is still to run (best effort: a later sweep drops what is left). */
async function dropStageOfEnded(deps: PipelineDeps, jobId: string): Promise<void> {
  try {
    const job = await findJob(deps.db, jobId);
    if (!job || TERMINAL_STATUSES.has(job.status)) await dropStage(deps.db, jobId);
  } catch (err) {
    deps.log.warn({ jobId, err }, 'could not drop the stage of an ended job');
  }
}

/**
 * Runs one job from its checkpoint to a terminal state: parse the stored upload, skip the
 * records already committed, stage the rest batch by batch, then publish them into the
 * job's dataset as it completes. A bad input fails the job with a message saying where; an
 * abort (shutdown) stops at a batch boundary and leaves the job `running` at its checkpoint
 * for the next worker; a database error that retrying cannot mend, met by the publish (a
 * duplicate key...) or a batch (a value the stage refuses), fails the job at once with its message; a cancel aborts the
 * input's read in flight; any other error is thrown to the caller, which decides whether to retry.
 */
export async function runJob(deps: PipelineDeps, jobId: string, signal: AbortSignal): Promise<RunOutcome> {
  let outcome: RunOutcome;
  const canceled = watchCancel(deps, jobId);
  try {
    outcome = await run(deps, jobId, signal, canceled.signal);
  } finally {
    canceled.stop();
  }
  if (outcome === 'failed' || outcome === 'skipped') await dropStageOfEnded(deps, jobId);
  return outcome;
}

async function run(deps: PipelineDeps, jobId: string, signal: AbortSignal, canceled: AbortSignal): Promise<RunOutcome> {
  const { tracker, log } = deps;
  let job = await markRunning(tracker, jobId, deps.claimStaleAfterMs);
  if (!job) return 'skipped'; // deleted, finished, or held by a live worker
  if (job.attempts - job.attempts_before_retry > deps.maxAttempts) {
    await markFailed(
      tracker,
      jobId,
      `gave up after ${deps.maxAttempts} attempts: each time, the worker ingesting this job stopped before finishing ` +
        `(it crashed, was killed or ran out of memory); its dataset is unchanged (${job.records_processed} records had been staged)`,
    );
    return 'failed';
  }
  let newest: number | undefined; // a Jira pull's newest `updated`, its sync's next mark
  const jira = job.source?.jira;
  const source = jira
    ? jiraJobInput(deps.db, deps.imports, jira, job.dataset ?? '', (ms) => (newest = Math.max(newest ?? ms, ms)))
    : job.source_url
      ? await importInput(job.source_url, deps.imports)
      : await deps.uploads.input(jobId);
  if (!source) {
    await markFailed(
      tracker,
      jobId,
      `the stored upload is missing (was ${deps.uploads.kind === 'file' ? 'UPLOAD_DIR' : 'UPLOAD_STORE'} changed or cleaned?)`,
    );
    return 'failed';
  }
  const input: Input = { ...source, open: () => source.open(canceled) };
  const saved = await findLoadState(deps.db, jobId);
  let state = (saved?.load_state ?? null) as LoadState | null;
  let checkpoint = job.records_processed + job.records_failed; // input position to resume at
  if (checkpoint > 0) {
    const staged = await stageRowCount(deps.db, jobId);
    // A Jira pull starts over: the pages it read may have changed since.
    if (staged !== job.records_processed || state === null || jira) {
      log.warn(
        { jobId, checkpoint, staged },
        jira ? 'a Jira pull resumed: pulling again from the start' : 'the stage does not hold what the job committed: starting it over',
      );
      job = await restartJob(tracker, jobId);
      if (!job) return 'skipped';
      state = null;
      checkpoint = 0;
    } else log.info({ jobId, checkpoint, attempt: job.attempts }, 'resuming job from its checkpoint');
  }
  if (checkpoint === 0) await createStage(deps.db, jobId, deps.db.kind === 'postgres');
  const key = job.merge_key ?? [];
  const loader = new Loader({ format: job.format, targets: await targetTypes(deps, job, saved?.declared_types ?? null), key }, state);

  let failed = job.records_failed;
  const progress: ReadProgress = { bytes: 0 };
  // The batch being read: its good records as stage rows (COPY text), all of one width (a JSON
  // record bringing a new key starts a new batch), and its row errors.
  let rows = new RowBytes();
  let rowCount = 0;
  let width = 0;
  let errors: RowError[] = [];
  let from = checkpoint;
  let columnsBefore = loader.columns.length;
  const cut = (): Batch => {
    const batch: Batch = {
      from,
      rows: rows.bytes(),
      rowCount,
      width: rowCount > 0 ? width : 0,
      columns: { from: columnsBefore, to: loader.columns.length },
      errors,
      bytesProcessed: progress.bytes,
      loadState: JSON.stringify(loader.state()),
    };
    from += rowCount + errors.length;
    columnsBefore = loader.columns.length;
    rows = new RowBytes();
    rowCount = 0;
    errors = [];
    return batch;
  };
  const commit = async (done: Batch, after?: Promise<void>) => {
    try {
      await incrementProgress(tracker, jobId, done, after);
    } catch (err) {
      if (!isDataError(err)) throw err;
      const last = done.from + done.rowCount + done.errors.length - 1;
      throw new IngestError(`records ${done.from}–${last} could not be stored: ${databaseMessage(err)}`);
    }
  };
  // Batches are committed while the next ones are parsed: PostgreSQL loads while Node parses.
  // With a PostgreSQL server two are in flight, on two connections: each copies its records
  // at once but moves the checkpoint only after the one before it has committed, so they
  // still commit one at a time, in order. (With one connection, as PGlite has: one at a time.)
  const depth = deps.db.connections > 1 ? 2 : 1;
  const window: Promise<void>[] = [];
  let inFlight: Promise<void> | undefined; // the latest commit: it settles after all before it
  let widening = false; // the latest commit adds stage columns
  /** Commits the batch read so far, in the window; on shutdown, lets the job go at this boundary instead (false). */
  const flush = async (): Promise<boolean> => {
    if (window.length >= depth) await window.shift();
    // PGlite runs queries on this thread: let requests and events in between batches.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (signal.aborted) {
      await inFlight;
      await releaseAttempt(tracker, jobId);
      return false;
    }
    // Columns a batch adds to the stage exist for the next batch's COPY (on another connection)
    // only once that batch has committed.
    if (widening) await inFlight;
    const batch = cut();
    widening = batch.columns.to > batch.columns.from;
    inFlight = commit(batch, inFlight);
    inFlight.catch(() => {}); // awaited (and thrown) in turn
    window.push(inFlight);
    return true;
  };
  let position = 0;
  try {
    for await (const record of readRecords(input, job.format, progress, deps.limits, saved?.read_options ?? {})) {
      const recordNo = position++;
      if (recordNo < checkpoint) continue; // committed by an earlier run
      // Parsing runs in microtasks, which starve I/O: let the socket carrying the batch in
      // flight drain now and then, so PostgreSQL loads while Node parses.
      if ((recordNo & 255) === 0 && inFlight) await new Promise<void>((resolve) => setImmediate(resolve));
      if (recordNo === checkpoint && record.columns !== undefined) {
        loader.header(record.columns); // known from a CSV's header, even when its first record is bad
        const missing = loader.missingKeys();
        if (missing.length > 0) {
          throw new IngestError(
            `the key column "${missing[0]}" is not in the file's header (its columns: ${loader.columns
              .map((c) => c.original)
              .join(', ')
              .slice(0, 300)})`,
          );
        }
      }
      const item = record.error === undefined ? loader.row(record, recordNo) : record;
      if ('text' in item) {
        if (rowCount > 0 && item.width !== width && !(await flush())) return 'stopped';
        width = item.width;
        rows.add(item.text);
        rowCount++;
      } else {
        errors.push({ recordNo, line: item.line, message: item.error, excerpt: item.excerpt });
        if (++failed > job.max_errors) {
          // Commit the row errors that came before it, and the bad row itself, then fail the job there.
          await inFlight;
          await commit(cut(), inFlight);
          const limit = job.max_errors === 0 ? '' : ` (more than max_errors=${job.max_errors} bad rows)`;
          throw new IngestError(`${item.error}${limit}`);
        }
      }
      if ((rowCount + errors.length >= deps.batchSize || rows.length >= BATCH_MAX_BYTES) && !(await flush())) return 'stopped';
    }
    await inFlight;
    await commit(cut(), inFlight); // also when empty: bytes_processed reaches bytes_total
    const publish = {
      schema: deps.datasetSchema,
      dataset: job.dataset!,
      jobId,
      format: job.format,
      mode: job.mode ?? 'append',
      key,
      widen: job.widen,
      state: loader.state(),
      chunkPages: deps.db.kind === 'pglite' ? PGLITE_PUBLISH_PAGES : undefined,
      maxDatasets: deps.maxDatasets,
    };
    const publishing = performance.now();
    const completed = await markCompleted(tracker, jobId, async (tx) => {
      const rows = await publishStage(tx, publish);
      if (jira && newest !== undefined) await saveJiraMark(tx, jira.connection, jira.jql, publish.dataset, newest);
      log.info(
        { jobId, dataset: publish.dataset, mode: publish.mode, ...rows, ms: Math.round(performance.now() - publishing) },
        'rows moved into its dataset, committing with the job',
      );
      return rows;
    }).catch((err: unknown) => {
      if (err instanceof PublishConflict) throw new IngestError(err.message);
      if (isPermanentDatabaseError(err))
        throw new IngestError(`the rows could not be loaded into dataset "${publish.dataset}": ${databaseMessage(err)}`);
      throw err;
    });
    return completed ? 'completed' : 'skipped';
  } catch (err) {
    const committed = await (inFlight ?? Promise.resolve()).then(
      () => true,
      () => false,
    ); // never leave a commit running behind a failure
    if (canceled.aborted || err instanceof CheckpointConflictError) {
      if (canceled.aborted) log.info({ jobId }, 'the job was canceled: its read was aborted');
      else log.warn({ jobId }, (err as Error).message);
      // A no-op unless the job was canceled: then it shows how far this run read.
      await noteCanceledRead(tracker, jobId, progress.bytes).catch((e: unknown) =>
        log.warn({ jobId, err: e }, 'could not note how far a canceled job read'),
      );
      return 'skipped';
    }
    if (!(err instanceof IngestError)) throw err;
    // The input broke off (a truncated file, an unclosed quote, a byte that is not UTF-8...): what
    // was read before it is counted too, records and bytes, so the counters and row errors do not
    // depend on BATCH_SIZE and the job shows how far it read. The job fails as a whole all the
    // same: nothing reaches its dataset.
    if (committed) {
      await commit(cut()).catch((e: unknown) => log.warn({ jobId, err: e }, 'could not commit the records before a fatal error'));
    }
    await markFailed(tracker, jobId, err.message);
    return 'failed';
  }
}
