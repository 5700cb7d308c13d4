/**
 * A file read as a job would read it, without a job: the start of its input (bounded in bytes,
 * records and time) through the same reader and loader, for POST /api/preview, for the check of
 * an upload's declared schema against its columns, and for what the runner compares a load
 * with (the types its first PREVIEW_MAX_ROWS records gave).
 */
import { Readable } from 'node:stream';
import { AppError, IngestError } from '../core/errors.js';
import { isTabular, type Format } from '../core/job.js';
import { Loader, type ColumnGuess } from '../datasets/loader.js';
import type { ColumnSpec, ColumnType, Reading } from '../datasets/types.js';
import type { CsvDialect, CsvReport } from '../formats/csv.js';
import type { InputLimits } from '../formats/limits.js';
import { readRecords, type Input, type ReadOptions } from '../formats/parse.js';
import type { ParsedRecord } from '../formats/record.js';

/** Bytes of the input a preview reads at most (of its decompressed text, for a compressed file). */
export const PREVIEW_MAX_BYTES = 4 * 1024 ** 2;
/** Records a preview reads at most: the types it shows are theirs (a load says where the whole file differs). */
export const PREVIEW_MAX_ROWS = 2000;
/** How long a preview reads at most, whatever the input. */
export const PREVIEW_MAX_MS = 10_000;
const SHOWN_ROWS = 50;
const SHOWN_ERRORS = 20;

export interface PreviewColumn {
  name: string;
  original: string;
  type: ColumnType;
  reading: Reading | null;
  evidence: string[];
}

export interface Preview {
  format: Format;
  /** The encoding the text is read in. */
  encoding: string;
  /** How a CSV file is read (null for other formats). */
  dialect: CsvReport | null;
  columns: PreviewColumn[];
  /** The first rows as they would load, in the columns' order: text as staged, null for NULL. */
  rows: (string | null)[][];
  row_errors: { line: number; error: string; excerpt: string }[];
  /** The input goes on beyond what was read. */
  truncated: boolean;
  warnings: string[];
}

/** A report for the CSV reader to fill in as it reads (these values stand until it has looked at the file). */
export function newReport(): CsvReport {
  return {
    encoding: 'utf-8',
    delimiter: ',',
    quote: '"',
    escape: 'double',
    line_ending: 'LF',
    header_row: 1,
    header_rows: 1,
    columns: [],
    skipped: [],
    skipped_lines: 0,
  };
}

/** The dialect a report found, as read options: a resumed run reads the file exactly as the run before it did. */
export function dialectOfReport(report: Pick<CsvReport, 'delimiter' | 'quote' | 'escape' | 'header_row' | 'skipped'>): CsvDialect {
  const dialect: CsvDialect = { delimiter: report.delimiter, quote: report.quote, escape: report.escape };
  if (report.header_row === null) {
    dialect.header = false;
    const above = report.skipped.find((run) => run.why === 'above the table');
    if (above) dialect.skipLines = above.to;
  } else dialect.headerRow = report.header_row;
  return dialect;
}

/** Declared schema keys that name no column (by its name or its name as written); `*` names them all. */
export function unknownSchemaKeys(declared: Iterable<string>, columns: readonly { name: string; original: string }[]): string[] {
  return [...declared].filter((key) => key !== '*' && !columns.some((c) => c.name === key || c.original === key));
}

/** What a schema key that names no column is told: the key, and the file's columns. */
export function unknownSchemaMessage(unknown: readonly string[], columns: readonly { original: string }[]): string {
  const keys = unknown.map((key) => `"${key.slice(0, 63)}"`).join(', ');
  const names = columns.map((c) => c.original).join(', ');
  return `schema names ${unknown.length === 1 ? 'a column' : 'columns'} the file does not have: ${keys} (its columns: ${names.length > 300 ? `${names.slice(0, 300)}…` : names || 'none'})`;
}

/** Columns typed otherwise by the whole input than by its first records, as the job's warnings say it. */
export function typeWarnings(first: readonly ColumnGuess[], whole: readonly ColumnGuess[]): string[] {
  const before = new Map(first.map((c) => [c.name, c.type]));
  const n = PREVIEW_MAX_ROWS.toLocaleString('en');
  return whole
    .filter((c) => before.has(c.name) && before.get(c.name) !== c.type)
    .map((c) => `column "${c.name}": the first ${n} rows read as ${before.get(c.name)}, the whole file as ${c.type}`);
}

const isZipHead = (chunk: Buffer) => chunk.length >= 2 && chunk[0] === 0x50 && chunk[1] === 0x4b;

/**
 * The first `maxBytes` of a stream, then the stream let go by `discard`: a request's body is
 * drained (so its client gets the answer), a download destroyed. A zip is passed whole (its
 * directory is at its end): the reader spools it and reads only the start of its entry.
 */
