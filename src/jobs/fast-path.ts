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
import { open, stat } from 'node:fs/promises';
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
  /** The input position this run resumes at: records before it were committed by earlier runs. */
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
  if (await isZipFile(source.path)) return 'a zip';
  return undefined;
}

/** Whether the file starts as a zip does (its data file is read from inside it, not by COPY). */
async function isZipFile(path: string): Promise<boolean> {
  const file = await open(path);
  try {
    const { buffer, bytesRead } = await file.read(Buffer.alloc(4), 0, 4, 0);
    return bytesRead === 4 && (buffer.readUInt32LE(0) === 0x04034b50 || buffer.readUInt32LE(0) === 0x06054b50);
  } finally {
    await file.close();
  }
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
function scan(deps: FastDeps, opened: FastJob, progress: ReadProgress, stop: AbortController) {
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
      if (stop.signal.aborted) throw new FellBack('stopped');
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
  // No head: whoever waits for it learns why from `done`; and a COPY running stops too.
  done.catch(() => {
    seen(null);
    stop.abort();
  });
  /** Stops the read (when it still runs) and waits until it and its last note have ended. */
  const settle = async () => {
    stop.abort();
    await done.catch(() => {});
    await noting;
  };
  return { head, done, settle };
}

/** The file's records as COPY reads them, opened when the COPY starts, ended by `stop`. */
async function* copiedRecords(opened: FastJob, limits: InputLimits, report: CsvReport, stop: AbortSignal, counted: (n: number) => void) {
  const bytes = await plainBytes(opened.input, limits);
  if (bytes === null) throw new FellBack('a zip');
  const dialect = { delimiter: report.delimiter.charCodeAt(0), quote: report.quote.charCodeAt(0) };
  for await (const chunk of copyRecords(bytes, dialect, counted)) {
    if (stop.aborted) throw new FellBack('stopped');
    yield chunk;
  }
}

/**
 * Loads the opened job by COPY: 'completed' or 'skipped' (the job was no longer running) when
 * it did, or throws (nothing of it committed, Node's read ended): FellBack or any error, for the
 * checked path to load it; `halt` (a cancel, a shutdown) ends both reads at once.
 */
export async function fastLoad(
  deps: FastDeps,
  opened: FastJob,
  publish: Omit<Publish, 'state'>,
  halt: AbortSignal,
): Promise<'completed' | 'skipped'> {
  const progress: ReadProgress = { bytes: 0 };
  const stop = new AbortController();
  const onHalt = () => stop.abort();
  if (halt.aborted) stop.abort();
  halt.addEventListener('abort', onHalt);
  const started = performance.now();
  const scanned = scan(deps, opened, progress, stop);
  try {
    return await load(deps, opened, publish, { progress, stop, started, scanned });
  } catch (err) {
    await scanned.settle();
    throw err;
  } finally {
    halt.removeEventListener('abort', onHalt);
  }
}

/** fastLoad's work, with its reads: each attempt one completing transaction (a second one with the whole file's types). */
async function load(
  deps: FastDeps,
  opened: FastJob,
  publish: Omit<Publish, 'state'>,
  run: { progress: ReadProgress; stop: AbortController; started: number; scanned: ReturnType<typeof scan> },
): Promise<'completed' | 'skipped'> {
  const { job, source } = opened;
  const { progress, stop, started, scanned } = run;
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
  if (miss !== undefined) throw new FellBack(`the file has ${miss}`);
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
        let copied = -1;
        let rows: { inserted: number; updated: number };
        try {
          rows = await publishStage(tx, {
            ...publish,
            state,
            copy: {
              records: () => copiedRecords(opened, deps.limits, report, stop.signal, (n) => (copied = n)),
              delimiter: report.delimiter,
              quote: report.quote,
            },
          });
        } catch (err) {
          // A value that does not fit the first records' types (a data exception, class 22):
          // the whole file's may hold it, and Node's read says. Anything else ends here.
          const code = (err as { code?: unknown }).code;
          const data = typeof code === 'string' && code.startsWith('22');
          if (stop.signal.aborted || data) {
            // Why the reader stopped (and stopped the COPY) says more than COPY.
            const unread = await scanned.done.then(
              () => undefined,
              (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
            );
            if (unread !== undefined) throw unread;
          }
          if (attempt > 0 || !data) throw err;
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
    await scanned.settle();
    return completed ? 'completed' : 'skipped';
  }
}
