import type { JobEvents } from '../live/job-events.js';
import { Loader, type LoadState } from '../datasets/loader.js';
import { storedSpec } from '../datasets/column-spec.js';
import { COLUMN_TYPES, type ColumnSpec, type ColumnType } from '../datasets/types.js';
import {
  CheckpointConflictError,
  markCompleted,
  markFailed,
  markPublishing,
  markRunning,
  noteCanceledRead,
  releaseAttempt,
  restartJob,
} from './tracking.js';
import { BatchWriter, databaseMessage } from './batch-writer.js';
import { isTabular, TERMINAL_STATUSES } from '../core/job.js';
import { createStage, datasetColumns, dropStage, publishStage, PublishConflict, stageRowCount, type Publish } from '../storage/datasets.js';
import { DatabaseUnavailableError } from '../storage/db.js';
import { fastLoad, FellBack, notFast, type FastDeps, type FastJob } from './fast-path.js';
import { findJob, type JobRow } from '../storage/jobs.js';
import { findLoadState } from '../storage/transitions.js';
import { watchCancel } from './watch-cancel.js';
import { IngestError } from '../core/errors.js';
import { readRecords, type Input } from '../formats/parse.js';
import type { CsvReport } from '../formats/csv.js';
import type { ColumnGuess } from '../datasets/loader.js';
import { dialectOfReport, newReport, PREVIEW_MAX_ROWS, typeWarnings, unknownSchemaKeys, unknownSchemaMessage } from './preview.js';
import { sourceFor, type SourceDeps } from '../sources/job-source.js';
import type { Source } from '../sources/source.js';