async function headOf(
  source: AsyncIterable<Buffer>,
  maxBytes: number,
  discard: (stream: Readable) => void,
): Promise<{ bytes: AsyncIterable<Buffer>; cut: boolean; head: Buffer }> {
  const stream = source instanceof Readable ? source : Readable.from(source);
  const chunks: Buffer[] = [];
  let size = 0;
  const ended = await new Promise<boolean>((resolve, reject) => {
    const listeners = {
      data: (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        if (size >= maxBytes || (chunks.length === 1 && isZipHead(chunk))) settle(() => resolve(false));
      },
      end: () => settle(() => resolve(true)),
      error: (err: Error) => settle(() => reject(err)),
    };
    function settle(then: () => void) {
      stream.off('data', listeners.data).off('end', listeners.end).off('error', listeners.error);
      stream.pause();
      then();
    }
    stream.on('data', listeners.data).on('end', listeners.end).on('error', listeners.error);
  });
  const head = chunks[0] ?? Buffer.alloc(0);
  if (!ended && isZipHead(head)) {
    return {
      head,
      cut: false,
      bytes: (async function* () {
        yield* chunks;
        yield* stream as AsyncIterable<Buffer>;
      })(),
    };
  }
  if (!ended) {
    stream.on('error', () => {}); // what is left is not read: its errors are nobody's
    discard(stream);
  }
  const whole = Buffer.concat(chunks);
  const kept = whole.subarray(0, maxBytes);
  return {
    head,
    cut: !ended, // what follows is not read, however much there was
    bytes: (async function* () {
      yield kept;
    })(),
  };
}

/**
 * A stage row (COPY text: the record number, then each value, \N for NULL) as the values it
 * loads. JSON values are staged as their JSON text: a string is shown as the text it loads as.
 */
function stagedValues(text: string, json: boolean): (string | null)[] {
  return text
    .split('\t')
    .slice(1)
    .map((staged) => {
      if (staged === '\\N') return null;
      const value = staged.includes('\\')
        ? staged.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : c === 't' ? '\t' : c))
        : staged;
      return json && value.startsWith('"') ? (JSON.parse(value) as string) : value;
    });
}

export interface PreviewOptions {
  format: Format;
  read: ReadOptions;
  /** Declared types, by column name or name as written. */
  targets: ReadonlyMap<string, ColumnSpec>;
  limits: InputLimits;
  /** How the unread rest of the input is let go (see headOf). */
  discard?: (stream: Readable) => void;
  maxBytes?: number;
  maxRows?: number;
  signal?: AbortSignal;
}

/**
 * Reads the start of `input` as a job would, and says what it found. A file that cannot be
 * read at all throws IngestError; one cut short by the preview's own bounds is answered as far
 * as it was read (`truncated`), its last record (perhaps cut) left out.
 */
export async function previewInput(input: Input, options: PreviewOptions): Promise<Preview> {
  const { format, read, limits } = options;
  const maxBytes = options.maxBytes ?? PREVIEW_MAX_BYTES;
  const maxRows = options.maxRows ?? PREVIEW_MAX_ROWS;
  let cut = false;
  let head: Buffer = Buffer.alloc(0);
  const bounded: Input = {
    ...input,
    async open() {
      const taken = await headOf(await input.open(options.signal), maxBytes, options.discard ?? ((stream) => stream.destroy()));
      cut = taken.cut;
      head = taken.head;
      return taken.bytes;
    },
  };
  const report = format === 'csv' ? newReport() : undefined;
  const loader = new Loader(
    { format, targets: options.targets, key: [], locale: read.locale, dateOrder: read.dateOrder, nullValues: read.nullValues },
    null,
  );
  const rows: (string | null)[][] = [];
  const rowErrors: Preview['row_errors'] = [];
  let taken = 0;
  const take = (record: ParsedRecord) => {
    const recordNo = taken++;
    if (record.columns !== undefined) loader.header(record.columns);
    const item = record.error === undefined ? loader.row(record, recordNo) : record;
    if ('text' in item) {
      if (rows.length < SHOWN_ROWS) rows.push(stagedValues(item.text, format === 'json' || format === 'ndjson'));
    } else if (rowErrors.length < SHOWN_ERRORS) rowErrors.push({ line: item.line, error: item.error, excerpt: item.excerpt });
  };
  let truncated = false;
  let encoding: string = read.encoding ?? 'utf-8';
  let pending: ParsedRecord | undefined;
  const deadline = performance.now() + PREVIEW_MAX_MS;
  // Bounded further by the decompressed text: past it the reader throws, and the preview ends there.
  const previewLimits = { ...limits, maxDecompressedBytes: Math.min(limits.maxDecompressedBytes, maxBytes) };
  try {
    for await (const record of readRecords(bounded, format, { bytes: 0 }, previewLimits, read, report, (found) => (encoding = found))) {
      if (pending) take(pending);
      pending = record;
      if (taken >= maxRows || performance.now() > deadline) {
        truncated = true;
        pending = undefined;
        break;
      }
    }
    if (pending && !cut) take(pending); // cut: it may be the first part of a record
    truncated ||= cut;
  } catch (err) {
    if (!(err instanceof IngestError)) throw err;
    // The reader met the end of what the preview took: what came before is the answer.
    if (!cut && !/MAX_DECOMPRESSED_BYTES/.test(err.message)) throw err;
    truncated = true;
  }
  if (head.length === 0 && !truncated) throw new AppError(422, 'empty_file', 'The file is empty');
  if (isTabular(format) && loader.columns.length === 0 && report && report.columns.length > 0) loader.header(report.columns);
  const columns = loader.describe().map((c) => ({
    name: c.name,
    original: c.original,
    type: c.type,
    reading: c.reading ?? null,
    evidence: c.evidence,
  }));
  const width = columns.length;
  const warnings: string[] = [];
  if (truncated)
    warnings.push(
      `only the start of the input was read (${taken.toLocaleString('en')} records): the load types each column over the whole file, and its job says where that differs`,
    );
  return {
    format,
    encoding: format === 'xlsx' ? 'utf-8' : encoding,
    dialect: report ?? null,
    columns,
    rows: rows.map((row) => (row.length < width ? [...row, ...Array<null>(width - row.length).fill(null)] : row)),
    row_errors: rowErrors,
    truncated,
    warnings,
  };
}
