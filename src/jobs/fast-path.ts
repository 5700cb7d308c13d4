/**
 * The fast path of a CSV load: PostgreSQL reads the file itself (`COPY … (FORMAT csv)`) straight
 * into the dataset's table, one write a row, while Node reads the same file through the checked
 * path's reader and loader (every value counted towards its column's type, every record
 * checked), on the other core. The table is made with the types of the first records; the load
 * commits only if the whole file gave the same types, no row error and the same record count,
 * and every column is one PostgreSQL reads as the checked path's cast would (no decimal comma,
 * no date rewritten, no NULL marker). Types that changed further down make a second COPY with
 * the whole file's types; anything else rolls back and the job is loaded by the checked path,
 * which reports each bad row with its line, and says on the job why.
 */
import { stat } from 'node:fs/promises';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { FastifyBaseLogger } from 'fastify';
import { IngestError } from '../core/errors.js';
import type { ColumnGuess, Loader, LoadState } from '../datasets/loader.js';
import { copyRecords } from '../formats/csv-copy.js';
import type { CsvReport } from '../formats/csv.js';
import type { InputLimits } from '../formats/limits.js';
import { plainBytes, readRecords, type Input, type ReadOptions, type ReadProgress } from '../formats/parse.js';
import { publishStage, type Publish } from '../storage/datasets.js';
import type { Db } from '../storage/db.js';
import type { JobRow } from '../storage/jobs.js';
import type { Source } from '../sources/source.js';
import type { BatchWriter } from './batch-writer.js';
import { newReport, PREVIEW_MAX_ROWS, typeWarnings, unknownSchemaKeys, unknownSchemaMessage } from './preview.js';
import { markCompleted, markPublishing, noteReading, type Tracker } from './tracking.js';

/** What the fast path needs of the worker's dependencies. */
export interface FastDeps {
  db: Db;
  tracker: Tracker;
  limits: InputLimits;
  /** The largest stored CSV file the fast path loads (0: none). */
  fastPathMaxBytes: number;
  log: FastifyBaseLogger;
}

/** What the fast path needs of an opened job (runner.ts). */
export interface FastJob {
  job: JobRow;
  source: Source;
  /** The source's bytes, aborted by a cancel. */
  input: Input;
  checkpoint: number;
  readOptions: ReadOptions;
  loader: Loader;
  /** Takes the header (and checks the key's columns are in it). */
  writer: Pick<BatchWriter, 'header'>;
  /** The schema's keys: each must name a column of the input. */
  declared: string[];
}

// How often the job's counters show the fast path's reading.
const PROGRESS_EVERY_MS = 250;

// What COPY's CSV reads as Intake's reader does: one byte, not a space.
const COPY_DELIMITERS = new Set([',', ';', '\t', '|']);

/** Why the job is not one for the fast path at all (then nothing is said on the job), or undefined. */
export async function notFast(deps: FastDeps, opened: FastJob): Promise<string | undefined> {
  const { job, source, checkpoint, readOptions } = opened;
  if (job.format !== 'csv') return 'not CSV';
  if (deps.db.kind !== 'postgres') return 'embedded mode';
  if (checkpoint > 0) return 'a resumed run';
  if (source.path === undefined || source.startsOver !== undefined) return 'not a stored file';
  if (readOptions.ragged !== undefined && readOptions.ragged !== 'error') return 'ragged rows allowed';
  if (readOptions.encoding !== undefined && readOptions.encoding !== 'utf-8') return 'not UTF-8';
  const size = (await stat(source.path)).size;
  if (size > deps.fastPathMaxBytes) return `larger than FAST_PATH_MAX_BYTES (${deps.fastPathMaxBytes})`;
  return undefined;
}

/** The fast path could not load the job: the checked path does, and the job says why. */
export class FellBack extends Error {}

/** Why a file's dialect is one COPY does not read as Intake does, or undefined. */
function dialectMiss(report: CsvReport): string | undefined {
  if (!COPY_DELIMITERS.has(report.delimiter)) return `the delimiter ${JSON.stringify(report.delimiter)}`;
  if (report.escape !== 'double') return 'quotes escaped by backslashes';
  if (report.line_ending === 'CR') return 'lines ending with a carriage return alone';
  if (report.header_row !== 1 || report.header_rows !== 1) return 'no one-line header on line 1';
  if (report.skipped_lines > 0) return 'lines outside the table';
  if (report.encoding !== undefined && report.encoding !== 'utf-8') return `the encoding ${report.encoding}`;
  return undefined;
}

/** The columns' names, types and readings: two loads of the same state make the same table. */
const shape = (state: LoadState) => JSON.stringify(state.columns.map((c) => [c.name, c.target ?? c.seen, c.reading ?? null]));

/**
 * Reads the whole input through the checked reader and the loader, without staging: resolves
 * `head` with the dialect and the first records' types (or at the end), then the record count.
 * Throws FellBack at the first record the checked path would not load as it is.
 */
