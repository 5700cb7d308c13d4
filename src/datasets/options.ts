/**
 * A submit's load options (dataset, mode, key, schema, schema_update), from its query string or
 * its form fields, checked into what the job row keeps. Anything wrong is a 422 naming it.
 */
import { validationError, type ValidationIssue } from '../core/errors.js';
import { RAGGED, type Delimiter, type Escape, type Quote, type Ragged } from '../formats/csv.js';
import { ENCODINGS, type Encoding } from '../formats/decode.js';
import type { ReadOptions } from '../formats/parse.js';
import { isTabular, WRITE_MODES, type Format, type WriteMode } from '../core/job.js';
import { webhookUrlProblem } from '../net/webhook-url.js';
import { datasetNameFor, datasetNameProblem } from './names.js';
import { columnSpec } from './column-spec.js';
import type { ColumnSpec } from './types.js';

/** Where and how a job loads its rows. */
export interface LoadOptions {
  dataset: string;
  mode: WriteMode;
  /** Key columns of a merge (empty otherwise). */
  key: string[];
  /** Types the submit declared, by column, with how to read them. */
  types: Record<string, ColumnSpec>;
  /** schema_update=widen: existing columns may be widened to hold the job's values. */
  widen: boolean;
  /** How the file is read (its encoding, a CSV's delimiter and header). */
  read: ReadOptions;
  /** callback_url: told when the job ends. */
  callbackUrl?: string;
}

export interface RawLoadOptions {
  dataset?: string;
  mode?: string;
  key?: string;
  schema?: string;
  schema_update?: string;
  delimiter?: string;
  header?: string | boolean;
  quote?: string;
  escape?: string;
  header_row?: string | number;
  skip_lines?: string | number;
  ragged?: string;
  encoding?: string;
  sheet?: string;
  callback_url?: string;
  locale?: string;
  date_order?: string;
  null_values?: string;
}

export const LOAD_OPTION_NAMES = [
  'dataset',
  'mode',
  'key',
  'schema',
  'schema_update',
  'delimiter',
  'header',
  'quote',
  'escape',
  'header_row',
  'skip_lines',
  'ragged',
  'encoding',
  'sheet',
  'callback_url',
  'locale',
  'date_order',
  'null_values',
] as const;

// Other names people use for the encodings Intake reads.
const ENCODING_ALIASES: Record<string, Encoding> = {
  utf8: 'utf-8',
  latin1: 'iso-8859-1',
  'latin-1': 'iso-8859-1',
  cp1252: 'windows-1252',
  latin9: 'iso-8859-15',
  utf16le: 'utf-16le',
  utf16be: 'utf-16be',
  'utf-16': 'utf-16le',
  mac: 'macintosh',
};

/** An encoding by its name or an alias, or undefined when Intake does not read it. */
export function encodingNamed(name: string): Encoding | undefined {
  const lower = name.trim().toLowerCase();
  return (ENCODINGS as readonly string[]).includes(lower) ? (lower as Encoding) : ENCODING_ALIASES[lower];
}

/** `encoding` checked, or a 422 naming those Intake reads. */
export function encodingOption(raw: string | undefined, where: 'query' | 'body'): Encoding | undefined {
  if (raw === undefined || raw === '') return undefined;
  const encoding = encodingNamed(raw);
  if (!encoding) {
    throw validationError([
      {
        loc: [where, 'encoding'],
        msg: `encoding is one of ${ENCODINGS.join(', ')} (got ${JSON.stringify(raw.slice(0, 40))})`,
        type: 'value_error',
      },
    ]);
  }
  return encoding;
}

// A delimiter by its character or its name.
const DELIMITER_NAMES: Record<string, Delimiter> = {
  ',': ',',
  ';': ';',
  '\t': '\t',
  '|': '|',
  ' ': ' ',
  ', ': ', ',
  comma: ',',
  semicolon: ';',
  tab: '\t',
  pipe: '|',
  space: ' ',
  comma_space: ', ',
};
const MAX_KEY_COLUMNS = 32;
const MAX_DECLARED_COLUMNS = 1600;