/** The worker's dependencies (the database, tracker, limits and log: FastDeps). */
export interface PipelineDeps extends SourceDeps, FastDeps {
  /** Where a cancel made by another request (or process) is heard. */
  events: JobEvents;
  batchSize: number;
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

// Stage pages (8 KiB) an embedded publish moves per statement: about 40,000 rows of 150 bytes.
const PGLITE_PUBLISH_PAGES = 800;

/**
 * The types a job's values must fit, by column name or name as written: those its submit
 * declared, then (unless it replaces the dataset or may widen it) the dataset's own. A CSV
 * value into an existing jsonb column must always be JSON.
 */
async function targetTypes(deps: PipelineDeps, job: JobRow, declared: Record<string, unknown> | null): Promise<Map<string, ColumnSpec>> {
  // A declared type is a spec, or (in rows written before specs) a type's name.
  const targets = new Map<string, ColumnSpec>();
  for (const [column, value] of Object.entries(declared ?? {})) {
    const spec = storedSpec(value);
    if (spec) targets.set(column, spec);
  }
  if (job.mode === 'replace') return targets;
  for (const column of await datasetColumns(deps.db, deps.datasetSchema, job.dataset!)) {
    if (targets.has(column.name) || !(COLUMN_TYPES as readonly string[]).includes(column.type)) continue;
    if (!job.widen || (column.type === 'jsonb' && isTabular(job.format))) targets.set(column.name, { type: column.type as ColumnType });
  }
  return targets;
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
 * Runs one job from its checkpoint to a terminal state: read its source, skip the
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
  // Aborted as the run ends, however it ends: a source still open (a query's cursor) lets go.
  const finished = new AbortController();
  try {
    outcome = await run(deps, jobId, signal, canceled.signal, AbortSignal.any([canceled.signal, finished.signal]));
  } finally {
    canceled.stop();
    finished.abort(new Error('the run has ended'));
  }
  if (outcome === 'failed' || outcome === 'skipped') await dropStageOfEnded(deps, jobId);
  return outcome;
}

/**
 * A run's states, in order: claimed (the job is this worker's), opened (its source, its
 * checkpoint, its stage), staged (every record read and committed in batches), published
 * (the rows in the dataset as the job completes). Each step either leads to the next or ends
 * the run with its outcome; an error while staging or publishing ends it in `ended`.
 */
async function run(
  deps: PipelineDeps,
  jobId: string,
  signal: AbortSignal,
  canceled: AbortSignal,
  reading: AbortSignal,
): Promise<RunOutcome> {
  const claimed = await claim(deps, jobId);
  if (typeof claimed === 'string') return claimed;
  let opened = await openJob(deps, claimed, signal, reading);
  if (typeof opened === 'string') return opened;
  if ((await notFast(deps, opened)) === undefined) {
    try {
      return await fastLoad(deps, opened, publishOf(deps, opened), AbortSignal.any([canceled, signal]));
    } catch (err) {
      if (canceled.aborted || err instanceof CheckpointConflictError) return ended(deps, opened, err, canceled);
      if (signal.aborted) {
        // Shutdown: nothing was committed; the job is let go for the next worker, which starts it over.
        await releaseAttempt(deps.tracker, jobId);
        return 'stopped';
      }
      if (err instanceof DatabaseUnavailableError) throw err;
      const why = err instanceof FellBack ? err.message : databaseMessage(err);
      deps.log.info({ jobId, why }, 'the fast path did not load the job: loading it by the checked path');
      // Its loader has read the file, and the job shows how far: the checked path starts afresh.
      const restarted = await restartJob(deps.tracker, jobId);
      if (!restarted) return 'skipped';
      opened = await openJob(deps, restarted, signal, reading);
      if (typeof opened === 'string') return opened;
      opened.fellBack = why;
    }
  }
  try {
    if (!(await stage(deps, opened))) return 'stopped';
    return await publish(deps, opened);
  } catch (err) {
    return ended(deps, opened, err, canceled);
  }
}

/** A job opened for staging: what it reads, where it resumes, and the writer that stages its records. */
interface OpenedJob extends FastJob {
  writer: BatchWriter;
  /** How a CSV file is read, filled in by the reader (shown on the job as `dialect`). */
  report?: CsvReport;
  /** The columns as the first PREVIEW_MAX_ROWS records typed them (what a preview showed), once read. */
  previewed?: ColumnGuess[];
  /** Why the fast path did not load the job, when it tried. */
  fellBack?: string;
}

/** Claims the job for this worker: its row, or how the run ends (another worker holds it, or it keeps stopping its workers). */
async function claim(deps: PipelineDeps, jobId: string): Promise<JobRow | RunOutcome> {
  const job = await markRunning(deps.tracker, jobId, deps.claimStaleAfterMs);
  if (!job) return 'skipped'; // deleted, finished, or held by a live worker
  if (job.attempts - job.attempts_before_retry > deps.maxAttempts) {
    await markFailed(
      deps.tracker,
      jobId,
      `gave up after ${deps.maxAttempts} attempts: each time, the worker ingesting this job stopped before finishing ` +
        `(it crashed, was killed or ran out of memory); its dataset is unchanged (${job.records_processed} records had been staged)`,
    );
    return 'failed';
  }
  return job;
}

/**
 * Opens a claimed job: its source, and the checkpoint it resumes at with what the loader had
 * learnt by then, or a fresh stage when there is none or it cannot be trusted (the stage does
 * not hold what the job committed, or the source reads differently each time).
 */
async function openJob(deps: PipelineDeps, claimed: JobRow, signal: AbortSignal, reading: AbortSignal): Promise<OpenedJob | RunOutcome> {
  const { tracker, log } = deps;
  const jobId = claimed.job_id;
  let job: JobRow | null = claimed;
  let source: Source;
  try {
    source = await sourceFor(job, deps);
  } catch (err) {
    if (!(err instanceof IngestError)) throw err;
    await markFailed(tracker, jobId, err.message);
    return 'failed';
  }
  const input: Input = { ...source, open: () => source.open(reading) };
  const saved = await findLoadState(deps.db, jobId);
  let state = (saved?.load_state ?? null) as LoadState | null;
  let checkpoint = job.records_processed + job.records_failed;
  if (checkpoint > 0) {
    const staged = await stageRowCount(deps.db, jobId);
    if (staged !== job.records_processed || state === null || source.startsOver !== undefined) {
      log.warn({ jobId, checkpoint, staged }, source.startsOver ?? 'the stage does not hold what the job committed: starting it over');
      job = await restartJob(tracker, jobId);
      if (!job) return 'skipped';
      state = null;
      checkpoint = 0;
    } else log.info({ jobId, checkpoint, attempt: job.attempts }, 'resuming job from its checkpoint');
  }
  if (checkpoint === 0) await createStage(deps.db, jobId, deps.db.kind === 'postgres');
  const targets = await targetTypes(deps, job, saved?.declared_types ?? null);
  const read = saved?.read_options ?? {};
  const loader = new Loader(
    {
      format: job.format,
      targets,
      key: job.merge_key ?? [],
      ...(read.locale !== undefined && { locale: read.locale }),
      ...(read.dateOrder !== undefined && { dateOrder: read.dateOrder }),
      ...(read.nullValues !== undefined && { nullValues: read.nullValues }),
    },
    state,
  );
  const report = job.format === 'csv' ? newReport() : undefined;
  const writer = new BatchWriter(
    { tracker, jobId, depth: deps.db.connections > 1 ? 2 : 1, batchSize: deps.batchSize, maxErrors: job.max_errors, signal, report },
    loader,
    checkpoint,
    job.records_failed,
  );
  // A resumed run reads the file as the run that committed the checkpoint did, not as a new sniff might.
  const readOptions = { ...saved?.read_options, ...(checkpoint > 0 && job.dialect ? dialectOfReport(job.dialect) : {}) };
  const declared = Object.keys(saved?.declared_types ?? {});
  return { job, source, input, checkpoint, readOptions, writer, loader, declared, report };
}

/** Fails the job when its schema names a column its input does not have (a typo would otherwise do nothing). */
function checkDeclared({ declared, loader }: OpenedJob): void {
  const unknown = unknownSchemaKeys(declared, loader.columns);
  if (unknown.length > 0) throw new IngestError(unknownSchemaMessage(unknown, loader.columns));
}

/** Reads the input, skipping what earlier runs committed, and stages the rest; false when shutdown let the job go at a batch boundary. */
async function stage(deps: PipelineDeps, opened: OpenedJob): Promise<boolean> {
  const { job, input, checkpoint, readOptions, writer, loader, report } = opened;
  let position = 0;
  for await (const record of readRecords(input, job.format, writer.progress, deps.limits, readOptions, report)) {
    const recordNo = position++;
    if (recordNo < checkpoint) continue; // committed by an earlier run
    // Parsing runs in microtasks, which starve I/O: let the socket carrying the batch in
    // flight drain now and then, so PostgreSQL loads while Node parses.
    if ((recordNo & 255) === 0 && writer.committing) await new Promise<void>((resolve) => setImmediate(resolve));
    if (recordNo === checkpoint && record.columns !== undefined) {
      writer.header(record.columns);
      if (isTabular(job.format)) checkDeclared(opened);
    }
    if (!(await writer.add(record, recordNo))) return false;
    if (recordNo === PREVIEW_MAX_ROWS - 1) opened.previewed = loader.describe();
  }
  // A file of a header and no records: its dataset gets its columns all the same.
  if (loader.columns.length === 0 && report && report.columns.length > 0) writer.header(report.columns);
  checkDeclared(opened);
  await writer.finish();
  return true;
}

/** What a publish of the job's rows into its dataset is, but the loader's state. */
function publishOf(deps: PipelineDeps, { job }: OpenedJob): Omit<Publish, 'state'> {
  return {
    schema: deps.datasetSchema,
    dataset: job.dataset!,
    jobId: job.job_id,
    format: job.format,
    mode: job.mode ?? 'append',
    key: job.merge_key ?? [],
    widen: job.widen,
    chunkPages: deps.db.kind === 'pglite' ? PGLITE_PUBLISH_PAGES : undefined,
    maxDatasets: deps.maxDatasets,
  };
}

/** Moves the staged rows into the job's dataset as the job completes, in one transaction with what its source records. */
async function publish(deps: PipelineDeps, opened: OpenedJob): Promise<RunOutcome> {
  const { job, source, writer, loader, report, previewed, fellBack } = opened;
  const { log } = deps;
  const jobId = job.job_id;
  const publish = { ...publishOf(deps, opened), state: writer.loadState() };
  const warnings = previewed ? typeWarnings(previewed, loader.describe()) : [];
  if (fellBack !== undefined) warnings.push(`loaded by the checked path, not by COPY: ${fellBack}`);
  const read = { dialect: report ? JSON.stringify(report) : null, warnings };
  await markPublishing(deps.tracker, jobId);
  const publishing = performance.now();
  const completed = await markCompleted(
    deps.tracker,
    jobId,
    async (tx) => {
      const rows = await publishStage(tx, publish);
      await source.published?.(tx, publish.dataset);
      log.info(
        { jobId, dataset: publish.dataset, mode: publish.mode, ...rows, ms: Math.round(performance.now() - publishing) },
        'rows moved into its dataset, committing with the job',
      );
      return rows;
    },
    read,
  ).catch((err: unknown) => {
    if (err instanceof PublishConflict) throw new IngestError(err.message);
    if (isPermanentDatabaseError(err))
      throw new IngestError(`the rows could not be loaded into dataset "${publish.dataset}": ${databaseMessage(err)}`);
    throw err;
  });
  return completed ? 'completed' : 'skipped';
}

/**
 * A run that met an error while staging or publishing: a cancel (or another worker taking the
 * job) lets it go; a bad input or a permanent database error (IngestError) fails the job,
 * with what was read before it counted; anything else is thrown to the caller.
 */
async function ended(deps: PipelineDeps, { job, writer }: OpenedJob, err: unknown, canceled: AbortSignal): Promise<RunOutcome> {
  const { tracker, log } = deps;
  const jobId = job.job_id;
  const committed = await writer.settle(); // never leave a commit running behind a failure
  if (canceled.aborted || err instanceof CheckpointConflictError) {
    if (canceled.aborted) log.info({ jobId }, 'the job was canceled: its read was aborted');
    else log.warn({ jobId }, (err as Error).message);
    // A no-op unless the job was canceled: then it shows how far this run read.
    await noteCanceledRead(tracker, jobId, writer.progress.bytes).catch((e: unknown) =>
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
    await writer.commitRead().catch((e: unknown) => log.warn({ jobId, err: e }, 'could not commit the records before a fatal error'));
  }
  await markFailed(tracker, jobId, err.message);
  return 'failed';
}
