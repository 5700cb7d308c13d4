import { IngestError } from '../core/errors.js';
import type { Loader, LoadState } from '../datasets/loader.js';
import type { ReadProgress } from '../formats/parse.js';
import type { CsvReport } from '../formats/csv.js';
import type { ParsedRecord } from '../formats/record.js';
import type { RowError } from '../storage/transitions.js';
import { incrementProgress, releaseAttempt, type Batch, type Tracker } from './tracking.js';

// Batches are also cut at this many bytes of staged rows, so that memory stays bounded when
// records are large (BATCH_SIZE records of MAX_RECORD_LENGTH each would not be).
const BATCH_MAX_BYTES = 32 * 1024 ** 2;

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

/** A database error's message with its detail (which names the key, the value or the column). */
export function databaseMessage(err: unknown): string {
  const { message, detail } = err as { message?: unknown; detail?: unknown };
  return typeof detail === 'string' && detail ? `${String(message)} (${detail})` : String(message);
}

// SQLSTATE class 22 (data exception), e.g. a string PostgreSQL's jsonb cannot hold: a batch's
// rows are wrong. A batch's other errors are about its stage (a column another batch in flight
// is adding, a stage another worker made anew) and pass when tried again.
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('22');
}

export interface BatchWriterOptions {
  tracker: Tracker;
  jobId: string;
  /** Batches committing at once: 2 with a PostgreSQL server (each on its own connection), 1 with one connection (PGlite). */
  depth: number;
  /** Records (good and bad) a batch holds at most. */
  batchSize: number;
  /** Bad records the job allows (its max_errors): one more fails it. */
  maxErrors: number;
  /** Shutdown: the job is let go at the next batch boundary. */
  signal: AbortSignal;
  /** How a CSV file is being read, filled in by its reader: each batch commits it (a running job shows it). */
  report?: CsvReport;
}

/**
 * Stages a run's records from its checkpoint: each record becomes a stage row (through the
 * loader) or a row error, in batches that commit with the job's counters, its checkpoint and
 * what the loader has learnt. Batches are committed while the next ones are parsed, so that
 * PostgreSQL loads while Node parses: with `depth` 2, each copies its records at once but moves
 * the checkpoint only after the one before it has committed, so they still commit one at a
 * time, in order.
 */
export class BatchWriter {
  /** Bytes of the input read so far (the reader counts them): each batch records how far it had read. */
  readonly progress: ReadProgress = { bytes: 0 };
  // The batch being read: its good records as stage rows (COPY text), all of one width (a JSON
  // record bringing a new key starts a new batch), and its row errors.
  private rows = new RowBytes();
  private rowCount = 0;
  private width = 0;
  private errors: RowError[] = [];
  /** Input position of the batch's first record. */
  private from: number;
  /** The loader's columns when the batch began: it adds to the stage those it learnt since. */
  private columnsBefore: number;
  /** Bad records so far, this run's and those committed before it. */
  private failed: number;
  private readonly window: Promise<void>[] = [];
  /** The latest commit: it settles after all before it. */
  private inFlight: Promise<void> | undefined;
  /** The latest commit adds stage columns. */
  private widening = false;

  constructor(
    private readonly options: BatchWriterOptions,
    private readonly loader: Loader,
    checkpoint: number,
    failed: number,
  ) {
    this.from = checkpoint;
    this.columnsBefore = loader.columns.length;
    this.failed = failed;
  }

  /** A commit has been started: the reader lets its socket drain now and then. */
  get committing(): boolean {
    return this.inFlight !== undefined;
  }

  /** The columns of a CSV's header (known even when its first record is bad): the key columns must be among them. */
  header(columns: readonly string[]): void {
    this.loader.header(columns);
    const missing = this.loader.missingKeys();
    if (missing.length > 0) {
      throw new IngestError(
        `the key column "${missing[0]}" is not in the file's header (its columns: ${this.loader.columns
          .map((c) => c.original)
          .join(', ')
          .slice(0, 300)})`,
      );
    }
  }

