/**
 * One record of the input, in order, with the 1-based line where it starts: either its data,
 * or a row-level error (wrong number of fields, invalid JSON, not an object) with a message
 * and a short excerpt. A row error leaves the input readable: parsing goes on after it.
 * Errors that make the rest unreadable (invalid UTF-8, truncation) are thrown instead.
 */
export type ParsedRecord =
  // raw: the record's JSON text as written in the input (JSON formats), stored as it is;
  // columns and values: a CSV (or sheet) record's header names and its fields, both in the
  // file's order, the one source of its columns (`data` is a convenience: an object lists
  // integer-like keys first); text: the start of its line as written, for excerpts.
  | {
      data: Record<string, unknown>;
      line: number;
      raw?: string;
      columns?: readonly string[];
      values?: readonly string[];
      text?: string;
      emptyQuoted?: readonly number[]; // a CSV record's fields written `""` (0-based), absent when none
      error?: undefined;
    }
  // columns: the header of a CSV (or sheet) row error, so a header is known even when its first row is bad.
  | { data?: undefined; line: number; raw?: undefined; columns?: readonly string[]; values?: undefined; error: string; excerpt: string };

const EXCERPT_LENGTH = 120;

/** A row-level error, as parsers yield it. */
export type RowProblem = Extract<ParsedRecord, { error: string }>;

/**
 * A row error with an excerpt of its text: on one line, its whitespace run together, or with
 * `asWritten` (a CSV line, whose delimiter may be a tab) only its line breaks made spaces.
 */
export function rowError(line: number, error: string, raw: string, asWritten = false): RowProblem {
  const flat = (asWritten ? raw.replace(/\r\n?|\n/g, ' ') : raw.replace(/\s+/g, ' ')).trim();
  let cut = EXCERPT_LENGTH - 1;
  if (/[\ud800-\udbff]/.test(flat.charAt(cut - 1))) cut--; // not between the halves of a pair
  const excerpt = flat.length > EXCERPT_LENGTH ? `${flat.slice(0, cut)}…` : flat;
  // Cutting text (or a V8 message quoting it) can split a surrogate pair, which PostgreSQL
  // cannot store: a stored error must never fail the batch it reports on.
  return { line, error: error.toWellFormed(), excerpt: excerpt.toWellFormed() };
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * Whether JSON text contains the escape \u0000 (which PostgreSQL's jsonb cannot store). An
 * escaped backslash followed by "u0000" (`"\\u0000"`, the six characters \u0000) is not one:
 * the escape must be preceded by an even number of backslashes.
 */
export function hasNulEscape(json: string): boolean {
  if (!json.includes('\\u0000')) return false;
  return /(?:^|[^\\])(?:\\\\)*\\u0000/.test(json);
}

/**
 * Whether JSON text nests arrays and objects deeper than `max`. The text must be valid JSON:
 * brackets inside strings are skipped. Most records hold fewer brackets than `max` in all,
 * which a quick count shows without the scan.
 */
export function nestedDeeperThan(json: string, max: number): boolean {
  let opening = 0;
  for (let i = json.indexOf('{'); i !== -1 && opening <= max; i = json.indexOf('{', i + 1)) opening++;
  for (let i = json.indexOf('['); i !== -1 && opening <= max; i = json.indexOf('[', i + 1)) opening++;
  if (opening <= max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}