function scan(deps: FastDeps, opened: FastJob, progress: ReadProgress, stop: AbortSignal) {
  const { input, loader, readOptions } = opened;
  const dialect = newReport();
  // The job shows how far the file has been read (and beats its heartbeat), a few times a second.
  let noted = performance.now();
  let noting: Promise<unknown> | undefined;
  const note = (records: number) => {
    if (noting || performance.now() - noted < PROGRESS_EVERY_MS) return;
    noted = performance.now();
    noting = noteReading(deps.tracker, opened.job.job_id, records, progress.bytes, JSON.stringify(dialect))
      .catch((err: unknown) => deps.log.warn({ jobId: opened.job.job_id, err }, 'could not note how far the fast path has read'))
      .finally(() => (noting = undefined));
  };
  type Head = { report: CsvReport; state: LoadState; previewed: ColumnGuess[] } | null;
  let seen: (head: Head) => void = () => {};
  const head = new Promise<Head>((resolve) => (seen = resolve));
  const snapshot = () => seen({ report: dialect, state: structuredClone(loader.state()), previewed: structuredClone(loader.describe()) });
  const done = (async () => {
    let records = 0;
    for await (const record of readRecords(input, 'csv', progress, deps.limits, readOptions, dialect)) {
      if (stop.aborted) throw new FellBack('stopped');
      if (records === 0 && record.columns !== undefined) opened.writer.header(record.columns);
      if (record.error !== undefined) throw new FellBack(record.error);
      const problem = loader.tally(record, records);
      if (problem !== null) throw new FellBack(problem.error);
      if (++records === PREVIEW_MAX_ROWS) snapshot();
      // Reading runs in microtasks: let the COPY's socket and the API's requests in now and then.
      if ((records & 1023) === 0) {
        await yieldToLoop();
        note(records);
      }
    }
    if (loader.columns.length === 0 && dialect.columns.length > 0) opened.writer.header(dialect.columns);
    const unknown = unknownSchemaKeys(opened.declared, loader.columns);
    if (unknown.length > 0) throw new IngestError(unknownSchemaMessage(unknown, loader.columns));
    if (records < PREVIEW_MAX_ROWS) snapshot();
    return records;
  })();
  done.catch(() => seen(null)); // no head: whoever waits for it learns why from `done`
  return { head, done };
}

/**
 * Loads the opened job by COPY: 'completed' or 'skipped' (the job was no longer running) when
 * it did, or throws FellBack (nothing of it committed) for the checked path to load it.
 */
export async function fastLoad(deps: FastDeps, opened: FastJob, publish: Omit<Publish, 'state'>): Promise<'completed' | 'skipped'> {
  const { job, source } = opened;
  const progress: ReadProgress = { bytes: 0 };
  const stop = new AbortController();
  const started = performance.now();
  const scanned = scan(deps, opened, progress, stop.signal);
  let readMs = 0;
  void scanned.done.then(() => (readMs = performance.now() - started)).catch(() => {});
  const head = await scanned.head;
  if (head === null) {
    await scanned.done; // throws why
    throw new FellBack('the file could not be read');
  }
  let { state } = head;
  const { report } = head;
  const miss = dialectMiss(report);
  if (miss !== undefined) {
    stop.abort();
    await scanned.done.catch(() => {});
    throw new FellBack(`the file has ${miss}`);
  }
  // The rows move into the dataset from here on (the job's phase says so).
  await markPublishing(deps.tracker, job.job_id);
  let records: number | undefined; // known once the scan has ended
  for (let attempt = 0; ; attempt++) {
    let different = false;
    const read = { dialect: JSON.stringify(report), warnings: [] as string[], copied: { records: 0, bytes: 0 } };
    const completed = await markCompleted(
      deps.tracker,
      job.job_id,
      async (tx) => {
        const bytes = await plainBytes(opened.input, deps.limits);
        if (bytes === null) throw new FellBack('a zip');
        let copied = -1;
        const records$ = copyRecords(
          bytes,
          { delimiter: report.delimiter.charCodeAt(0), quote: report.quote.charCodeAt(0) },
          (n) => (copied = n),
        );
        let rows: { inserted: number; updated: number };
        try {
          rows = await publishStage(tx, {
            ...publish,
            state,
            copy: { records: records$, delimiter: report.delimiter, quote: report.quote },
          });
        } catch (err) {
          if (attempt > 0) throw err;
          // Why the reader stopped, when it did, says more than COPY.
          const unread = await scanned.done.then(
            () => undefined,
            (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
          );
          if (unread !== undefined) throw unread;
          // A value that does not fit the first records' types: the whole file's may hold it.
          different = shape(opened.loader.state()) !== shape(state);
          throw err;
        }
        records ??= await scanned.done;
        if (shape(opened.loader.state()) !== shape(state)) {
          different = true;
          throw new FellBack('the types of the whole file differ from its first records');
        }
        if (copied !== records || (publish.mode !== 'merge' && rows.inserted !== records))
          throw new FellBack(
            `COPY read ${publish.mode === 'merge' ? copied : rows.inserted} records where Intake’s reader read ${records}`,
          );
        read.copied = { records, bytes: progress.bytes };
        read.warnings = typeWarnings(head.previewed, opened.loader.describe());
        await source.published?.(tx, publish.dataset);
        deps.log.info(
          {
            jobId: job.job_id,
            dataset: publish.dataset,
            mode: publish.mode,
            rows: rows.inserted,
            ms: { read: Math.round(readMs), loaded: Math.round(performance.now() - started) },
          },
          'loaded by COPY, committing with the job',
        );
        return rows;
      },
      read,
      true,
    ).catch((err: unknown) => {
      if (different && attempt === 0) return 'again' as const;
      throw err;
    });
    if (completed === 'again') {
      // The whole file's types differ from its first records': COPY again with them.
      state = structuredClone(opened.loader.state());
      continue;
    }
    return completed ? 'completed' : 'skipped';
  }
}
