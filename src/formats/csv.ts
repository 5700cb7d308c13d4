import { DEFAULT_LIMITS, type InputLimits } from './limits.js';
import { IngestError } from '../core/errors.js';
import { rowError, type ParsedRecord } from './record.js';

/**
 * Header names, made usable as object keys deliberately: an empty name becomes
 * `column_N` (1-based position) and a repeated one gets `_2`, `_3`, ... so no value is lost.
 * Each name remembers the next suffix to try, so a header of one name repeated n times costs
 * O(n), not O(n²).
 */
export function headerKeys(header: string[]): string[] {
  const used = new Set<string>();
  const nextSuffix = new Map<string, number>();
  return header.map((raw, index) => {
    const base = raw.trim() === '' ? `column_${index + 1}` : raw;
    let name = base;
    let n = nextSuffix.get(base) ?? 2;
    while (used.has(name)) name = `${base}_${n++}`;
    nextSuffix.set(base, n);
    used.add(name);
    return name;
  });
}

/**
 * A CSV record: the header's names and its fields, both in the file's order (`columns` and
 * `values`, what a dataset loads), the start of its text as written (`text`, for an excerpt),
 * and the same as an object keyed by the header (`data`, made when first read: loading never
 * needs it, and an object lists integer-like keys such as `2` before the others).
 */
export class CsvRecord {
  private object: Record<string, string> | undefined;

  constructor(
    readonly columns: readonly string[],
    private readonly hasProto: boolean,
    readonly values: readonly string[],
    readonly line: number,
    readonly text?: string,
    /** The 0-based positions of fields written as `""` (an empty string, where an empty field is NULL); absent when none. */
    readonly emptyQuoted?: readonly number[],
  ) {}

  get data(): Record<string, string> {
    if (this.object) return this.object;
    const data: Record<string, string> = {};
    for (let k = 0; k < this.columns.length; k++) {
      if (this.hasProto && this.columns[k] === '__proto__') {
        Object.defineProperty(data, '__proto__', { value: this.values[k], enumerable: true, writable: true, configurable: true });
      } else data[this.columns[k]!] = this.values[k]!;
    }
    return (this.object = data);
  }
}

// Characters of a record's text kept for its excerpt (a row error shows at most 120).
const TEXT_KEPT = 256;

// Fields beyond the header's count kept for the row error's excerpt; the rest are only counted.
const EXTRA_FIELDS_KEPT = 16;

const enum State {
  FieldStart, // at the start of a field
  Unquoted, // in a field without quotes
  Quoted, // in a quoted field
  QuoteSeen, // in a quoted field, just after a '"': it closes the field, or doubles as '""'
}

/** The delimiters Intake reads, and detects when none is given (`, `: a comma and a space after it). */
export const DELIMITERS = [',', ';', '\t', '|', ' ', ', '] as const;
export type Delimiter = (typeof DELIMITERS)[number];

/** How fields are quoted, and how a quote inside a quoted field is written. */
export const QUOTES = ['"', "'"] as const;
export type Quote = (typeof QUOTES)[number];
export type Escape = 'double' | 'backslash';

/** What to do with a record of more or fewer fields than the header: a row error, NULLs for the missing trailing fields, or the extra ones dropped. */
export const RAGGED = ['error', 'pad', 'ignore_extra'] as const;
export type Ragged = (typeof RAGGED)[number];

/**
 * How a CSV file is written, as far as the submit said: anything left out is detected from
 * the file (see CsvReport for what was found).
 */
export interface CsvDialect {
  delimiter?: Delimiter;
  quote?: Quote;
  escape?: Escape;
  /** false: the file has no header row (columns are column_1 …). */
  header?: boolean;
  /** The 1-based line where the header starts (the lines above it are skipped). */
  headerRow?: number;
  /** Lines skipped before the table (its header, or its first row without one). */
  skipLines?: number;
  ragged?: Ragged;
}

