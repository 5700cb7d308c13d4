import type { Encoding } from './decode.js';
import { DEFAULT_LIMITS, type InputLimits } from './limits.js';
import { IngestError } from '../core/errors.js';
import { rowError, type ParsedRecord } from './record.js';
import {
  cellKind,
  findTable,
  joinHeader,
  SAMPLE_CHARS,
  SAMPLE_LINES,
  sniffCsv,
  splitSample,
  tableWidth,
  type CellKind,
  type CsvDialect,
  type Delimiter,
  type Escape,
  type Quote,
  type Ragged,
  type SampleRow,
} from './sniff.js';

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

// Records of another shape than the table held back to see whether the table goes on after
// them (then they are row errors) or ends with them (notes, totals, a second table).
const HOLD_RECORDS = 64;
const HOLD_CHARS = 1024 * 1024;

// Times one record is read again with one more of its quotes as a character; past them, all are.
const MAX_REREADS = 16;

// Reads again nested deeper than this read line by line (bounded work and stack).
const MAX_DEPTH = 4;

// Characters fed to the state machine at a time.
const PIECE = 16 * 1024;

// Runs of skipped lines listed in the report (all are counted).
const MAX_SKIPPED_SHOWN = 20;

const enum State {
  FieldStart, // at the start of a field
  Unquoted, // in a field without quotes
  Quoted, // in a quoted field
  QuoteSeen, // in a quoted field, just after its quote: it closes the field, or doubles as a quote
  Escaped, // in a quoted field, just after a backslash (escape: backslash)
  SpaceRun, // after a space, with a space delimiter: more spaces are the same delimiter
  SepSpace, // after the comma of a `, ` delimiter: a space here is part of it
}

export { DELIMITERS, QUOTES, RAGGED, type CsvDialect, type Delimiter, type Escape, type Quote, type Ragged } from './sniff.js';

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
  /** The encoding the bytes were read in: given, or detected (decodeText). */
  encoding?: Encoding;
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

/** A record read in full, before it is known to fit the table. */
interface Read {
  values: string[];
  count: number;
  line: number;
  endLine: number;
  text: string;
  problem: string | undefined;
  emptyQuoted: number[] | undefined;
  /** A blank line is above it. */
  blank: boolean;
}

interface ReaderOptions {
  limits: InputLimits;
  delimiter: Delimiter;
  quote: Quote;
  escape: Escape;
  /** The number of fields most rows have (the sniffer's): until a header says otherwise, what a record should have. */
  width: number;
  skipLines: number;
  /** Rows the header is written over (0: no header). */
  headerRows: number;
  ragged: Ragged;
  /** What each column holds (the sniffer's): a row whose first value does not fit is no data row. */
  kinds?: readonly (CellKind | undefined)[];
  /** Rows end with a delimiter the header lacks: a last field left empty after the table's is none. */
  trailing?: boolean;
  /** When given, every record is only collected here (the sample's rows, to find the table in). */
  rows?: SampleRow[];
}

const NONE: readonly number[] = [];

/**
 * The CSV state machine over decoded text: `feed` each chunk, then `finish`; the records
 * (and row errors) come out in `out`. Everything it keeps between chunks is bounded by the
 * limits: the current record (its text too, for reading it again), and at most HOLD_RECORDS
 * records of another shape than the table.
 */