const QUOTE_NAMES: Record<string, Quote> = { '"': '"', "'": "'", double: '"', single: "'" };
const ESCAPES: readonly Escape[] = ['double', 'backslash'];
// Beyond these a header row or a count of lines to skip is a mistake, not a file.
const MAX_HEADER_ROW = 10_000;

/** The CSV dialect's options, by their fields in read options (header applies to workbooks too). */
const CSV_OPTION_FIELDS = {
  delimiter: 'delimiter',
  quote: 'quote',
  escape: 'escape',
  headerRow: 'header_row',
  skipLines: 'skip_lines',
  ragged: 'ragged',
} as const;
const CSV_ONLY = Object.keys(CSV_OPTION_FIELDS) as (keyof typeof CSV_OPTION_FIELDS)[];

/** A whole number from `min` to MAX_HEADER_ROW, written as digits or given as a JSON integer; undefined otherwise. */
function lineNumber(raw: string | number, min: number): number | undefined {
  const value = typeof raw === 'number' ? raw : /^\s*\d{1,9}\s*$/.test(raw) ? Number(raw) : NaN;
  return Number.isSafeInteger(value) && value >= min && value <= MAX_HEADER_ROW ? value : undefined;
}

const given = <T extends string | number | boolean>(value: T | undefined): value is T => value !== undefined && value !== '';

/**
 * How a CSV file is written, as far as the submit says (anything left out is detected): set in
 * `read`; the problems as [field, message]. A `.tsv` file is tab-separated unless said otherwise.
 */
function csvDialectOptions(raw: RawLoadOptions, fileName: string | null, read: ReadOptions): [string, string][] {
  const issues: [string, string][] = [];
  const shown = (value: string | number) => JSON.stringify(String(value).slice(0, 20));
  if (given(raw.delimiter)) {
    // ' ' and ', ' are delimiters of their own: only a name is matched case-insensitively.
    const delimiter = DELIMITER_NAMES[raw.delimiter] ?? DELIMITER_NAMES[raw.delimiter.trim().toLowerCase()];
    if (!delimiter)
      issues.push([
        'delimiter',
        `delimiter is one of , ; | a tab, a space or ", " (or comma, semicolon, pipe, tab, space, comma_space) (got ${shown(raw.delimiter)})`,
      ]);
    else read.delimiter = delimiter;
  } else if (fileName?.toLowerCase().replace(/\.gz$/, '').endsWith('.tsv')) read.delimiter = '\t';
  if (given(raw.header)) {
    const header = String(raw.header).toLowerCase();
    if (header !== 'true' && header !== 'false')
      issues.push(['header', 'header is true (the first row names the columns, the default) or false (columns are column_1, column_2 …)']);
    else if (header === 'false') read.header = false;
  }
  if (given(raw.quote)) {
    const quote = QUOTE_NAMES[raw.quote.trim().toLowerCase()] ?? QUOTE_NAMES[raw.quote];
    if (!quote) issues.push(['quote', `quote is " or ' (or double, single) (got ${shown(raw.quote)})`]);
    else read.quote = quote;
  }
  if (given(raw.escape)) {
    const escape = raw.escape.trim().toLowerCase() as Escape;
    if (!ESCAPES.includes(escape))
      issues.push(['escape', `escape is double (a quote in a quoted field is written "") or backslash (\\") (got ${shown(raw.escape)})`]);
    else read.escape = escape;
  }
  if (given(raw.header_row)) {
    const row = lineNumber(raw.header_row, 1);
    if (row === undefined)
      issues.push(['header_row', `header_row is the line the header is on: 1 to ${MAX_HEADER_ROW} (got ${shown(raw.header_row)})`]);
    else if (read.header === false) issues.push(['header_row', 'header_row names the header line: not with header=false (use skip_lines)']);
    else read.headerRow = row;
  }
  if (given(raw.skip_lines)) {
    const lines = lineNumber(raw.skip_lines, 0);
    if (lines === undefined)
      issues.push([
        'skip_lines',
        `skip_lines is how many lines come before the table: 0 to ${MAX_HEADER_ROW} (got ${shown(raw.skip_lines)})`,
      ]);
    else if (read.headerRow !== undefined)
      issues.push(['skip_lines', 'header_row and skip_lines both say where the table starts: give one of them']);
    else read.skipLines = lines;
  }
  if (given(raw.ragged)) {
    const ragged = raw.ragged.trim().toLowerCase() as Ragged;
    if (!RAGGED.includes(ragged))
      issues.push([
        'ragged',
        `ragged is error (a row of more or fewer fields than the header is a row error, the default), pad (missing trailing fields are NULL) or ignore_extra (extra fields are dropped) (got ${shown(raw.ragged)})`,
      ]);
    else read.ragged = ragged;
  }
  return issues;
}

