/**
 * Column types of a dataset, and the inference of a column's type from every one of its values
 * (never a sample): the narrowest type that holds them all. Tests are on the text as written,
 * without building numbers or dates, since they run for every value of every row.
 *
 *   bigint       an integer in PostgreSQL's bigint range, without leading zeros ("007" is text:
 *                codes and zip codes keep their zeros)
 *   numeric      a decimal number, kept exactly (PostgreSQL's numeric: no rounding through a double)
 *   boolean      true or false, in any case
 *   date         YYYY-MM-DD, a real date in years 1–9999
 *   timestamptz  an ISO 8601 date and time (T or a space between), to the minute or finer, with
 *                Z or an offset; without one it is read as UTC. Its time in UTC (to the
 *                microsecond PostgreSQL keeps) must be in years 1–9999 too, which ISO 8601 can
 *                write: `9999-12-31T23:59:59-15:00` (year 10000 in UTC) is not a time
 *   text         anything else
 *   jsonb        a nested JSON value (object or array), from JSON input or a column declared so
 *
 * Two types join to the narrowest that holds both: bigint and numeric → numeric, date and
 * timestamptz → timestamptz, anything and jsonb → jsonb (JSON input; in a CSV a column is jsonb only
 * when every value is a JSON object or array), any other pair → text.
 * A missing value (an empty CSV cell, a JSON null or absent key) has no type and joins to the other.
 */

import type { ColumnType } from '../core/job.js';
import { jsonString } from './json-fields.js';
import {
  ALL_STYLES,
  BOTH_ORDERS,
  COMMA,
  COMMA_STYLES,
  DMY,
  isBooleanWord,
  MDY,
  NUMBER_STYLES,
  POINT,
  POINT_STYLES,
  readDate,
  readNumber,
  startsNumeric,
  styleExample,
  type DateForm,
  type NumberForm,
} from './value-forms.js';

export { COLUMN_TYPES, type ColumnType } from '../core/job.js';

/**
 * The type a column of PostgreSQL's type (as format_type names it) is loaded as, from a query's
 * result (a derived dataset): its own where Intake has it, else text (its value's text).
 */
export function loadedType(postgresType: string): ColumnType {
  if (postgresType === 'smallint' || postgresType === 'integer' || postgresType === 'bigint') return 'bigint';
  if (postgresType === 'numeric' || postgresType === 'real' || postgresType === 'double precision') return 'numeric';
  if (postgresType === 'boolean' || postgresType === 'date' || postgresType === 'jsonb') return postgresType;
  if (postgresType === 'json') return 'jsonb';
  if (postgresType.startsWith('timestamp')) return 'timestamptz';
  return 'text';
}

/**
 * How a column's text is read into its type when not as PostgreSQL reads it, decided over the
 * whole column (kept with the loader's state, used by the cast at publish). Absent: as PostgreSQL
 * reads it.
 */
export interface Reading {
  /** Numbers: written with a decimal comma. */
  decimal?: ',';
  /** Numbers: the thousands separator (`'` stands for ' and ’, ` ` for any space). */
  group?: string;
  /** Numbers: the currency symbol or code written with them (kept here, not in the value). */
  currency?: string;
  /** Numbers: written with `%` (the number is kept as written: `12,5%` is 12.5). */
  percent?: true;
  /** Dates: the order of the day and the month of a date written with its year last. */
  order?: 'DMY' | 'MDY';
  /** Dates: written otherwise than ISO 8601 (`31.12.2025`, `2025/12/31`, `5 Jan 2025`). */
  rewrite?: true;
  /** Values read as NULL (NA, N/A, -...), as written in the column. */
  nulls?: string[];
}

/** A declared column: its type, and how to read it (`{"type": "numeric", "decimal": ","}`). */
export interface ColumnSpec {
  type: ColumnType;
  decimal?: ',' | '.';
  /** A date or time's layout, e.g. `DD.MM.YYYY` or `MM/DD/YYYY HH:mm` (column-spec.ts). */
  format?: string;
  /** Whether currency symbols or codes may be written with the numbers (by default they may). */
  currency?: boolean;
}

/** The narrowest type holding values of both (null: no value seen yet). */
export function joinTypes(a: ColumnType | null, b: ColumnType | null): ColumnType | null {
  if (a === b || b === null) return a;
  if (a === null) return b;
  if (a === 'jsonb' || b === 'jsonb') return 'jsonb';
  if ((a === 'bigint' && b === 'numeric') || (a === 'numeric' && b === 'bigint')) return 'numeric';
  if ((a === 'date' && b === 'timestamptz') || (a === 'timestamptz' && b === 'date')) return 'timestamptz';
  return 'text';
}