/** Lines of the file that are not part of the table, and why. */
export interface SkippedLines {
  /** 1-based, inclusive. */
  from: number;
  to: number;
  why: 'above the table' | 'after the table';
  /** The first of them as written (at most 120 characters). */
  text: string;
}

/**
 * How the file was read, shown on the job as `dialect`: filled in by parseCsv as it reads
 * (the dialect once sniffed, `skipped` as the table ends).
 */
export interface CsvReport {
  delimiter: Delimiter;
  quote: Quote;
  escape: Escape;
  line_ending: 'LF' | 'CRLF' | 'CR';
  /** The 1-based line of the header's first row, or null when the file has none. */
  header_row: number | null;
  /** Rows the header is written over (joined into one name per column), 0 without a header. */
  header_rows: number;
  /** The columns' names as the header gives them (joined), known even when no record follows. */
  columns: string[];
  /** At most MAX_SKIPPED_SHOWN runs of skipped lines; `skipped_lines` counts them all. */
  skipped: SkippedLines[];
  skipped_lines: number;
}

// Lines looked at to detect the delimiter.
const SAMPLE_LINES = 20;

/**
 * The delimiter of a CSV file, from its first lines (outside quoted fields): the candidate
 * found the same number of times, at least once, on every line of the sample, the most often;
 * failing that, the one most often on the first line (the header); a comma when the first
 * line has none (one column).
 */
export function detectDelimiter(sample: string): Delimiter {
  const counts: number[][] = [];
  let line = DELIMITERS.map(() => 0);
  let empty = true;
  let quoted = false;
  for (let i = 0; i < sample.length && counts.length < SAMPLE_LINES; i++) {
    const c = sample[i]!;
    if (c === '"') {
      quoted = !quoted;
      empty = false;
    } else if (!quoted && (c === '\n' || c === '\r')) {
      if (c === '\r' && sample[i + 1] === '\n') i++;
      if (!empty) counts.push(line); // empty lines are skipped, as the parser skips them
      line = DELIMITERS.map(() => 0);
      empty = true;
    } else {
      empty = false;
      const d = quoted ? -1 : DELIMITERS.indexOf(c as Delimiter);
      if (d >= 0) line[d]!++;
    }
  }
  if (!empty && counts.length < SAMPLE_LINES) counts.push(line); // the last line, without its line break
  let best = -1;
  for (let d = 0; d < DELIMITERS.length; d++) {
    const first = counts[0]?.[d] ?? 0;
    if (first > 0 && counts.every((n) => n[d] === first) && (best < 0 || first > counts[0]![best]!)) best = d;
  }
  if (best < 0 && counts.length > 0) {
    const first = counts[0]!;
    const most = Math.max(...first);
    if (most > 0) best = first.indexOf(most);
  }
  return DELIMITERS[Math.max(best, 0)]!;
}

/**
 * The text as it comes, after `first` has seen its start: the chunks that hold the first
 * SAMPLE_LINES lines (or 64 KiB, or all of it), joined.
 */
async function* sampled(text: AsyncIterable<string> | Iterable<string>, first: (sample: string) => void): AsyncGenerator<string> {
  let sample = '';
  let sent = false;
  try {
    for await (const chunk of text) {
      if (sent) {
        yield chunk;
        continue;
      }
      sample += chunk;
      if (sample.length >= 64 * 1024 || (sample.match(/\n|\r(?!\n)/g)?.length ?? 0) > SAMPLE_LINES) {
        first(sample);
        sent = true;
        yield sample;
      }
    }
  } catch (err) {
    // The input broke off (invalid UTF-8...): what came before it is read all the same.
    if (!sent) {
      first(sample);
      yield sample;
    }
    throw err;
  }
  if (!sent) {
    first(sample);
    yield sample;
  }
}