/**
 * The options checked; `fileName` names the dataset when none is given, and a `.tsv` one is
 * tab-separated unless said otherwise. Throws a 422 listing every problem.
 */
export function loadOptions(raw: RawLoadOptions, fileName: string | null, format: Format, where: 'query' | 'body'): LoadOptions {
  const issues: ValidationIssue[] = [];
  const issue = (field: string, msg: string) => issues.push({ loc: [where, field], msg, type: 'value_error' });

  const dataset = raw.dataset === undefined || raw.dataset === '' ? datasetNameFor(fileName) : raw.dataset;
  const nameProblem = datasetNameProblem(dataset);
  if (nameProblem) issue('dataset', nameProblem);

  const mode = (raw.mode === undefined || raw.mode === '' ? 'append' : raw.mode) as WriteMode;
  if (!WRITE_MODES.includes(mode)) issue('mode', `mode is one of ${WRITE_MODES.join(', ')} (got "${String(raw.mode).slice(0, 40)}")`);

  const key = raw.key === undefined || raw.key === '' ? [] : raw.key.split(',').map((k) => k.trim());
  if (mode === 'merge' && key.length === 0)
    issue('key', 'mode=merge needs key: the column (or comma-separated columns) rows are matched on');
  if (mode !== 'merge' && key.length > 0) issue('key', 'key is used only with mode=merge');
  if (key.some((k) => k === '')) issue('key', 'key names columns separated by commas, none of them empty');
  if (key.length > MAX_KEY_COLUMNS) issue('key', `key has more than ${MAX_KEY_COLUMNS} columns`);
  if (new Set(key).size !== key.length) issue('key', 'key names a column twice');

  const types: Record<string, ColumnSpec> = {};
  if (raw.schema !== undefined && raw.schema !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.schema);
    } catch {
      parsed = undefined;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      issue(
        'schema',
        'schema is a JSON object of column → type or {"type", "decimal", "format", "currency"}, e.g. {"qty": "bigint", "betrag": {"type": "numeric", "decimal": ","}}',
      );
    } else {
      const entries = Object.entries(parsed);
      if (entries.length > MAX_DECLARED_COLUMNS) issue('schema', `schema names more than ${MAX_DECLARED_COLUMNS} columns`);
      for (const [column, value] of entries.slice(0, MAX_DECLARED_COLUMNS)) {
        const spec = columnSpec(value);
        if (typeof spec === 'string') issue('schema', `the type of "${column.slice(0, 63)}" ${spec}`);
        else if (column === '') issue('schema', 'schema names a column with an empty name');
        else types[column] = spec;
      }
    }
  }

  const update = raw.schema_update ?? '';
  if (update !== '' && update !== 'widen')
    issue('schema_update', `schema_update is "widen" (let the job widen existing columns) or not given (got "${update.slice(0, 40)}")`);

  const read: ReadOptions = {};
  const csvIssues = csvDialectOptions(raw, fileName, read);
  for (const [field, msg] of csvIssues) issue(field, msg);
  try {
    const encoding = encodingOption(raw.encoding, where);
    if (encoding) read.encoding = encoding;
  } catch (err) {
    issues.push(...((err as { detail: ValidationIssue[] }).detail ?? []));
  }
  if (fileName === null && read.encoding !== undefined && read.encoding !== 'utf-8') {
    issue('encoding', 'posted records are read as UTF-8 (send other text as a file upload)');
  }
  if (raw.sheet !== undefined && raw.sheet !== '') {
    if (format !== 'xlsx') issue('sheet', 'sheet applies to Excel workbooks (.xlsx) only');
    else if (raw.sheet.length > 31)
      issue('sheet', 'sheet is a sheet name (at most 31 characters, as in Excel) or its position (1 is the first)');
    else read.sheet = raw.sheet;
  }
  readingOptions(raw, read, issue);
  for (const name of CSV_ONLY)
    if (format !== 'csv' && read[name] !== undefined)
      issue(CSV_OPTION_FIELDS[name], `${CSV_OPTION_FIELDS[name]} applies to CSV files only`);
  if (!isTabular(format) && read.header !== undefined) issue('header', 'header applies to CSV files and Excel workbooks only');
  if (format === 'xlsx' && read.encoding !== undefined) issue('encoding', 'an Excel workbook says its own encoding');

  const callbackUrl = raw.callback_url === undefined || raw.callback_url === '' ? undefined : raw.callback_url;
  const callbackProblem = callbackUrl === undefined ? undefined : webhookUrlProblem(callbackUrl);
  if (callbackProblem) issue('callback_url', callbackProblem);

  if (issues.length > 0) throw validationError(issues);
  return {
    dataset,
    mode,
    key: mode === 'merge' ? key : [],
    types,
    widen: update === 'widen',
    read,
    ...(callbackUrl !== undefined && { callbackUrl }),
  };
}

