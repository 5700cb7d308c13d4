/**
 * How a CSV file is written, found from a sample of its start: the dialect (delimiter, quote,
 * escape, line ending), scored the way CleverCSV's data consistency measure scores it (van den
 * Burg et al., 2019: rows that split into the same number of cells, cells that read as typed
 * values), and where the table starts in it (title lines and notes above the header, a header
 * written over several rows, or no header at all).
 */

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

export type LineEnding = 'LF' | 'CRLF' | 'CR';

/** The dialect found in a sample, and the number of fields most of its rows have. */
export interface SniffedDialect {
  delimiter: Delimiter;
  quote: Quote;
  escape: Escape;
  line_ending: LineEnding;
  width: number;
}

/** The sample sniffed: at most this many characters and lines of the start of the file. */
export const SAMPLE_CHARS = 256 * 1024;
export const SAMPLE_LINES = 1000;

// Rows of a candidate's split whose cells are typed (the pattern score reads them all).
const TYPED_ROWS = 200;

// CleverCSV's floors: a one-cell row pattern still counts a little; a type score is never 0.
const EPS_PATTERN = 1e-3;
const EPS_TYPE = 1e-10;

interface Cell {
  text: string;
  quoted: boolean;
}

/**
 * The sample's rows as one candidate dialect splits them (empty lines left out). It reads
 * quotes as the parser does, roughly: a quote opens a field only at its start, and text after
 * a closing quote goes on in the field. A space delimiter is a run of spaces (aligned columns:
 * leading and trailing spaces make no field; with `spaceRuns` false each space is one); `, ` is a
 * comma, and one space after it is skipped.
 */
export function splitSample(
  sample: string,
  delimiter: Delimiter,
  quote: Quote,
  escape: Escape,
  maxRows = Infinity,
  spaceRuns = true,
  gaps?: number[],
): Cell[][] {
  const rows: Cell[][] = [];
  const sep = delimiter.charCodeAt(0);
  const spaces = delimiter === ' ' && spaceRuns;
  const commaSpace = delimiter === ', ';
  const q = quote.charCodeAt(0);
  const esc = escape === 'backslash' ? 0x5c : -1;
  const len = sample.length;
  let row: Cell[] = [];
  let i = 0;
  let gap = 0; // empty fields the row's spaces would make, each space one delimiter
  let sepped = false; // the last field was followed by its delimiter
  while (i < len && rows.length < maxRows) {
    let c = sample.charCodeAt(i);
    if (spaces) {
      const at = i;
      while (c === 0x20) c = sample.charCodeAt(++i);
      gap += i - at + (sepped && (i >= len || c === 0x0a || c === 0x0d) ? 1 : 0);
      sepped = false;
    }
    if (c === 0x0a || c === 0x0d) {
      if (row.length > 0) {
        rows.push(row);
        gaps?.push(gap);
      }
      gap = 0;
      row = [];
      i += c === 0x0d && sample.charCodeAt(i + 1) === 0x0a ? 2 : 1;
      continue;
    }
    if (i >= len) break;
    // A field: quoted when it starts with the quote (its text then goes on after the closing quote).
    let text = '';
    let quoted = false;
    let from = i;
    if (c === q) {
      quoted = true;
      from = ++i;
      for (; i < len; i++) {
        const d = sample.charCodeAt(i);
        if (d === esc && i + 1 < len) {
          text += sample.slice(from, i);
          from = ++i;
        } else if (d === q) {
          text += sample.slice(from, i);
          from = i + 1;
          if (sample.charCodeAt(i + 1) === q) i++;
          else break;
        }
      }
      i = Math.min(i + 1, len);
      from = i;
    }
    for (; i < len; i++) {
      const d = sample.charCodeAt(i);
      if (d === sep || d === 0x0a || d === 0x0d) break;
    }
    // Text after the closing quote: the field was not quoted as a whole (its quote not this dialect's).
    if (i > from) quoted = false;
    text += sample.slice(from, i);
    row.push({ text, quoted });
    if (i < len && sample.charCodeAt(i) === sep) {
      i++;
      sepped = true;
      if (commaSpace && sample.charCodeAt(i) === 0x20) i++;
      if (!spaces && (i >= len || sample.charCodeAt(i) === 0x0a || sample.charCodeAt(i) === 0x0d)) row.push({ text: '', quoted: false });
    }
  }
  if (row.length > 0 && rows.length < maxRows) {
    rows.push(row);
    gaps?.push(gap);
  }
  return rows;
}