/**
 * CSV (RFC 4180, with the delimiter of the dialect) with a header row, or without one (then
 * columns are named `column_1` …): quoted fields (with "" for a quote) which may hold the
 * delimiter and line breaks; records end with CRLF, LF or (old Mac files) a lone CR, mixed at
 * will. A '"' inside an unquoted field is a character of it, as Excel and Python read it.
 * Empty lines are skipped; a leading BOM is dropped. Every record must have as many fields as
 * the header. Line numbers count physical lines (CRLF, LF or CR ends one), also inside
 * quoted fields; a record's line is the one where it starts.
 *
 * The limits bound what one record may hold in memory: a header with more than maxColumns
 * fields fails the job; a record with more fields than the header, a field longer than
 * maxFieldLength or a record longer than maxRecordLength is a row error, and what it holds
 * beyond the limit is never kept (the parser reads on to its end without storing it).
 */
export async function* parseCsv(
  text: AsyncIterable<string> | Iterable<string>,
  limits: InputLimits = DEFAULT_LIMITS,
  dialect: CsvDialect = {},
  report?: CsvReport,
): AsyncGenerator<ParsedRecord> {
  void report;
  const header = dialect.header ?? true;
  let delimiter = dialect.delimiter;
  let sep = delimiter?.charCodeAt(0) ?? 0x2c;
  let keys: string[] | null = null;
  let hasProto = false;
  let fields: string[] = []; // the record's fields, while it is within the limits
  let fieldCount = 0; // fields of the current record, kept or not
  let recordLength = 0; // characters of the current record's fields
  let problem: string | undefined; // why the current record is a row error; its text is no longer kept
  let field = ''; // the current field's text from earlier chunks (and before a doubled quote)
  let state = State.FieldStart as State; // (as: TypeScript narrows it wrongly after the loops)
  let line = 1; // the line of the character being read
  let recordLine = 1; // where the current record starts
  let quoteLine = 1; // where the current quoted field starts
  let afterCR = false; // the previous character was a CR: a LF now completes the CRLF
  let first = true;
  let textHead = ''; // the current record's text in earlier chunks (at most TEXT_KEPT characters)
  let textStart = 0; // where the current record's text begins in this chunk

  const error = (at: number, what: string) => new IngestError(`CSV error on line ${at}: ${what}`);

  /** Adds a field to the current record, unless the record has broken a limit. */
  function pushField(value: string): void {
    fieldCount++;
    recordLength += value.length;
    if (problem !== undefined) return;
    if (keys === null && fieldCount > limits.maxColumns) {
      throw error(recordLine, `the header has more than ${limits.maxColumns} columns (MAX_COLUMNS)`);
    }
    if (value.length > limits.maxFieldLength)
      problem = `field ${fieldCount} is longer than ${limits.maxFieldLength} characters (MAX_FIELD_LENGTH)`;
    else if (recordLength > limits.maxRecordLength)
      problem = `the record is longer than ${limits.maxRecordLength} characters (MAX_RECORD_LENGTH)`;
    else if (keys === null || fields.length < keys.length + EXTRA_FIELDS_KEPT) fields.push(value); // more are counted, not kept
  }

  /** At the end of a chunk: the field read so far must fit the limits, or stop being kept. */
  function checkPartialField(): void {
    if (problem !== undefined) {
      field = '';
      return;
    }
    if (field.length > limits.maxFieldLength || recordLength + field.length > limits.maxRecordLength) {
      if (keys === null)
        throw error(
          recordLine,
          `the header is longer than the limits allow (MAX_FIELD_LENGTH ${limits.maxFieldLength}, MAX_RECORD_LENGTH ${limits.maxRecordLength})`,
        );
      problem =
        field.length > limits.maxFieldLength
          ? `field ${fieldCount + 1} is longer than ${limits.maxFieldLength} characters (MAX_FIELD_LENGTH)`
          : `the record is longer than ${limits.maxRecordLength} characters (MAX_RECORD_LENGTH)`;
      field = '';
    }
  }

  /** The current record's text as written (its first TEXT_KEPT characters), when it ends at `end` of `chunk`. */
  const recordText = (chunk: string, end: number) =>
    textHead.length >= TEXT_KEPT ? textHead : textHead + chunk.slice(textStart, Math.min(end, textStart + TEXT_KEPT - textHead.length));

  /** Ends the current record, whose text (as written) is `text`; a record (not the header) is returned. */
  function endRecord(text: string): ParsedRecord | undefined {
    const values = fields;
    const count = fieldCount;
    const broken = problem;
    fields = [];
    fieldCount = 0;
    recordLength = 0;
    problem = undefined;
    textHead = '';
    if (keys === null) {
      keys = header ? headerKeys(values) : values.map((_, i) => `column_${i + 1}`);
      hasProto = keys.includes('__proto__');
      if (header) return undefined;
    }
    if (count !== keys.length) {
      const s = keys.length === 1 ? '' : 's';
      const message = `CSV error on line ${recordLine}: expected ${keys.length} field${s} as in the ${header ? 'header' : 'first row'}, found ${count}`;
      return { ...rowError(recordLine, message, text, true), columns: keys };
    }
    if (broken) return { ...rowError(recordLine, `CSV error on line ${recordLine}: ${broken}`, text, true), columns: keys };
    return new CsvRecord(keys, hasProto, values, recordLine, text);
  }

  const detect = (sample: string) => {
    delimiter = detectDelimiter(sample);
    sep = delimiter.charCodeAt(0);
  };
  for await (const chunk of delimiter === undefined ? sampled(text, detect) : text) {
    let i = 0;
    if (first && chunk.length > 0) {
      first = false;
      if (chunk.charCodeAt(0) === 0xfeff) i = 1;
    }
    let start = i; // where the current field's text begins in this chunk
    textStart = i;
    const len = chunk.length;
    for (; i < len; i++) {
      const c = chunk.charCodeAt(i);
      const cr = c === 0x0d;
      const lf = c === 0x0a;
      if (cr || lf) {
        const crlf = lf && afterCR;
        afterCR = cr;
        if (crlf) continue; // the LF of a CRLF: the line (and any record) ended at the CR
        line++;
        if (state === State.Quoted) continue; // a line break inside a quoted field
        // A line break ends the record, if there is one: an empty line is skipped.
        if (state === State.FieldStart && fieldCount === 0) continue;
        pushField(state === State.Unquoted ? field + chunk.slice(start, i) : field);
        field = '';
        state = State.FieldStart;
        const record = endRecord(recordText(chunk, i));
        if (record) yield record;
        continue;
      }
      afterCR = false;
      switch (state) {
        case State.FieldStart:
          if (fieldCount === 0) {
            recordLine = line;
            textStart = i;
          }
          if (c === 0x22) {
            state = State.Quoted;
            quoteLine = line;
            start = i + 1;
          } else if (c === sep) pushField('');
          else {
            state = State.Unquoted;
            start = i;
          }
          break;
        case State.Unquoted:
          if (c === sep) {
            pushField(field + chunk.slice(start, i));
            field = '';
            state = State.FieldStart;
          }
          break;
        case State.Quoted:
          if (c === 0x22) {
            field += chunk.slice(start, i);
            state = State.QuoteSeen;
          }
          break;
        case State.QuoteSeen:
          if (c === 0x22) {
            // A doubled quote: a quote in the value; the text goes on after it.
            state = State.Quoted;
            start = i; // keep this '"'
          } else if (c === sep) {
            pushField(field);
            field = '';
            state = State.FieldStart;
          } else {
            throw error(
              line,
              `${JSON.stringify(chunk[i])} after the closing quote of field ${fieldCount + 1}; expected ${delimiter === '\t' ? 'a tab' : `'${delimiter}'`} or the end of the line`,
            );
          }
          break;
      }
    }
    if (state === State.Unquoted || state === State.Quoted) field += chunk.slice(start);
    checkPartialField();
    if (state !== State.FieldStart || fieldCount > 0) textHead = recordText(chunk, len);
  }
  if (state === State.Quoted) {
    throw error(quoteLine, `the quoted field ${fieldCount + 1} starting here is never closed (the file ends inside it)`);
  }
  if (state !== State.FieldStart || fieldCount > 0) {
    pushField(field);
    const record = endRecord(textHead);
    if (record) yield record;
  }
}