const ZERO = 48;
const NINE = 57;
const isDigit = (c: number) => c >= ZERO && c <= NINE;
const BIGINT_MAX = '9223372036854775807';
const BIGINT_MIN_ABS = '9223372036854775808';
// numeric's own limits are far wider (131,072 digits before the point); these keep a value's
// text (and the cast of a million of them) within reason: past them a value is text.
const MAX_NUMERIC_DIGITS = 1000;
const MAX_EXPONENT = 1000;

/** An integer within bigint's range, written without leading zeros or a fraction. */
export function isBigint(s: string): boolean {
  let i = 0;
  const negative = s.charCodeAt(0) === 45;
  if (negative || s.charCodeAt(0) === 43) i = 1;
  const digits = s.length - i;
  if (digits < 1 || digits > 19) return false;
  if (digits > 1 && s.charCodeAt(i) === ZERO) return false;
  for (let j = i; j < s.length; j++) if (!isDigit(s.charCodeAt(j))) return false;
  if (digits < 19) return true;
  const body = s.slice(i);
  return body <= (negative ? BIGINT_MIN_ABS : BIGINT_MAX); // same length: compares as numbers
}

/** A decimal number (with a point, an exponent, or both), or an integer beyond bigint's range. */
export function isNumeric(s: string): boolean {
  let i = 0;
  const n = s.length;
  if (s.charCodeAt(0) === 45 || s.charCodeAt(0) === 43) i = 1;
  const intStart = i;
  while (i < n && isDigit(s.charCodeAt(i))) i++;
  const intDigits = i - intStart;
  if (intDigits > 1 && s.charCodeAt(intStart) === ZERO) return false; // "007.5": leading zeros are kept as text
  let fracDigits = 0;
  if (i < n && s.charCodeAt(i) === 46) {
    i++;
    const fracStart = i;
    while (i < n && isDigit(s.charCodeAt(i))) i++;
    fracDigits = i - fracStart;
  }
  if (intDigits + fracDigits === 0 || intDigits + fracDigits > MAX_NUMERIC_DIGITS) return false;
  if (i < n && (s.charCodeAt(i) === 101 || s.charCodeAt(i) === 69)) {
    i++;
    if (i < n && (s.charCodeAt(i) === 45 || s.charCodeAt(i) === 43)) i++;
    const expStart = i;
    while (i < n && isDigit(s.charCodeAt(i))) i++;
    if (i === expStart || i - expStart > 4 || Number(s.slice(expStart, i)) > MAX_EXPONENT) return false;
  }
  return i === n;
}

// PostgreSQL's numeric (and jsonb's numbers): digits before the point, digits after it (the
// scale, counted as written: `0.0e-99999` is refused though it is zero), the exponent's bound.
const NUMERIC_MAX_WEIGHT_DIGITS = 131_072;
const NUMERIC_MAX_SCALE = 16_383;
const NUMERIC_MAX_EXPONENT = 2 ** 30 - 1;

/**
 * Whether a number's text (a JSON number, or a value isNumeric accepts) is one PostgreSQL's
 * numeric can hold, as numeric_in reads it; past it the cast fails ("value overflows numeric
 * format"). Most numbers are short and have no exponent: those always fit.
 */
export function fitsNumeric(s: string): boolean {
  if (s.length <= 1000 && s.indexOf('e') < 0 && s.indexOf('E') < 0) return true;
  const n = s.length;
  let i = s.charCodeAt(0) === 45 || s.charCodeAt(0) === 43 ? 1 : 0;
  const intStart = i;
  while (i < n && isDigit(s.charCodeAt(i))) i++;
  const intEnd = i;
  let fracStart = i;
  if (s.charCodeAt(i) === 46) fracStart = ++i;
  while (i < n && isDigit(s.charCodeAt(i))) i++;
  const fracDigits = i - fracStart;
  let exponent = 0;
  if (i < n) {
    const digits = s
      .slice(i + 1)
      .replace(/^[+-]/, '')
      .replace(/^0+/, '');
    if (digits.length > 10) return false;
    exponent = Number(digits) * (s.charCodeAt(i + 1) === 45 ? -1 : 1);
    if (Math.abs(exponent) >= NUMERIC_MAX_EXPONENT) return false;
  }
  if (fracDigits - exponent > NUMERIC_MAX_SCALE) return false;
  // The power of ten of the first significant digit: it sets the digits before the point.
  let first: number | undefined;
  for (let k = intStart; k < intEnd && first === undefined; k++) if (s.charCodeAt(k) !== ZERO) first = intEnd - k - 1;
  for (let k = fracStart; k < fracStart + fracDigits && first === undefined; k++) if (s.charCodeAt(k) !== ZERO) first = fracStart - k - 1;
  return first === undefined || first + exponent < NUMERIC_MAX_WEIGHT_DIGITS;
}