// A number as people write it: signs, thousands separators (`,` `.` `'` space), a decimal
// point or comma, an exponent; a currency symbol or code before or after, a percent sign.
const NUMBER =
  /^[-+(]?(?:[$€£¥₹₽]|[A-Z]{3} ?)?[-+]?(?:\d+|\d{1,3}(?:([,. '\u00a0\u202f’])\d{3})(?:\1\d{3})*)?(?:[.,]\d+)?(?:[eE][-+]?\d+)?(?: ?(?:%|‰|[$€£¥₹₽]|[A-Z]{3}))?\)?$/;
const DATE =
  /^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})|\d{1,2}[ -][A-Za-z]{3,9}\.?[ -]\d{2,4}|[A-Za-z]{3,9}\.? \d{1,2},? \d{4})(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?: ?[AaPp][Mm])?(?:Z|[+-]\d{2}:?\d{2})?)?$/;
const TIME = /^\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?: ?[AaPp][Mm])?$/;
const BOOLEAN = /^(?:true|false|yes|no|y|n|on|off|t|f)$/i;
const NULL_MARKER = /^(?:na|n\/a|null|none|nan|-|—)$/i;
const URL = /^(?:(?:https?|ftp):\/\/|www\.)[^\s"',;]+$/i;
const EMAIL = /^[\w.+-]+@[\w-]+(?:\.[\w-]+)+$/;
const IPV4 = /^(?:\d{1,3}\.){3}\d{1,3}$/;
// Words (CleverCSV's "unicode alphanumeric"): letters and digits, with spaces and the usual
// punctuation of names, sentences and paths; a quoted cell may hold the delimiters, quotes and line
// breaks too (what it is quoted for). Unquoted words never end with a quote: half of a quoted field.
const WORDS = /^[\p{L}\p{N}][\p{L}\p{N} _\-.'’&/\\()#+:!?@%*]*$/u;
const WORDS_QUOTED = /^[\p{L}\p{N}][\p{L}\p{N} _\-.'’"&/\\()#+:!?@%*,;|\t\r\n]*$/u;

/** What a cell's text looks like: a typed value (number, date, time, boolean), empty or a NULL marker, or text. */
export type CellKind = 'number' | 'date' | 'time' | 'boolean' | 'empty' | 'text';

export function cellKind(text: string): CellKind {
  if (text === '' || NULL_MARKER.test(text)) return 'empty';
  const c = text.charCodeAt(0);
  const digitLike = (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x28;
  if (digitLike || text.length <= 5 || c === 0x24 || c > 0x7f) {
    if (NUMBER.test(text) && /\d/.test(text)) return 'number';
  }
  if (BOOLEAN.test(text)) return 'boolean';
  if (DATE.test(text)) return 'date';
  if (TIME.test(text)) return 'time';
  return 'text';
}

/** Whether a cell reads as a value of a known type (CleverCSV's type score counts these). */
function knownType(cell: Cell): boolean {
  const t = cell.text;
  if (cellKind(t) !== 'text') return true;
  if (!cell.quoted && /['"]$/.test(t)) return false;
  return URL.test(t) || EMAIL.test(t) || IPV4.test(t) || (cell.quoted ? WORDS_QUOTED : WORDS).test(t);
}

/** The pattern score: rows of the same number of cells, many cells to a row, few different counts. */
function patternScore(rows: Cell[][]): number {
  const counts = new Map<number, number>();
  for (const row of rows) counts.set(row.length, (counts.get(row.length) ?? 0) + 1);
  let score = 0;
  for (const [cells, n] of counts) score += (n * Math.max(EPS_PATTERN, cells - 1)) / cells;
  return counts.size === 0 ? 0 : score / counts.size;
}

function typeScore(rows: Cell[][], known: Map<string, boolean>): number {
  let total = 0;
  let typed = 0;
  for (const row of rows.length > TYPED_ROWS ? rows.slice(0, TYPED_ROWS) : rows) {
    for (const cell of row) {
      total++;
      const key = (cell.quoted ? '"' : ' ') + cell.text;
      let is = known.get(key);
      if (is === undefined) known.set(key, (is = knownType(cell)));
      if (is) typed++;
    }
  }
  return total === 0 ? EPS_TYPE : Math.max(EPS_TYPE, typed / total);
}

/** The line ending most lines of the sample end with (LF when it has none). */
function lineEnding(sample: string): LineEnding {
  let crlf = 0;
  let cr = 0;
  let lf = 0;
  for (let i = sample.indexOf('\r'); i !== -1; i = sample.indexOf('\r', i + 1)) {
    if (sample.charCodeAt(i + 1) === 0x0a) crlf++;
    else cr++;
  }
  for (let i = sample.indexOf('\n'); i !== -1; i = sample.indexOf('\n', i + 1)) lf++;
  lf -= crlf;
  if (crlf >= lf && crlf >= cr && crlf > 0) return 'CRLF';
  return cr > lf ? 'CR' : 'LF';
}

/** The number of cells most rows have (on a tie, the one seen first), 1 for no rows. */
function modalWidth(rows: Cell[][]): number {
  return tableWidth(rows.map((row) => row.length));
}

/**
 * The number of cells most rows have, with spaces (`gaps`: the empty fields each row's spaces
 * would make, read one by one) among the rows whose spaces are single and that are no `#`
 * comment: a short row of aligned columns (`1  x`, a value left out) says nothing of the width.
 */
function spacedWidth(rows: Cell[][], gaps: readonly number[]): number {
  const single = rows.filter((row, i) => gaps[i] === 0 && !row[0]!.text.startsWith('#'));
  return modalWidth(single.length >= 2 ? single : rows);
}

/**
 * The number of fields of the table among rows of these field counts (in the file's order;
 * `breaks[i]`: a blank line before row i). The most common count, unless a wider one comes
 * after all rows of it but a footer (a preamble of `key;value` lines over the table): that
 * one when it covers as many cells, or starts after a blank line. A single row is no table.
 */
export function tableWidth(counts: readonly number[], breaks?: readonly boolean[]): number {
  const seen = new Map<number, { n: number; first: number; last: number }>();
  let modal = 1;
  let most = 0;
  counts.forEach((w, i) => {
    const s = seen.get(w) ?? { n: 0, first: i, last: i };
    s.n++;
    s.last = i;
    seen.set(w, s);
    if (s.n > most) {
      most = s.n;
      modal = w;
    }
  });
  let best = modal;
  for (const [w, s] of seen) {
    const b = seen.get(best)!;
    if (w <= best || s.n < 2) continue;
    // The rows of the narrower width lie above the wider ones (or below them all: a footer).
    let inside = false;
    for (let i = s.first; i <= s.last && !inside; i++) inside = counts[i] === best;
    if (inside || b.first > s.first) continue;
    if (s.n * w >= b.n * best || breaks?.[s.first] === true) best = w;
  }
  return best;
}

/** Whether (nearly) every comma of the text has a space after it: else `, ` is not its delimiter, and spaces are data. */
function commasSpaced(text: string): boolean {
  let commas = 0;
  let spaced = 0;
  for (let i = text.indexOf(','); i !== -1; i = text.indexOf(',', i + 1)) {
    commas++;
    if (text.charCodeAt(i + 1) === 0x20) spaced++;
  }
  return spaced > 0 && spaced >= 0.9 * commas;
}

/** Whether the text has backslashes and every run of them is of pairs (`C:\\temp`): each an escaped backslash. */
function backslashesPaired(text: string): boolean {
  let runs = 0;
  for (let i = text.indexOf('\\'); i !== -1; i = text.indexOf('\\', i)) {
    let n = 0;
    while (text.charCodeAt(i) === 0x5c) {
      n++;
      i++;
    }
    if (n % 2 === 1) return false;
    runs++;
  }
  return runs > 0;
}

/**
 * Whether a delimiter other than the comma (the default) splits the sample into a table: most
 * rows from the table's first on (with spaces, nearly all: text is full of them) of the same
 * number of fields, at least 2.
 */
function plausible(rows: Cell[][], delimiter: Delimiter, gaps: readonly number[]): boolean {
  const width = spacedWidth(rows, gaps);
  if (width < 2 || (delimiter === ' ' && rows.length < 2)) return false;
  // Spaces after another delimiter (`1, 'x'`): cells that end with it in most rows.
  if (delimiter === ' ' && rows.filter((r) => r.some((cell, k) => k < r.length - 1 && /[,;|]$/.test(cell.text))).length * 2 > rows.length)
    return false;
  if (!rows.some((r) => r.reduce((n, cell) => (cell.text.trim() === '' ? n : n + 1), 0) >= 2)) return false;
  // From the table's first row on, past notes above it (comments, or lines wider than the
  // table); a narrower line of words above it is its header, taken apart at the spaces in names.
  let from = rows.findIndex((r) => r.length === width);
  if (!rows.slice(0, from).every((r) => r.length > width || !/^[\p{L}\p{N}]/u.test(r[0]!.text))) from = 0;
  // (With spaces, a row short of fields whose spaces, each read as one, make them fits too: `1  x`.)
  const same = rows.reduce((n, r, i) => (r.length === width || (r.length < width && r.length + (gaps[i] ?? 0) === width) ? n + 1 : n), 0);
  return same >= (delimiter === ' ' ? 0.8 : 0.5) * (rows.length - from);
}

/**
 * The dialect of a sample of decoded text (whole lines: the caller cuts a partial last line),
 * with anything in `given` kept. Candidates are every delimiter and quote that occur in the
 * sample (a comma and a double quote always), with a backslash escape when a backslash is
 * written before a quote; each is scored by its pattern score times its type score, the type
 * score only when the pattern score could still win (Q ≤ P). Ties go to the earlier candidate
 * in the order of DELIMITERS and QUOTES, a backslash escape before doubled quotes when a backslash
 * is written before a quote or every backslash is doubled (`\\`: a writer escaping them).
 */
export function sniffCsv(sample: string, given: CsvDialect): SniffedDialect {
  const text = sample.charCodeAt(0) === 0xfeff ? sample.slice(1) : sample;
  const delimiters = given.delimiter
    ? [given.delimiter]
    : DELIMITERS.filter((d) => d === ',' || (d === ', ' ? commasSpaced(text) : text.includes(d)));
  const quotes = given.quote ? [given.quote] : QUOTES.filter((q) => q === '"' || text.includes(q));
  const candidates: { delimiter: Delimiter; quote: Quote; escape: Escape; rows: Cell[][]; gaps: number[]; p: number }[] = [];
  for (const delimiter of delimiters) {
    for (const quote of quotes) {
      const escapes: Escape[] = given.escape
        ? [given.escape]
        : text.includes(`\\${quote}`) || backslashesPaired(text)
          ? ['backslash', 'double']
          : ['double'];
      for (const escape of escapes) {
        const gaps: number[] = [];
        const rows = splitSample(text, delimiter, quote, escape, Infinity, true, gaps);
        if (!given.delimiter && delimiter !== ',' && !plausible(rows, delimiter, gaps)) continue;
        candidates.push({ delimiter, quote, escape, rows, gaps, p: patternScore(rows) });
      }
    }
  }
  // A quote that opens no field, where the other one does with the same delimiter, is no quote:
  // reading it so only tears the other one's quoted fields apart (`O'Brien` beside `"a, b"`).
  const quoting = (c: (typeof candidates)[number]) => c.rows.some((row) => row.some((cell) => cell.quoted));
  const quoted = new Set(candidates.filter(quoting).map((c) => c.delimiter));
  for (let i = candidates.length - 1; i >= 0; i--) {
    if (quoted.has(candidates[i]!.delimiter) && !quoting(candidates[i]!)) candidates.splice(i, 1);
  }
  // Best pattern scores first (a stable sort keeps the order of preference among equals).
  const order = candidates.map((_, i) => i).sort((a, b) => candidates[b]!.p - candidates[a]!.p || a - b);
  const known = new Map<string, boolean>();
  if (candidates.length === 0) {
    const quote = given.quote ?? '"';
    const escape = given.escape ?? 'double';
    candidates.push({ delimiter: ',', quote, escape, rows: splitSample(text, ',', quote, escape), gaps: [], p: 0 });
  }
  let best = candidates[0]!;
  let bestQ = -1;
  let bestIndex = Infinity;
  for (const i of order) {
    const c = candidates[i]!;
    if (c.p < bestQ) break; // Q = P × T ≤ P: it cannot win
    const q = c.p * typeScore(c.rows, known);
    if (q > bestQ * (1 + 1e-9) || (Math.abs(q - bestQ) <= bestQ * 1e-9 && i < bestIndex)) {
      best = c;
      bestQ = q;
      bestIndex = i;
    }
  }
  return {
    delimiter: best.delimiter,
    quote: best.quote,
    escape: best.escape,
    line_ending: lineEnding(text),
    width: spacedWidth(best.rows, best.gaps),
  };
}

/** A row of the sample as the parser read it: its first line and its fields. */
export interface SampleRow {
  line: number;
  fields: readonly string[];
  /** With a space delimiter, when the row has runs of spaces: its fields with each space one delimiter. */
  spread?: number;
}

/** Where the table starts: the physical lines above it, and how many rows its header takes (0: none). */
export interface TableStart {
  skipLines: number;
  headerRows: number;
  /** What each column holds below the header, where nearly all its values are of one type. */
  kinds?: (CellKind | undefined)[];
}

// A header is written over at most this many rows.
const MAX_HEADER_ROWS = 3;
// Rows below the header whose cells decide what each column holds.
const BODY_ROWS = 100;

const filled = (row: SampleRow) => row.fields.reduce((n, f) => (f.trim() === '' ? n : n + 1), 0);
/**
 * A title over the table, written in its first cell (`Sales report 2025,,,`): a sentence rather
 * than a name (long, with a space), or set apart by a blank line. A header with one name is not one.
 */
function isTitle(row: SampleRow, next: SampleRow): boolean {
  const first = row.fields[0]?.trim() ?? '';
  if (first === '' || filled(row) !== 1 || cellKind(first) !== 'text') return false;
  return next.line > row.line + 1 || (first.length >= 10 && / /.test(first));
}

const typed = (kind: CellKind) => kind !== 'text' && kind !== 'empty';

/**
 * Where the table starts in the sample's rows (as the parser read them with the sniffed
 * dialect; `width` is the number of fields most of them have). The rows above the first one
 * of `width` fields are a preamble (titles, notes), and so is a lone title cell over a wider
 * table (`Report 2025,,,`). The first row of the table is the header unless it is typed like
 * the data below it (every column that holds numbers, dates… below holds one there too): then
 * the file has none. Rows under the header are more of it (up to three in all) while they are
 * all text and either name a column whose data is typed, or leave a cell empty where the row
 * above names one (`Price,,Qty` over `EUR,USD,`). `given` settles whatever it says. With a space
 * delimiter, lines starting with `#` over the header are comments.
 */
export function findTable(rows: readonly SampleRow[], width: number, given: CsvDialect, delimiter?: Delimiter): TableStart {
  let s = 0;
  if (given.headerRow !== undefined) {
    while (s < rows.length && rows[s]!.line < given.headerRow) s++;
  } else if (given.skipLines !== undefined) {
    while (s < rows.length && rows[s]!.line <= given.skipLines) s++;
  } else {
    const fits = (r: SampleRow) => r.fields.length === width;
    const first = rows.findIndex(fits);
    if (first > 0) s = first;
    // Comment lines (`# run 17`) of the table's width over its header, with a space delimiter
    // (with others, a `#` cell is a name); over data, the last is the header.
    const comment = (r: SampleRow) => delimiter === ' ' && r.fields[0]?.trimStart().startsWith('#') === true;
    if (first >= 0 && comment(rows[s]!)) {
      let k = s;
      while (k < rows.length && comment(rows[k]!)) k++;
      const next = rows[k];
      if (next && fits(next) && !next.fields.some((f) => typed(cellKind(f.trim())))) s = k;
      else {
        s = k - 1;
        while (s > first && !fits(rows[s]!)) s--;
      }
    }
    while (s + 1 < rows.length && width >= 2 && isTitle(rows[s]!, rows[s + 1]!) && fits(rows[s + 1]!) && filled(rows[s + 1]!) > 1) s++;
  }
  const skipLines =
    given.headerRow !== undefined
      ? given.headerRow - 1
      : given.skipLines !== undefined
        ? given.skipLines
        : s < rows.length
          ? rows[s]!.line - 1
          : 0;
  if (given.header === false || s >= rows.length) return { skipLines, headerRows: given.header === false ? 0 : 1 };

  // What each column holds below the first row: typed when nearly all its values are.
  // (Rows of text with empty cells right under the first may be more of a header, `,Min,Max`:
  // the body starts under them.)
  let b = s + 1;
  const blank = (r: SampleRow, j: number) => (r.fields[j] ?? '').trim() === '';
  const spansAbove = (r: SampleRow, above: SampleRow) =>
    r.fields.some((_, j) => blank(r, j) && !blank(above, j)) && r.fields.some((_, j) => j > 0 && !blank(r, j) && blank(above, j));
  const under = (r: SampleRow, above: SampleRow) =>
    r.fields.some((_, j) => blank(r, j)) && r.fields.every((_, j) => !blank(r, j) || blank(above, j));
  while (
    b < s + MAX_HEADER_ROWS &&
    b < rows.length &&
    !rows[b]!.fields.some((f) => typed(cellKind(f.trim()))) &&
    (b === s + 1 ? spansAbove : under)(rows[b]!, rows[b - 1]!)
  )
    b++;
  if (b >= rows.length) b = s + 1;
  const body = rows.slice(b, b + BODY_ROWS).filter((r) => r.fields.length === width);
  const columns: (CellKind | undefined)[] = [];
  for (let j = 0; j < width; j++) {
    const kinds = new Map<CellKind, number>();
    let values = 0;
    for (const r of body) {
      const kind = cellKind(r.fields[j]!.trim());
      if (kind === 'empty') continue;
      values++;
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    let kind: CellKind | undefined;
    for (const [k, n] of kinds) if (typed(k) && n >= 0.9 * values) kind = k;
    columns.push(kind);
  }
  const isTyped = columns.some((k) => k !== undefined);
  const head = rows[s]!;
  if (given.header === undefined && isTyped && head.fields.length === width) {
    const year = /^(?:19|20)\d\d$/;
    const likeData = columns.every((k, j) => {
      const cell = head.fields[j]!.trim();
      const kind = cellKind(cell);
      // A year over a column of other numbers is a name (`region,2024,2025` over counts).
      if (k === 'number' && year.test(cell) && body.some((r) => !year.test(r.fields[j]!.trim()))) return false;
      return k === undefined ? true : kind === k || kind === 'empty';
    });
    if (likeData && head.fields.some((f) => typed(cellKind(f.trim())))) return { skipLines, headerRows: 0, kinds: columns };
  }

  let headerRows = 1;
  while (headerRows < MAX_HEADER_ROWS && s + headerRows + 1 < rows.length) {
    const row = rows[s + headerRows]!;
    const above = rows[s + headerRows - 1]!;
    if (row.fields.length !== width || row.line !== above.line + 1 || filled(row) === 0) break;
    const kinds = row.fields.map((f) => cellKind(f.trim()));
    if (kinds.some(typed)) break;
    const namesTypedColumn = kinds.some((k, j) => k === 'text' && columns[j] !== undefined);
    const spans =
      isTyped &&
      row.fields.some((f, j) => f.trim() === '' && above.fields[j]?.trim() !== '') &&
      row.fields.some((f, j) => j > 0 && f.trim() !== '' && above.fields[j]?.trim() === '');
    if (!namesTypedColumn && !spans) break;
    headerRows++;
  }
  return { skipLines, headerRows, kinds: columns };
}

/**
 * One name per column from a header written over several rows: the parts joined with a space,
 * top first. In a row above the last, an empty cell over a name takes the
 * name on its left (a title spanning columns: `Price,,Qty` over `EUR,USD,` gives `Price EUR`,
 * `Price USD`, `Qty`).
 */
export function joinHeader(rows: readonly (readonly string[])[]): string[] {
  if (rows.length === 1) return [...rows[0]!];
  const width = Math.max(...rows.map((r) => r.length));
  const names: string[][] = Array.from({ length: width }, () => []);
  rows.forEach((row, r) => {
    let left = '';
    for (let j = 0; j < width; j++) {
      let part = (row[j] ?? '').trim();
      if (part !== '') left = part;
      else if (r < rows.length - 1 && rows.slice(r + 1).some((below) => (below[j] ?? '').trim() !== '')) part = left;
      if (part !== '') names[j]!.push(part);
    }
  });
  return names.map((parts) => parts.join(' '));
}