const MAX_NULL_VALUES = 100;

/**
 * How values are read into types: `locale` (a BCP 47 tag, e.g. de-DE: settles a column whose
 * numbers or dates read either way), `date_order` (DMY or MDY: settles day and month where no day
 * is above 12), `null_values` (a comma-separated list, or a JSON array, of the values that mean
 * NULL in a typed column; it replaces NA, N/A, null, NULL, -).
 */
function readingOptions(raw: RawLoadOptions, read: ReadOptions, issue: (field: string, msg: string) => void): void {
  if (raw.locale !== undefined && raw.locale !== '') {
    let locale: string | undefined;
    try {
      locale = Intl.getCanonicalLocales(raw.locale)[0];
    } catch {
      locale = undefined;
    }
    if (locale === undefined || raw.locale.length > 35)
      issue('locale', `locale is a language tag such as de-DE, en-US or fr-CH (got ${JSON.stringify(raw.locale.slice(0, 40))})`);
    else read.locale = locale;
  }
  if (raw.date_order !== undefined && raw.date_order !== '') {
    const order = raw.date_order.toUpperCase();
    if (order !== 'DMY' && order !== 'MDY')
      issue('date_order', `date_order is DMY (day first) or MDY (month first) (got ${JSON.stringify(raw.date_order.slice(0, 20))})`);
    else read.dateOrder = order;
  }
  if (raw.null_values !== undefined) {
    let values: unknown;
    if (raw.null_values.trimStart().startsWith('[')) {
      try {
        values = JSON.parse(raw.null_values);
      } catch {
        values = undefined;
      }
    } else values = raw.null_values === '' ? [] : raw.null_values.split(',').map((v) => v.trim());
    if (!Array.isArray(values) || values.some((v) => typeof v !== 'string' || v.length > 100) || values.length > MAX_NULL_VALUES) {
      issue(
        'null_values',
        `null_values is a comma-separated list (or a JSON array of strings) of at most ${MAX_NULL_VALUES} values, each at most 100 characters`,
      );
    } else read.nullValues = [...new Set((values as string[]).filter((v) => v !== ''))];
  }
}