  /**
   * Adds the record at input position `recordNo`, committing the batch when it is full. False
   * when shutdown let the job go at this batch boundary instead; an IngestError when the record
   * is one bad record too many (the batch up to it is committed first).
   */
  async add(record: ParsedRecord, recordNo: number): Promise<boolean> {
    const item = record.error === undefined ? this.loader.row(record, recordNo) : record;
    if ('text' in item) {
      if (this.rowCount > 0 && item.width !== this.width && !(await this.flush())) return false;
      this.width = item.width;
      this.rows.add(item.text);
      this.rowCount++;
    } else {
      this.errors.push({ recordNo, line: item.line, message: item.error, excerpt: item.excerpt });
      if (++this.failed > this.options.maxErrors) {
        // Commit the row errors that came before it, and the bad row itself, then fail the job there.
        await this.inFlight;
        await this.commit(this.cut(), this.inFlight);
        const limit = this.options.maxErrors === 0 ? '' : ` (more than max_errors=${this.options.maxErrors} bad rows)`;
        throw new IngestError(`${item.error}${limit}`);
      }
    }
    if (this.rowCount + this.errors.length >= this.options.batchSize || this.rows.length >= BATCH_MAX_BYTES) return this.flush();
    return true;
  }

  /** Commits the last batch once all before it have: also when empty, so that bytes_processed reaches bytes_total. */
  async finish(): Promise<void> {
    await this.inFlight;
    await this.commit(this.cut(), this.inFlight);
  }

  /** What the loader learnt of the input: how the stage's columns are read into the dataset. */
  loadState(): LoadState {
    return this.loader.state();
  }

  /** Waits for the commit in flight, so that none is left running behind a failure: whether it committed. */
  settle(): Promise<boolean> {
    return (this.inFlight ?? Promise.resolve()).then(
      () => true,
      () => false,
    );
  }

  /** After a fatal error, once the batches before it have committed: commits what was read since, so the job shows how far it read. */
  commitRead(): Promise<void> {
    return this.commit(this.cut());
  }

  /** The batch read so far, taken out: the next one starts after it. */
  private cut(): Batch {
    const batch: Batch = {
      from: this.from,
      rows: this.rows.bytes(),
      rowCount: this.rowCount,
      width: this.rowCount > 0 ? this.width : 0,
      columns: { from: this.columnsBefore, to: this.loader.columns.length },
      errors: this.errors,
      bytesProcessed: this.progress.bytes,
      loadState: JSON.stringify(this.loader.state()),
      ...(this.options.report && { dialect: JSON.stringify(this.options.report) }),
    };
    this.from += this.rowCount + this.errors.length;
    this.columnsBefore = this.loader.columns.length;
    this.rows = new RowBytes();
    this.rowCount = 0;
    this.errors = [];
    return batch;
  }

  private async commit(done: Batch, after?: Promise<void>): Promise<void> {
    try {
      await incrementProgress(this.options.tracker, this.options.jobId, done, after);
    } catch (err) {
      if (!isDataError(err)) throw err;
      const last = done.from + done.rowCount + done.errors.length - 1;
      throw new IngestError(`records ${done.from}–${last} could not be stored: ${databaseMessage(err)}`);
    }
  }

  /** Commits the batch read so far, in the window; on shutdown, lets the job go at this boundary instead (false). */
  private async flush(): Promise<boolean> {
    if (this.window.length >= this.options.depth) await this.window.shift();
    // PGlite runs queries on this thread: let requests and events in between batches.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (this.options.signal.aborted) {
      await this.inFlight;
      await releaseAttempt(this.options.tracker, this.options.jobId);
      return false;
    }
    // Columns a batch adds to the stage exist for the next batch's COPY (on another connection)
    // only once that batch has committed.
    if (this.widening) await this.inFlight;
    const batch = this.cut();
    this.widening = batch.columns.to > batch.columns.from;
    this.inFlight = this.commit(batch, this.inFlight);
    this.inFlight.catch(() => {}); // awaited (and thrown) in turn
    this.window.push(this.inFlight);
    return true;
  }
}