/** Whether every number in valid JSON text fits PostgreSQL's numeric (as jsonb stores them). */
export function jsonNumbersFit(json: string): boolean {
  // Without an exponent, and short, every number fits.
  if (json.length <= NUMERIC_MAX_SCALE && !/[0-9][eE]/.test(json)) return true;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c === 0x22) {
      for (i++; i < json.length && json.charCodeAt(i) !== 0x22; i++) if (json.charCodeAt(i) === 0x5c) i++;
    } else if (c === 45 || isDigit(c)) {
      const start = i;
      while (i + 1 < json.length && /[0-9.eE+-]/.test(json.charAt(i + 1))) i++;
      if (!fitsNumeric(json.slice(start, i + 1))) return false;
    }
  }
  return true;
}

/** true/false, yes/no, y/n, on/off, in any case (`1`/`0` are numbers). */
export function isBoolean(s: string): boolean {
  return isBooleanWord(s);
}

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function validDate(year: number, month: number, day: number): boolean {
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return day <= (month === 2 && leap ? 29 : DAYS[month - 1]!);
}

/** The two digits at i as a number, or -1. */
function twoDigits(s: string, i: number): number {
  const a = s.charCodeAt(i) - ZERO;
  const b = s.charCodeAt(i + 1) - ZERO;
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : -1;
}

/** The year of s if it starts with a real date YYYY-MM-DD, else 0. (Char by char: it runs for every value of a date column.) */
function dateYear(s: string): number {
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45) return 0;
  const century = twoDigits(s, 0);
  const year = twoDigits(s, 2);
  if (century < 0 || year < 0) return 0;
  return validDate(century * 100 + year, twoDigits(s, 5), twoDigits(s, 8)) ? century * 100 + year : 0;
}

const startsWithDate = (s: string) => dateYear(s) !== 0;

export function isDate(s: string): boolean {
  return s.length === 10 && startsWithDate(s);
}

/**
 * YYYY-MM-DD, T (or t, or a space), HH:MM, then optionally :SS and a fraction of 1 to 9 digits,
 * then optionally Z (or z) or an offset: ±HH, ±HHMM or ±HH:MM, under 16 hours.
 */
export function isTimestamp(s: string): boolean {
  const n = s.length;
  if (n < 16 || n > 35) return false;
  const year = dateYear(s);
  if (year === 0) return false;
  const t = s.charCodeAt(10);
  if (t !== 84 && t !== 116 && t !== 32) return false;
  const hour = twoDigits(s, 11);
  const minute = twoDigits(s, 14);
  if (hour < 0 || hour > 23 || s.charCodeAt(13) !== 58 || minute < 0 || minute > 59) return false;
  let i = 16;
  let second = 0;
  let roundsUp = false; // a fraction PostgreSQL rounds to the next second (.9999995 and up)
  if (s.charCodeAt(i) === 58) {
    second = twoDigits(s, i + 1);
    if (second < 0 || second > 59) return false;
    i += 3;
    if (s.charCodeAt(i) === 46) {
      const start = ++i;
      while (i < n && isDigit(s.charCodeAt(i))) i++;
      if (i === start || i - start > 9) return false;
      roundsUp = i - start > 6 && s.startsWith('999999', start) && s.charCodeAt(start + 6) >= 53;
    }
  }
  let offset = 0; // seconds east of UTC
  if (i < n) {
    const zone = s.charCodeAt(i);
    if (zone === 90 || zone === 122) {
      if (i + 1 !== n) return false;
    } else {
      if (zone !== 43 && zone !== 45) return false;
      const offsetHours = twoDigits(s, i + 1);
      if (offsetHours < 0 || offsetHours > 15) return false;
      i += 3;
      let offsetMinutes = 0;
      if (i !== n) {
        if (s.charCodeAt(i) === 58) i++;
        offsetMinutes = twoDigits(s, i);
        if (offsetMinutes < 0 || offsetMinutes > 59 || i + 2 !== n) return false;
      }
      offset = (zone === 43 ? 1 : -1) * (offsetHours * 3600 + offsetMinutes * 60);
    }
  }
  if (year !== 1 && year !== 9999) return true;
  // In UTC the time must stay in years 1–9999: only the first and the last day can leave them.
  const inDay = hour * 3600 + minute * 60 + second + (roundsUp ? 1 : 0) - offset;
  if (year === 1 && s.startsWith('01-01', 5)) return inDay >= 0;
  if (year === 9999 && s.startsWith('12-31', 5)) return inDay < 86_400;
  return true;
}

/** The narrowest type of a value written as text (a CSV cell, a JSON string); '' has none. */
export function textType(s: string): ColumnType | null {
  if (s === '') return null;
  const c = s.charCodeAt(0);
  if (isDigit(c) || c === 45 || c === 43 || c === 46) {
    if (isBigint(s)) return 'bigint';
    if (isNumeric(s)) return 'numeric';
    if (isDate(s)) return 'date';
    if (isTimestamp(s)) return 'timestamptz';
    return 'text';
  }
  return isBoolean(s) ? 'boolean' : 'text';
}