function csvReader(o: ReaderOptions) {
  const { limits, ragged } = o;
  const sep = o.delimiter.charCodeAt(0);
  const spaces = o.delimiter === ' ';
  const afterSep = spaces ? State.SpaceRun : o.delimiter === ', ' ? State.SepSpace : State.FieldStart;
  const q = o.quote.charCodeAt(0);
  const esc = o.escape === 'backslash' ? 0x5c : -1;
  const collect = o.rows;
  const out: ParsedRecord[] = [];
  const headerParts: string[][] = [];
  let headerLine: number | null = null;
  let keys: string[] | null = null;
  let width = o.width;
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
  let rawHead = ''; // the current record's text in earlier chunks (all of it, to read it again, until it breaks a limit)
  let rawCut = false; // rawHead holds only the start of the record (it broke a limit): it cannot be read again
  let textStart = 0; // where the current record's text begins in this chunk
  let quoteAt = 0; // where the current quoted field's quote is in the record's text
  // Where (in the record's text) the quote is of the first quoted field that swallowed a line
  // break or went on after its closing quote: the one to read as a character when the record
  // does not fit the table.
  let anomaly = -1;
  // The quote of a quoted field that swallowed a line break, and of one that went on after its
  // closing quote: when one field did both, it never was a quoted field (whatever the record's count).
  let brokeQuote = -1;
  let lazyQuote = -1;
  let suspect = -1; // the first quote that did both
  // The field that swallowed a line break was closed by a quote right after a delimiter or a line
  // break: where a field starts, so more likely the opening quote of the next one.
  let seam = false;
  let emptyQuoted: number[] | undefined;
  let literals: readonly number[] | null = null; // in the text being read again, quotes that are characters
  let recordLiterals: readonly number[] = NONE; // the same, for the current record (offsets in its text)
  let quotesLiteral = false; // the current record has been read again too often: every quote is a character
  let rereads = 0;
  let rereading = false;
  let depth = 0; // reads again within reads again
  // Where the table ends.
  let held: Read[] = [];
  let heldChars = 0;
  let blankSince = false; // a blank line since the last record
  let heldAfterBlank = false;
  let ended: { from: number; text: string } | null = null;
  let lastContent = 0;
  const after: SkippedLines[] = [];
  let afterLines = 0;

  const fail = (at: number, what: string) => new IngestError(`CSV error on line ${at}: ${what}`);

  /** Adds a field to the current record, unless the record has broken a limit. */
  function pushField(value: string): void {
    fieldCount++;
    recordLength += value.length;
    if (problem !== undefined) return;
    if (keys === null && fieldCount > limits.maxColumns) {
      if (collect) {
        problem = 'too wide';
        return;
      }
      throw fail(recordLine, `the header has more than ${limits.maxColumns} columns (MAX_COLUMNS)`);
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
      if (keys === null && !collect && headerParts.length < o.headerRows)
        throw fail(
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
    rawHead.length >= TEXT_KEPT
      ? rawHead.slice(0, TEXT_KEPT)
      : rawHead + chunk.slice(textStart, Math.min(end, textStart + TEXT_KEPT - rawHead.length));

  const fits = (count: number) =>
    count === width ||
    (o.trailing === true && count === width + 1) ||
    (ragged === 'pad' && count < width && count > 1) ||
    (ragged === 'ignore_extra' && count > width);

  function setKeys(names: string[]): void {
    keys = names;
    width = keys.length;
    hasProto = keys.includes('__proto__');
  }

  /** Reads a record again from its text with another delimiter or quote; taken (true) when that gives exactly the table's fields. */
  function readAs(r: Read, delimiter: Delimiter, quote: Quote, spaceRuns = true): boolean {
    const split = splitSample(r.text, delimiter, quote, o.escape, 2, spaceRuns);
    if (split.length !== 1 || split[0]!.length !== width) return false;
    r.values = split[0]!.map((cell) => cell.text);
    r.count = width;
    const empty = split[0]!.flatMap((cell, k) => (cell.quoted && cell.text === '' ? [k] : []));
    r.emptyQuoted = empty.length > 0 ? empty : undefined;
    return true;
  }

  /**
   * A record of too few fields with a space delimiter, read again with each space one delimiter:
   * an empty field is written as nothing between two spaces (or before the first, after the
   * last), where runs of spaces align columns. Taken when it then fits the table.
   */
  const singleSpaced = (r: Read) => readAs(r, ' ', o.quote, false);

  /** Whether a record of `count` fields, `raw` as written, fits the table (with spaces, maybe each space one delimiter). */
  function countFits(count: number, raw: string): boolean {
    if (count === width) return true;
    if (!spaces || count > width) return false;
    const split = splitSample(raw, ' ', o.quote, o.escape, 2, false);
    return split.length === 1 && split[0]!.length === width;
  }

  /**
   * A row of the table that does not fit, written as another writer would have (a row joined
   * with `;` in a comma file, one quoted with `'` in a file quoted with `"`): read so when that
   * gives exactly the table's fields. Another delimiter only where the file's own is missing
   * from the row, in a table of 3 columns or more (one `|` in a text is no evidence), never a
   * space, and never one written with a space after it (`a; b` is text).
   */
  function otherDialect(r: Read): void {
    if (width < 2 || r.text.length >= TEXT_KEPT) return;
    // (The other quote only in a row without the file's own: that would unquote its fields.)
    const tries: [Delimiter, Quote][] = r.text.includes(o.quote) ? [] : [[o.delimiter, o.quote === '"' ? "'" : '"']];
    if (r.count === 1 && width >= 3)
      for (const d of [',', ';', '\t', '|'] as const) if (d !== o.delimiter[0] && !r.text.includes(`${d} `)) tries.push([d, o.quote]);
    tries.some(([delimiter, quote]) => readAs(r, delimiter, quote, false));
  }

  /** A record that fits the table (or is let in by `ragged`), or a row error. */
  function emit(r: Read): void {
    const columns = keys!;
    if (o.trailing && r.count === width + 1 && r.values[width] === '' && !r.emptyQuoted?.includes(width)) {
      r.values.length = width;
      r.count = width;
    }
    if (r.count !== width && r.problem === undefined && ragged === 'error') otherDialect(r);
    let values = r.values;
    if (r.count !== width && r.problem === undefined) {
      if (ragged === 'pad' && r.count < width) {
        while (values.length < width) values.push('');
      } else if (ragged === 'ignore_extra' && r.count > width) {
        values = values.slice(0, width);
      } else {
        const s = width === 1 ? '' : 's';
        const message = `CSV error on line ${r.line}: expected ${width} field${s} as in the ${o.headerRows > 0 ? 'header' : 'other rows'}, found ${r.count}`;
        out.push({ ...rowError(r.line, message, r.text, true), columns });
        return;
      }
    }
    if (r.problem) {
      out.push({ ...rowError(r.line, `CSV error on line ${r.line}: ${r.problem}`, r.text, true), columns });
      return;
    }
    const quoted = r.emptyQuoted && values.length < r.count ? r.emptyQuoted.filter((k) => k < values.length) : r.emptyQuoted;
    out.push(new CsvRecord(columns, hasProto, values, r.line, r.text, quoted?.length ? quoted : undefined));
  }

  /**
   * Whether a record of another shape than the table, with none that fits after it, is no data
   * row but the table's end: after a blank line, far fewer fields (`Total: 1234`) unless it
   * starts with a value of the first column's type, or a first value of words where the column
   * holds numbers or dates (`Total;;96,10`).
   */
  function endsTable(r: Read): boolean {
    if (r.blank) return true;
    const kind = o.kinds?.[0];
    const first = r.values[0]?.trim() ?? '';
    const found = cellKind(first);
    // (Fewer fields, but a number under numbers, or digits without a word under numbers or
    // dates: data run together, `27898945502.69`, `15326.06-78552.84`.)
    if (r.count <= width / 2) return kind === undefined || kind === 'text' || (found !== kind && !/^[-+(]?\d[^\p{L}]*$/u.test(first));
    if (kind === undefined || kind === 'text' || !/^\p{L}/u.test(first)) return false;
    return found !== kind && found !== 'empty';
  }

  function release(): void {
    const records = held;
    held = [];
    heldChars = 0;
    for (const r of records) emit(r);
  }

  function skippedAfter(from: number, to: number, text: string): void {
    afterLines += to - from + 1;
    if (after.length < MAX_SKIPPED_SHOWN) after.push({ from, to, why: 'after the table', text: rowError(from, '', text, true).excerpt });
  }

  /** Ends the current record, whose text (as written) is `text`. */
  function endRecord(text: string, endLine: number): void {
    if (fieldCount === width && keys !== null && held.length === 0 && problem === undefined && rereads === 0 && ended === null) {
      // The common case: a record that fits the table.
      out.push(new CsvRecord(keys, hasProto, fields, recordLine, text, emptyQuoted));
      fields = [];
      fieldCount = 0;
      recordLength = 0;
      rawHead = '';
      anomaly = brokeQuote = lazyQuote = suspect = -1;
      seam = false;
      emptyQuoted = undefined;
      if (recordLiterals !== NONE) recordLiterals = NONE;
      blankSince = false;
      return;
    }
    const r: Read = { values: fields, count: fieldCount, line: recordLine, endLine, text, problem, emptyQuoted, blank: blankSince };
    fields = [];
    fieldCount = 0;
    recordLength = 0;
    problem = undefined;
    rawHead = '';
    rawCut = false;
    anomaly = brokeQuote = lazyQuote = suspect = -1;
    seam = false;
    emptyQuoted = undefined;
    rereads = 0;
    quotesLiteral = false;
    if (recordLiterals !== NONE) recordLiterals = NONE;
    if (collect) {
      const spread = spaces && r.problem === undefined ? splitSample(r.text, ' ', o.quote, o.escape, 2, false)[0]?.length : undefined;
      collect.push(
        spread !== undefined && spread !== r.count ? { line: r.line, fields: r.values, spread } : { line: r.line, fields: r.values },
      );
      return;
    }
    if (ended) {
      lastContent = r.endLine;
      return;
    }
    if (keys === null) {
      if (headerParts.length < o.headerRows) {
        if (headerParts.length === 0) headerLine = r.line;
        headerParts.push(r.values);
        if (headerParts.length === o.headerRows) setKeys(headerKeys(joinHeader(headerParts)));
        blankSince = false;
        return;
      }
      setKeys(Array.from({ length: width }, (_, i) => `column_${i + 1}`));
    }
    if (spaces && r.count < width && r.problem === undefined && r.text.length < TEXT_KEPT) singleSpaced(r);
    if (fits(r.count)) {
      if (held.length > 0) release();
      emit(r);
    } else {
      if (held.length === 0) heldAfterBlank = blankSince;
      held.push(r);
      heldChars += r.text.length + r.values.reduce((n, v) => n + v.length, 0);
      if (held.length > HOLD_RECORDS || heldChars > HOLD_CHARS) {
        if (heldAfterBlank) {
          // Rows of another shape after a blank line, more than notes would be: a second table.
          ended = { from: held[0]!.line, text: held[0]!.text };
          lastContent = r.endLine;
          held = [];
          heldChars = 0;
        } else release(); // ragged rows in the table, not its end
      }
    }
    blankSince = false;
  }

  /** Reads the current record again from its start (`raw`, its text so far), with the quotes at `quotes` (offsets in it) as characters. */
  function reread(raw: string, quotes: readonly number[]): void {
    const outerLiterals = literals;
    const outerRereading = rereading;
    fields = [];
    fieldCount = 0;
    recordLength = 0;
    problem = undefined;
    field = '';
    state = State.FieldStart;
    line = recordLine;
    afterCR = false;
    rawHead = '';
    rawCut = false;
    anomaly = brokeQuote = lazyQuote = suspect = -1;
    seam = false;
    emptyQuoted = undefined;
    recordLiterals = NONE;
    if (++rereads > MAX_REREADS) quotesLiteral = true;
    literals = quotes;
    rereading = true;
    depth++;
    scan(raw, 0);
    depth--;
    literals = outerLiterals;
    rereading = outerRereading;
  }

  /** Where the line of the quote at `anomaly` ends in `raw` (-1: at its end). */
  function anomalyLineEnd(raw: string): number {
    const lf = raw.indexOf('\n', anomaly);
    const cr = raw.indexOf('\r', anomaly);
    return cr >= 0 && (lf < 0 || cr < lf) ? cr : lf;
  }

  /**
   * Whether a record that does not fit the table (`raw`, its text) is better read with the quote
   * at `anomaly` as a character: when the record is one line, or when every record its text then
   * makes fits. Else that quote opened a field that holds line breaks as written, and the record
   * is one row error, not torn apart into a wrong row and another error.
   */
  function literalQuoteFits(raw: string): boolean {
    if (anomalyLineEnd(raw) < 0) return true;
    // (Two fields are too few to tell, as in linesFit.)
    if (width < 3 && !seam) return false;
    const text = raw.slice(0, anomaly) + '_' + raw.slice(anomaly + 1);
    return splitSample(text, o.delimiter, o.quote, o.escape).every((fields) => fields.length === width);
  }

  /**
   * Whether the lines of a record that a quote made one (`raw`, its text) each have the table's
   * fields when that quote is a character: then they are records, and the quote a stray one.
   */
  function linesFit(raw: string): boolean {
    // (With spaces, words split into fields too: a record that fits stays as it is. Two fields
    // are too few to tell, unless the quote closing the field stands where a field starts: a
    // quoted line break after a delimiter in the text splits it into two.)
    if ((width < 3 && !seam) || width < 2 || brokeQuote < 0 || spaces) return false;
    // The quote's own line must go on past a delimiter after it (a field that starts a line
    // break, `,"\n`, is one a writer quoted).
    const end = anomalyLineEnd(raw);
    if (!raw.slice(anomaly + 1, end).includes(o.delimiter)) return false;
    const text = (raw.slice(0, anomaly) + '_' + raw.slice(anomaly + 1)).replace(/\r\n?|\n/g, '\n');
    const lines = splitSample(text, o.delimiter, o.quote, o.escape);
    return lines.length >= 2 && lines.length === text.split('\n').length && lines.every((fields) => fields.length === width);
  }

  /** The quotes of the current record to read as characters when it is read again (offsets in its text). */
  const nextLiterals = () => [...recordLiterals, suspect >= 0 ? suspect : anomaly >= 0 ? anomaly : quoteAt];

  function scan(chunk: string, from: number): void {
    let i = from;
    let start = i; // where the current field's text begins in this chunk
    textStart = i;
    const len = chunk.length;
    // The hot state in locals (the closures see it when they need it).
    let st = state;
    let ln = line;
    let acr = afterCR;
    let lead = false;
    for (; i < len; i++) {
      const c = chunk.charCodeAt(i);
      if (c === 0x0d || c === 0x0a) {
        if (c === 0x0a && acr) {
          acr = false;
          continue; // the LF of a CRLF: the line (and any record) ended at the CR
        }
        if (st === State.Quoted || st === State.Escaped) {
          if (depth > MAX_DEPTH && !rawCut) {
            // Text read again and again is read line by line: a quote that swallows a line break is a character.
            line = ln;
            reread(chunk.slice(textStart, i), nextLiterals());
            st = state;
            ln = line;
            acr = afterCR;
            start = textStart = i;
            i--;
            continue;
          }
          if (anomaly < 0) anomaly = quoteAt;
          brokeQuote = quoteAt;
          if (lazyQuote === quoteAt && suspect < 0) suspect = quoteAt;
          if (st === State.Escaped) {
            field += '\\';
            start = i;
            st = State.Quoted;
          }
          acr = c === 0x0d;
          ln++;
          continue; // a line break inside a quoted field
        }
        if (fieldCount === 0 && (st === State.FieldStart || st === State.SpaceRun)) {
          // An empty line (or only spaces, with a space delimiter) is skipped.
          acr = c === 0x0d;
          ln++;
          blankSince = true;
          st = State.FieldStart;
          continue;
        }
        if (
          anomaly >= 0 &&
          !rawCut &&
          ((!countFits(fieldCount + (st === State.SpaceRun ? 0 : 1), rawHead + chunk.slice(textStart, i)) &&
            literalQuoteFits(rawHead + chunk.slice(textStart, i))) ||
            suspect >= 0 ||
            linesFit(rawHead + chunk.slice(textStart, i)))
        ) {
          // A quote swallowed a line break (or text after its closing quote) and the record does
          // not fit: read it again with that quote as a character.
          line = ln;
          reread(rawHead + chunk.slice(textStart, i), nextLiterals());
          st = state;
          ln = line;
          acr = afterCR;
          start = textStart = i;
          i--;
          continue;
        }
        acr = c === 0x0d;
        ln++;
        if (st !== State.SpaceRun) {
          if (st === State.QuoteSeen && field === '') (emptyQuoted ??= []).push(fieldCount);
          pushField(st === State.Unquoted ? field + chunk.slice(start, i) : field);
        }
        field = '';
        st = State.FieldStart;
        endRecord(recordText(chunk, i), ln - 1);
        textStart = i + 1;
        continue;
      }
      acr = false;
      switch (st) {
        case State.SpaceRun:
          if (c === 0x20) break;
          lead = fieldCount === 0; // the record's text starts at its leading spaces
        // falls through
        case State.SepSpace:
          st = State.FieldStart;
          if (c === 0x20) break;
        // falls through
        case State.FieldStart:
          if (fieldCount === 0 && !lead) {
            recordLine = ln;
            textStart = i;
          }
          lead = false;
          if (c === q && (literals === null || !(quotesLiteral || literals.includes(i)))) {
            st = State.Quoted;
            quoteLine = ln;
            quoteAt = rawHead.length + i - textStart;
            start = i + 1;
          } else if (c === sep) {
            if (spaces) st = State.SpaceRun;
            else {
              pushField('');
              st = afterSep;
            }
          } else {
            if (c === q) recordLiterals = [...recordLiterals, rawHead.length + i - textStart];
            st = State.Unquoted;
            start = i;
          }
          break;
        case State.Unquoted:
          if (c === sep) {
            pushField(field + chunk.slice(start, i));
            field = '';
            st = afterSep;
          }
          break;
        case State.Quoted:
          if (c === q) {
            field += chunk.slice(start, i);
            st = State.QuoteSeen;
            if (brokeQuote === quoteAt) {
              const before = i > 0 ? chunk.charCodeAt(i - 1) : -1;
              seam = before === sep || before === 0x0a || before === 0x0d;
            }
          } else if (c === esc) {
            field += chunk.slice(start, i);
            st = State.Escaped;
          }
          break;
        case State.Escaped:
          // \" is a quote and \\ a backslash; before anything else a backslash is itself.
          if (c !== q && c !== 0x5c) field += '\\';
          start = i;
          st = State.Quoted;
          break;
        case State.QuoteSeen:
          if (c === q) {
            // A doubled quote: a quote in the value; the text goes on after it.
            st = State.Quoted;
            start = i; // keep this quote
          } else if (c === sep) {
            if (field === '') (emptyQuoted ??= []).push(fieldCount);
            pushField(field);
            field = '';
            st = afterSep;
          } else {
            // Text after the closing quote: that quote was a character of the field (`"a "b" c"`).
            if (anomaly < 0) anomaly = quoteAt;
            lazyQuote = quoteAt;
            if (brokeQuote === quoteAt && suspect < 0) suspect = quoteAt;
            field += o.quote;
            start = i;
            st = State.Quoted;
          }
          break;
      }
    }
    state = st;
    line = ln;
    afterCR = acr;
    if (state === State.Unquoted || state === State.Quoted) field += chunk.slice(start);
    if (fieldCount > 0 || state !== State.FieldStart) {
      if (!rawCut) rawHead += chunk.slice(textStart);
      if (
        !rereading &&
        anomaly >= 0 &&
        !rawCut &&
        (state === State.Quoted || state === State.Escaped) &&
        (field.length > limits.maxFieldLength || recordLength + field.length > limits.maxRecordLength)
      ) {
        // A quote swallowed line after line, past what a record may hold: it was a character.
        reread(rawHead, nextLiterals());
        return;
      }
    }
    checkPartialField();
    if (problem !== undefined && !rawCut) {
      rawHead = rawHead.slice(0, TEXT_KEPT);
      rawCut = true;
    } else if (!rawCut && rawHead.length > 2 * limits.maxRecordLength) {
      rawHead = rawHead.slice(0, TEXT_KEPT);
      rawCut = true;
    }
  }

  /**
   * Skips whole lines, quotes or not, counting them: up to line `until` (the lines above the
   * table), or to the end of the chunk (after the table, noting the last line with content).
   * Returns where it stopped.
   */
  function skipLines(chunk: string, i: number, until = Infinity): number {
    for (; i < chunk.length && line <= until; i++) {
      const c = chunk.charCodeAt(i);
      if (c === 0x0d) {
        line++;
        afterCR = true;
      } else if (c === 0x0a) {
        if (!afterCR) line++;
        afterCR = false;
      } else {
        afterCR = false;
        lastContent = line;
      }
    }
    return i;
  }

  function feed(chunk: string): void {
    let i = 0;
    if (first) {
      if (chunk.length === 0) return;
      first = false;
      if (chunk.charCodeAt(0) === 0xfeff) i = 1;
    }
    if (ended) {
      skipLines(chunk, i);
      return;
    }
    if (line <= o.skipLines) {
      i = skipLines(chunk, i, o.skipLines);
      if (line <= o.skipLines) return;
    }
    scan(chunk, i);
  }

  /** The end of the input; `cut`: of a sample of it, whose last record may go on past it (then it is left out). */
  function finish(cut = false): void {
    if (cut && (state === State.Quoted || state === State.Escaped)) return;
    if (!ended) {
      // The file ends inside a quoted field: its quote was a character (read it again so).
      while ((state === State.Quoted || state === State.Escaped) && !rawCut) reread(rawHead, nextLiterals());
      if (state === State.Quoted || state === State.Escaped) {
        const message = `CSV error on line ${quoteLine}: the quoted field ${fieldCount + 1} starting here is never closed (the file ends inside it)`;
        if (!collect) out.push({ ...rowError(recordLine, message, rawHead, true), columns: keys ?? [] });
      } else if (fieldCount > 0 || (state !== State.FieldStart && state !== State.SpaceRun)) {
        if (state !== State.SpaceRun) {
          if (state === State.QuoteSeen && field === '') (emptyQuoted ??= []).push(fieldCount);
          pushField(field);
        }
        endRecord(rawHead.slice(0, TEXT_KEPT), line);
      }
    }
    if (collect) return;
    if (keys === null && headerParts.length > 0) setKeys(headerKeys(joinHeader(headerParts)));
    if (ended) skippedAfter(ended.from, lastContent, ended.text);
    else if (held.length > 0) {
      // The rows after the last that fits: row errors while they look like data, then the table's end.
      const end = held.findIndex(endsTable);
      for (const r of end < 0 ? held : held.slice(0, end)) emit(r);
      if (end >= 0) skippedAfter(held[end]!.line, held.at(-1)!.endLine, held[end]!.text);
    }
    held = [];
  }

  return {
    out,
    feed,
    finish,
    get columns() {
      return keys;
    },
    get headerLine() {
      return headerLine;
    },
    skippedAfter: () => ({ runs: after, lines: afterLines }),
  };
}

/**
 * CSV (RFC 4180, in the dialect given or sniffed from the first SAMPLE_CHARS / SAMPLE_LINES of
 * the text) with a header row, written over one to three rows, or without one (then columns
 * are named `column_1` …): quoted fields (with a doubled quote, or `\"` with escape=backslash,
 * for a quote) which may hold the delimiter and line breaks; records end with CRLF, LF or (old
 * Mac files) a lone CR, mixed at will. Empty lines are skipped; a leading BOM is dropped.
 * Line numbers count physical lines (CRLF, LF or CR ends one), also inside quoted fields; a
 * record's line is the one where it starts.
 *
 * Messy files are read the way a person would read them, never failing the job for one row:
 * - lines above the table (titles, notes) are skipped; so are lines after it that do not fit
 *   it (notes, totals, a second table): up to HOLD_RECORDS records of another shape to the end
 *   of the file, or after a blank line any number of them. All are listed in `report`.
 * - a quote inside an unquoted field is a character of it, as Excel and Python read it; so is
 *   a quote inside a quoted field that does not close it (text goes on after it);
 * - a quote that swallows line breaks, or runs to the end of the file, and so makes a record
 *   that does not fit the table, is read again as a character: each line is then a record.
 * - a record of more or fewer fields than the header is a row error, or padded with empty
 *   fields (`ragged: 'pad'`), or cut (`ragged: 'ignore_extra'`).
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
  const chunks: AsyncIterator<string> | Iterator<string> =
    Symbol.asyncIterator in text ? text[Symbol.asyncIterator]() : text[Symbol.iterator]();
  let sample = '';
  let breaks = 0;
  let done = false;
  let broken: Error | undefined; // the input broke off (invalid UTF-8...): what came before it is read all the same
  try {
    while (sample.length < SAMPLE_CHARS && breaks < SAMPLE_LINES) {
      const next = await chunks.next();
      if (next.done) {
        done = true;
        break;
      }
      sample += next.value;
      for (let i = next.value.indexOf('\n'); i !== -1; i = next.value.indexOf('\n', i + 1)) breaks++;
    }
  } catch (err) {
    broken = err as Error;
    done = true;
  }

  // Whole lines only: a record cut in two would look like two of another shape.
  let whole = sample;
  if (!done || sample.length > SAMPLE_CHARS) {
    let cut = -1;
    for (let n = 0, i = sample.indexOf('\n'); i !== -1 && i < SAMPLE_CHARS && n < SAMPLE_LINES; i = sample.indexOf('\n', i + 1), n++)
      cut = i;
    if (cut < 0) cut = sample.lastIndexOf('\r', SAMPLE_CHARS);
    if (cut >= 0) whole = sample.slice(0, cut + 1);
  }
  const sniffed = sniffCsv(whole, dialect);
  const read = {
    limits,
    delimiter: sniffed.delimiter,
    quote: sniffed.quote,
    escape: sniffed.escape,
    ragged: dialect.ragged ?? 'error',
  };
  const rows: SampleRow[] = [];
  const probe = csvReader({ ...read, width: sniffed.width, skipLines: 0, headerRows: 0, rows });
  probe.feed(whole);
  probe.finish(!done);
  // With spaces, the rows whose spaces are single say the width (a short row of aligned columns
  // does not: `1  x` leaves a value out; nor does a `#` comment).
  const single = sniffed.delimiter === ' ' ? rows.filter((r) => r.spread === undefined && !r.fields[0]!.startsWith('#')) : rows;
  const measured = single.length >= 2 ? single : rows;
  let width = tableWidth(
    measured.map((r) => r.fields.length),
    measured.map((r, i) => i > 0 && r.line > measured[i - 1]!.line + 1),
  );
  // Under `ragged`, a header right over the rows may be narrower than most of them (trailing
  // delimiters, notes: ignore_extra) or wider (missing trailing fields: pad): the table is its width.
  // Without it, rows that all end with a delimiter the header lacks (`1,2,3,` under `a,b,c`) are
  // the header's width, each with an empty field after its last.
  const first = rows.findIndex((r) => r.fields.length === width);
  const over = rows[first - 1];
  let trailing = false;
  if (over && over.line === rows[first]!.line - 1 && over.fields.length >= 2 && dialect.headerRow === undefined) {
    if (read.ragged === 'ignore_extra' ? over.fields.length < width : read.ragged === 'pad' && over.fields.length > width)
      width = over.fields.length;
    else if (
      over.fields.length === width - 1 &&
      over.fields[width - 2]!.trim() !== '' &&
      rows.slice(first).every((r) => r.fields.length !== width || r.fields[width - 1] === '')
    ) {
      width = over.fields.length;
      trailing = true;
    }
  }
  const table = findTable(rows, width, dialect, sniffed.delimiter);
  const headerRows = dialect.header === false ? 0 : table.headerRows;

  const skippedAbove: SkippedLines[] = [];
  if (table.skipLines > 0) {
    const lines = whole.replace(/^\uFEFF/, '').split(/\r\n|\r|\n/, table.skipLines);
    const text = lines.find((l) => l.trim() !== '') ?? '';
    skippedAbove.push({ from: 1, to: table.skipLines, why: 'above the table', text: rowError(1, '', text, true).excerpt });
  }
  if (report) {
    Object.assign(report, {
      delimiter: sniffed.delimiter,
      quote: sniffed.quote,
      escape: sniffed.escape,
      line_ending: sniffed.line_ending,
      header_row: null,
      header_rows: 0,
      columns: [],
      skipped: [...skippedAbove],
      skipped_lines: table.skipLines,
    } satisfies CsvReport);
  }

  const reader = csvReader({ ...read, width, skipLines: table.skipLines, headerRows, kinds: table.kinds, trailing });
  const fillHeader = () => {
    if (report && reader.columns !== null && report.columns.length === 0) {
      report.columns = [...reader.columns];
      report.header_row = reader.headerLine;
      report.header_rows = reader.headerLine === null ? 0 : headerRows;
    }
  };
  let chunk: string | undefined = sample;
  try {
    while (chunk !== undefined) {
      // Fed in pieces so that records are handed on while young (cheap to collect).
      for (let at = 0; at < chunk.length; at += PIECE) {
        reader.feed(at === 0 && chunk.length <= PIECE ? chunk : chunk.slice(at, at + PIECE));
        if (reader.out.length === 0) continue;
        fillHeader();
        for (const record of reader.out) yield record;
        reader.out.length = 0;
      }
      if (broken !== undefined) throw broken;
      const next: IteratorResult<string> = await chunks.next();
      chunk = next.done ? undefined : next.value;
    }
  } finally {
    // The input broke off (the records read so far stand), or the caller stopped reading.
    if (broken === undefined) await chunks.return?.();
  }
  reader.finish();
  fillHeader();
  if (report) {
    const { runs, lines } = reader.skippedAfter();
    report.skipped.push(...runs.slice(0, MAX_SKIPPED_SHOWN - report.skipped.length));
    report.skipped_lines += lines;
  }
  for (const record of reader.out) yield record;
}