/** Whether a text value fits a column of `type` (as a cast at publish will read it). */
export function textFits(s: string, type: ColumnType): boolean {
  switch (type) {
    case 'text':
      return true;
    case 'bigint':
      return isBigint(s);
    case 'numeric':
      return isBigint(s) || isNumeric(s);
    case 'boolean':
      return isBoolean(s);
    case 'date':
      return isDate(s);
    case 'timestamptz':
      return isDate(s) || isTimestamp(s);
    case 'jsonb':
      return isJsonText(s);
  }
}

/** Whether s is JSON that jsonb can hold (its numbers within numeric's range). */
function isJsonText(s: string): boolean {
  try {
    JSON.parse(s);
  } catch {
    return false;
  }
  return jsonNumbersFit(s);
}

/** The default values that mean NULL in a column otherwise typed (besides an empty field). */
export const NULL_MARKERS: readonly string[] = ['NA', 'N/A', 'null', 'NULL', '-'];

/** What settles a column the values leave open: a locale's decimal separator and date order, the NULL markers. */
export interface TallyHints {
  decimal?: '.' | ',';
  order?: 'DMY' | 'MDY';
  /** Whether the order came from date_order (else from the locale), for the evidence. */
  orderGiven?: boolean;
  nulls?: ReadonlySet<string>;
}

type Family = 'number' | 'boolean' | 'date' | 'jsonb' | 'text';

/**
 * What a column's values have shown so far, kept as JSON with the loader's state (a resumed run
 * goes on from it). A number column keeps the styles every value fits; a date column the orders
 * of day and month.
 */
export interface TallyState {
  family: Family | null;
  /** Number styles (value-forms.ts) every number so far fits. */
  styles: number;
  /** Decimal bits under which some value is not a bigint. */
  wide: number;
  exponent: boolean;
  grouped: boolean;
  currency?: string;
  /** Whether the numbers are written with % ('all') or without ('none'). */
  percent?: 'all' | 'none';
  /** Orders of day and month every year-last date so far reads with. */
  orders: number;
  ordered: boolean;
  time: boolean;
  rewrite: boolean;
  /** Booleans seen: 1 y, 2 n (single letters), 4 a word (true, no, on...). */
  booleans?: number;
  /** NULL markers seen. */
  nulls: string[];
  /** Why the column is what it is, by topic: its first occurrence. */
  evidence: Record<string, string>;
  /** The first value that reads with either decimal, or either order (for the evidence). */
  ambiguous?: string;
}

type Form =
  NumberForm | DateForm | { kind: 'boolean'; bits: number } | { kind: 'jsonb' } | { kind: 'text' } | { kind: 'null'; marker: string };

const TEXT_FORM = { kind: 'text' } as const;
/** A boolean's bits (TallyState.booleans): a single letter is a boolean only with its opposite in the column. */
const booleanForm = (s: string) => ({ kind: 'boolean' as const, bits: s.length > 1 ? 4 : s === 'y' || s === 'Y' ? 1 : 2 });
const JSON_FORM = { kind: 'jsonb' } as const;
const INTEGER: NumberForm = { kind: 'number', styles: ALL_STYLES, wide: 0, exponent: false, grouped: false, percent: false };
const ISO_DATE: DateForm = { kind: 'date', orders: BOTH_ORDERS, ordered: false, time: false, rewritten: false };
const ISO_TIME: DateForm = { ...ISO_DATE, time: true };
const MAX_NULLS = 16;

const hasExponent = (s: string) => s.indexOf('e') >= 0 || s.indexOf('E') >= 0;
const show = (s: string) => JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);
const at = (line: number) => (line > 0 ? ` on line ${line}` : '');

/** The value without the spaces around it (as PostgreSQL's casts skip them). */
function trimSpaces(s: string): string {
  if (s.charCodeAt(0) !== 32 && s.charCodeAt(s.length - 1) !== 32) return s;
  let i = 0;
  let j = s.length;
  while (i < j && s.charCodeAt(i) === 32) i++;
  while (j > i && s.charCodeAt(j - 1) === 32) j--;
  return s.slice(i, j);
}

const FAMILY_OF: Record<ColumnType, Family> = {
  bigint: 'number',
  numeric: 'number',
  boolean: 'boolean',
  date: 'date',
  timestamptz: 'date',
  text: 'text',
  jsonb: 'jsonb',
};

/** A fresh state, or one for a type seen by an earlier version of the loader (plain values only). */
function initialState(seen: ColumnType | null): TallyState {
  const state: TallyState = {
    family: seen === null ? null : FAMILY_OF[seen],
    styles: seen === 'numeric' ? POINT_STYLES : ALL_STYLES,
    wide: seen === 'numeric' ? POINT : 0,
    exponent: false,
    grouped: false,
    orders: BOTH_ORDERS,
    ordered: false,
    time: seen === 'timestamptz',
    rewrite: false,
    nulls: [],
    evidence: {},
  };
  if (state.family === 'number') state.percent = 'none';
  return state;
}

/** The styles whose decimal makes a value of `wide` decimal bits a fraction. */
const wideStyles = (wide: number) => (wide & POINT ? POINT_STYLES : 0) | (wide & COMMA ? COMMA_STYLES : 0);

/** How a date layout of a declared format narrows the orders (value-forms.ts); see column-spec.ts. */
export interface DateLayout {
  /** 'named': the month is a name, so no year-last numeric date fits. */
  order: 'DMY' | 'MDY' | 'YMD' | 'named';
  time: boolean;
}

/**
 * A column's type over a whole input: fed every value, it keeps what they all allow (never a
 * sample). Values are mostly of the form already found, plain ASCII numbers and ISO dates:
 * those are tested first, and change nothing. A column with a target type (declared, or the
 * dataset's) has each value checked against what it still allows (`check`), then counted
 * (`commit`); its styles narrow as rows come.
 */
export class TypeTally {
  private readonly s: TallyState;
  private jsonType: ColumnType | null;
  private json_ = false;
  private pending: { form: Form; raw: string } | null = null;
  private readonly hints: TallyHints;
  private readonly nulls: ReadonlySet<string>;

  constructor(
    seen: ColumnType | null = null,
    state?: TallyState,
    hints: TallyHints = {},
    private readonly target?: ColumnSpec & { layout?: DateLayout },
  ) {
    this.jsonType = seen;
    this.hints = hints;
    this.nulls = hints.nulls ?? new Set(NULL_MARKERS);
    this.s = state !== undefined ? structuredClone(state) : initialState(target ? null : seen);
    if (state === undefined && target) this.narrowTo(target);
  }

  /** A target's declared reading: its decimal separator, its date layout. */
  private narrowTo(target: ColumnSpec & { layout?: DateLayout }): void {
    if (target.decimal === ',') this.s.styles = COMMA_STYLES;
    if (target.decimal === '.') this.s.styles = POINT_STYLES;
    const order = target.layout?.order;
    if (order !== undefined) this.s.orders = order === 'DMY' ? DMY : order === 'MDY' ? MDY : 0;
    this.s.family = FAMILY_OF[target.type];
    if (this.s.family === 'number') this.s.percent = undefined;
  }

  /** The column's type so far (JSON input: the JSON types' join; text: as resolved over every value). */
  get type(): ColumnType | null {
    return this.json_ ? this.jsonType : this.resolve().type;
  }

  /** The state to keep (a copy). */
  state(): TallyState {
    return structuredClone(this.s);
  }

  /** A value written as text ('' is missing); `line` for the evidence. */
  text(raw: string, line = 0): void {
    const st = this.s;
    const family = st.family;
    if (family === 'text' || raw === '') return;
    // The common case: a value of the form the column has already, changing nothing.
    if (family === 'number' && st.percent === 'none') {
      if (isBigint(raw)) return;
      if ((st.styles & COMMA_STYLES) === 0 && st.wide & POINT && isNumeric(raw) && !hasExponent(raw)) return;
    } else if (family === 'date') {
      if (isDate(raw) || (st.time && isTimestamp(raw))) return;
    } else if (family === 'boolean' && ((st.booleans ?? 4) & 4 || st.booleans === 3) && isBoolean(raw)) return;
    this.add(this.classify(raw), raw, line);
  }

  /**
   * Whether a value fits the target type with what the column still allows: null when it does
   * (then `commit` counts it), else why not, after the column's name (`is bigint and cannot hold "x"`).
   */
  check(raw: string): string | null {
    const target = this.target!;
    this.pending = null;
    const type = target.type;
    if (type === 'text') return null;
    if (type === 'jsonb') return isJsonText(raw) ? null : `is jsonb and cannot hold ${show(raw)}`;
    if (this.fitsAsIs(raw, type)) return null;
    const form = this.classify(raw);
    const problem = this.misfit(form, raw, type);
    if (problem !== null) return problem;
    // In a bigint column, a value narrows the styles to those that read it as an integer
    // (1,234 is 1234, never 1.234): whichever style is chosen at the end, the cast holds.
    this.pending = {
      form: type === 'bigint' && form.kind === 'number' ? { ...form, styles: form.styles & ~wideStyles(form.wide), wide: 0 } : form,
      raw,
    };
    return null;
  }

  /** The common case of a target: a plain ASCII number, an ISO date, changing nothing the column allows. */
  private fitsAsIs(raw: string, type: ColumnType): boolean {
    const st = this.s;
    switch (type) {
      case 'bigint':
        return isBigint(raw);
      case 'numeric':
        return isBigint(raw) || ((st.styles & COMMA_STYLES) === 0 && (st.wide & POINT) !== 0 && isNumeric(raw) && !hasExponent(raw));
      case 'date':
        return isDate(raw);
      case 'timestamptz':
        return this.target?.layout === undefined && (isDate(raw) || isTimestamp(raw));
      case 'boolean':
        return isBoolean(raw);
      default:
        return false;
    }
  }

  /** Counts the value `check` last let in. */
  commit(line: number): void {
    if (this.pending !== null) this.add(this.pending.form, this.pending.raw, line);
    this.pending = null;
  }

  private misfit(form: Form, raw: string, type: ColumnType): string | null {
    const st = this.s;
    const wrong = `is ${type} and cannot hold ${show(raw)}`;
    if (form.kind === 'null') return null;
    if (type === 'bigint' || type === 'numeric') {
      if (form.kind !== 'number') return wrong;
      const fitting = form.styles & st.styles;
      if (fitting === 0) return `reads numbers ${styleExample(st.styles)} and cannot hold ${show(raw)}`;
      if (type === 'bigint' && (fitting & ~wideStyles(form.wide)) === 0) return wrong;
      if (form.currency !== undefined && this.target?.currency === false)
        return `is ${type} without a currency and cannot hold ${show(raw)}`;
      if (form.currency !== undefined && st.currency !== undefined && form.currency !== st.currency)
        return `reads amounts in ${st.currency} and cannot hold ${show(raw)}`;
      // An exponent is read by PostgreSQL itself, which a column of separators or currencies is not.
      const styled = (s: { grouped: boolean; currency?: string }) => s.grouped || s.currency !== undefined;
      if (
        (form.exponent && (styled(st) || st.percent === 'all' || (fitting & POINT_STYLES) === 0)) ||
        (st.exponent && (styled(form) || form.percent))
      )
        return `reads numbers ${st.exponent ? 'with exponents' : styleExample(st.styles)} and cannot hold ${show(raw)}`;
      return null;
    }
    if (type === 'boolean') return form.kind === 'boolean' ? null : wrong;
    if (form.kind !== 'date' || (type === 'date' && form.time)) return wrong;
    const layout = this.target?.layout;
    if (layout?.time === false && form.time) return wrong;
    if (form.ordered && (form.orders & st.orders) === 0) {
      const order = this.target?.format ?? (st.orders === DMY ? 'DD/MM/YYYY' : 'MM/DD/YYYY');
      return `reads dates as ${order} and cannot hold ${show(raw)}`;
    }
    return null;
  }

  /** What one value is (trimmed of spaces): a NULL marker, a number of some styles, a date... */
  private classify(raw: string): Form {
    const s = trimSpaces(raw);
    if (this.nulls.has(s)) return { kind: 'null', marker: s };
    if (s === '') return TEXT_FORM;
    const c = s.charCodeAt(0);
    if (c === 0x7b || c === 0x5b) return isJsonText(raw) ? JSON_FORM : TEXT_FORM;
    if (startsNumeric(c)) {
      if (isBigint(s)) return INTEGER;
      if (isNumeric(s)) {
        if (hasExponent(s)) return { ...INTEGER, styles: POINT_STYLES, wide: POINT | COMMA, exponent: true };
        return readNumber(s) ?? { ...INTEGER, styles: POINT_STYLES, wide: POINT }; // .5, 1.
      }
      if (isDate(s)) return ISO_DATE;
      if (isTimestamp(s)) return ISO_TIME;
    } else if (isBoolean(s)) return booleanForm(s);
    return readNumber(s) ?? readDate(s) ?? TEXT_FORM;
  }

  private note(topic: string, text: string): void {
    if (!(topic in this.s.evidence)) this.s.evidence[topic] = text;
  }

  private toText(why: string): void {
    this.s.family = 'text';
    this.s.evidence = { text: why };
  }

  private add(form: Form, raw: string, line: number): void {
    const st = this.s;
    if (form.kind === 'null') {
      if (!st.nulls.includes(form.marker) && st.nulls.length < MAX_NULLS) {
        st.nulls.push(form.marker);
        this.note(`null ${form.marker}`, `NULL marker ${show(form.marker)}${at(line)}`);
      }
      return;
    }
    if (form.kind === 'text') return this.toText(`text: ${show(raw)}${at(line)}`);
    if (st.family !== null && st.family !== form.kind) {
      return this.toText(
        `text: ${show(raw)}${at(line)} is ${form.kind === 'jsonb' ? 'JSON' : `a ${form.kind}`}, the values before it ${st.family === 'jsonb' ? 'JSON' : `${st.family}s`}`,
      );
    }
    st.family = form.kind;
    if (form.kind === 'boolean') st.booleans = (st.booleans ?? 0) | form.bits;
    if (form.kind === 'number') this.addNumber(form, raw, line);
    else if (form.kind === 'date') this.addDate(form, raw, line);
  }

  private addNumber(form: NumberForm, raw: string, line: number): void {
    const st = this.s;
    const styles = st.styles & form.styles;
    if (styles === 0) {
      return this.toText(`text: ${show(raw)}${at(line)} does not fit the numbers before it (written ${styleExample(st.styles)})`);
    }
    const percent = form.percent ? 'all' : 'none';
    if (st.percent !== undefined && st.percent !== percent && !this.target) {
      return this.toText(
        `text: ${show(raw)}${at(line)} ${form.percent ? 'is a percentage and the numbers before it are not' : 'is not a percentage as the numbers before it'}`,
      );
    }
    if (form.currency !== undefined && st.currency !== undefined && form.currency !== st.currency) {
      return this.toText(`text: ${show(raw)}${at(line)} is in ${form.currency}, the amounts before it in ${st.currency}`);
    }
    if (
      (form.exponent && (st.grouped || st.currency !== undefined || st.percent === 'all')) ||
      (st.exponent && (form.grouped || form.currency !== undefined || form.percent))
    ) {
      return this.toText(`text: ${show(raw)}${at(line)} mixes exponents with separators or currencies`);
    }
    if (form.grouped && (styles & COMMA_STYLES) === styles) this.note('decimal', `decimal comma: ${show(raw)}${at(line)}`);
    if (form.grouped && (styles & POINT_STYLES) === styles) this.note('decimal', `decimal point: ${show(raw)}${at(line)}`);
    if (
      (form.styles & COMMA_STYLES) !== 0 &&
      (form.styles & POINT_STYLES) !== 0 &&
      (form.grouped || /\./.test(raw)) &&
      st.ambiguous === undefined
    )
      st.ambiguous = `${show(raw)}${at(line)}`;
    if (form.currency !== undefined) this.note('currency', `currency ${form.currency}: ${show(raw)}${at(line)}`);
    if (form.percent) this.note('percent', `percent: ${show(raw)}${at(line)}`);
    st.styles = styles;
    st.wide |= form.wide;
    st.exponent ||= form.exponent;
    st.grouped ||= form.grouped;
    if (form.currency !== undefined) st.currency = form.currency;
    st.percent = st.percent === 'all' || form.percent ? 'all' : 'none';
  }

  private addDate(form: DateForm, raw: string, line: number): void {
    const st = this.s;
    st.time ||= form.time;
    st.rewrite ||= form.rewritten;
    if (!form.ordered) return;
    const orders = st.orders & form.orders;
    if (orders === 0) {
      const was = st.orders === DMY ? 'day-first' : 'month-first';
      return this.toText(`text: ${show(raw)}${at(line)} cannot be read as ${was} as the dates before it`);
    }
    st.ordered = true;
    if (form.orders === DMY) {
      this.note(
        'order',
        raw.includes('.') ? `day first: dotted date ${show(raw)}${at(line)}` : `day first: day > 12 in ${show(raw)}${at(line)}`,
      );
    } else if (form.orders === MDY) this.note('order', `month first: day > 12 in ${show(raw)}${at(line)}`);
    else st.ambiguous ??= `${show(raw)}${at(line)}`;
    st.orders = orders;
  }

  /** The column's type, how its text is read, and why, over every value so far (and the hints). */
  resolve(): { type: ColumnType | null; reading?: Reading; evidence: string[] } {
    const st = this.s;
    const target = this.target?.type;
    const evidence = Object.values(st.evidence);
    const nulls = st.nulls.length > 0 ? { nulls: [...st.nulls] } : {};
    const typed = (type: ColumnType, reading: Reading = {}) => {
      const full = type === 'text' || type === 'jsonb' ? {} : { ...reading, ...nulls };
      return { type, ...(Object.keys(full).length > 0 && { reading: full }), evidence };
    };
    if (target !== undefined && (target === 'text' || target === 'jsonb' || st.family !== FAMILY_OF[target])) return typed(target);
    switch (st.family) {
      case null:
        return { type: null, evidence };
      case 'text':
      case 'jsonb':
        return { type: st.family, evidence };
      case 'boolean':
        if (target === undefined && st.booleans !== undefined && (st.booleans & 4) === 0 && st.booleans !== 3)
          return {
            type: 'text',
            evidence: [...evidence, `text: only ${st.booleans === 1 ? '"y"' : '"n"'}: a single letter is a boolean only with its opposite`],
          };
        return typed('boolean');
      case 'number': {
        const point = (st.styles & POINT_STYLES) !== 0;
        const comma = (st.styles & COMMA_STYLES) !== 0;
        let decimal: '.' | ',' = point ? '.' : ',';
        if (point && comma) {
          decimal = this.hints.decimal ?? '.';
          if (st.ambiguous !== undefined)
            evidence.push(
              `${st.ambiguous} reads with a decimal point or comma: read with a decimal ${decimal === '.' ? 'point' : 'comma'}${this.hints.decimal ? ' (the locale)' : ''}`,
            );
        }
        const chosen = st.styles & (decimal === '.' ? POINT_STYLES : COMMA_STYLES);
        if (st.exponent && (decimal === ',' || st.grouped))
          return { type: 'text', evidence: [...evidence, 'text: exponents with a decimal comma or separators'] };
        const wide = st.exponent || (st.wide & (decimal === '.' ? POINT : COMMA)) !== 0;
        const single = NUMBER_STYLES.filter((_, k) => chosen & (1 << k));
        const reading: Reading = {
          ...(decimal === ',' && { decimal }),
          ...(st.grouped && single.length === 1 && single[0]!.group !== decimal && { group: single[0]!.group }),
          ...(st.currency !== undefined && { currency: st.currency }),
          ...(st.percent === 'all' && { percent: true }),
        };
        if (st.grouped && decimal === '.' && reading.group === undefined) reading.group = ','; // (the cast takes any out)
        return typed(target ?? (wide ? 'numeric' : 'bigint'), reading);
      }
      case 'date': {
        let order: 'DMY' | 'MDY' | undefined;
        if (st.ordered) {
          if (st.orders === DMY) order = 'DMY';
          else if (st.orders === MDY) order = 'MDY';
          else if (this.hints.order !== undefined) {
            order = this.hints.order;
            evidence.push(
              `no day > 12 (e.g. ${st.ambiguous ?? 'every date'}): read ${order} as ${this.hints.orderGiven ? 'date_order' : 'the locale'} says`,
            );
          } else if (target !== undefined) {
            order = 'DMY';
            evidence.push(`no day > 12 (e.g. ${st.ambiguous ?? 'every date'}): read day first; give date_order=MDY to read month first`);
          } else {
            return {
              type: 'text',
              evidence: [
                ...evidence,
                `text: the order of day and month is never settled: no day > 12 (e.g. ${st.ambiguous ?? 'every date'}); give date_order=DMY or MDY`,
              ],
            };
          }
        }
        return typed(target ?? (st.time ? 'timestamptz' : 'date'), { ...(order && { order }), ...(st.rewrite && { rewrite: true }) });
      }
    }
  }

  /** A JSON value's text as written (a number keeps every digit); null and "" are missing. */
  json(text: string): void {
    this.json_ = true;
    const type = this.jsonType;
    if (type === 'jsonb') return;
    const c = text.charCodeAt(0);
    if (c === 0x22) {
      // A JSON string is text unless it is a date or a time: "123" stays the string it was sent as.
      if (type === 'text' || text.length === 2) return;
      const s = jsonString(text);
      this.jsonType = joinTypes(type, isDate(s) ? 'date' : isTimestamp(s) ? 'timestamptz' : 'text');
    } else if (c === 0x7b || c === 0x5b) this.jsonType = 'jsonb';
    else if (c === 0x74 || c === 0x66) this.jsonType = joinTypes(type, 'boolean');
    else if (c !== 0x6e) this.jsonType = joinTypes(type, isBigint(text) ? 'bigint' : 'numeric');
  }
}

/**
 * Whether a JSON value's text fits a column of `type` (as castFromJson will read it): numbers
 * into bigint (integers) or numeric (within its range), true/false into boolean, ISO strings
 * into date and timestamptz, "" into any of these as NULL; anything into text, and into jsonb
 * anything whose numbers numeric can hold.
 */
export function jsonFits(text: string, type: ColumnType): boolean {
  if (type === 'text') return true;
  if (type === 'jsonb') return jsonStorable(text);
  const c = text.charCodeAt(0);
  if (c === 0x6e) return true; // null
  if (c === 0x22) {
    if (text.length === 2) return true; // ""
    if (type !== 'date' && type !== 'timestamptz') return false;
    const s = jsonString(text);
    return type === 'date' ? isDate(s) : isDate(s) || isTimestamp(s);
  }
  if (c === 0x74 || c === 0x66) return type === 'boolean';
  if (c === 0x7b || c === 0x5b) return false;
  return type === 'numeric' ? fitsNumeric(text) : type === 'bigint' && isBigint(text);
}

/**
 * Whether a JSON value's text can be stored in a column whose type is inferred (whatever it
 * turns out to be: numeric, jsonb...): its numbers within numeric's range.
 */
export function jsonStorable(text: string): boolean {
  const c = text.charCodeAt(0);
  if (c === 0x7b || c === 0x5b) return jsonNumbersFit(text);
  return c === 0x22 || c === 0x74 || c === 0x66 || c === 0x6e || fitsNumeric(text);
}
