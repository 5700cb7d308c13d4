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

import { jsonString } from './json-fields.js';

export const COLUMN_TYPES = ['bigint', 'numeric', 'boolean', 'date', 'timestamptz', 'text', 'jsonb'] as const;
export type ColumnType = (typeof COLUMN_TYPES)[number];

/**
 * How a column's text is read into its type, when not as PostgreSQL reads it: a decimal comma
 * and thousands separators, a currency, a day-first date... Kept with the loader's state and
 * used by the cast at publish. (Skeleton: refined with the locale-aware inference.)
 */
export interface Reading {
  [property: string]: unknown;
}

/** A declared column: its type, and how to read it (`{"type": "numeric", "decimal": ","}`). */
export interface ColumnSpec {
  type: ColumnType;
  decimal?: ',' | '.';
  /** A date or time's layout, e.g. `DD.MM.YYYY` or `MM/DD/YYYY HH:mm`. */
  format?: string;
  /** Currency symbols or codes before or after the number are allowed. */
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

export function isBoolean(s: string): boolean {
  return s.length <= 5 && /^(?:true|false)$/i.test(s);
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

/**
 * A column's type over a whole input: fed every value, it keeps the narrowest type holding
 * them all. Values are mostly of the type already found, so that is tested first.
 */
export class TypeTally {
  type: ColumnType | null;

  constructor(type: ColumnType | null = null) {
    this.type = type;
  }

  /**
   * A value written as text ('' is missing). A column whose every value is a JSON object or
   * array is jsonb; such a value among others makes the column text.
   */
  text(s: string): void {
    const type = this.type;
    if (type === 'text' || s === '') return;
    const c = s.charCodeAt(0);
    const nested = (c === 0x7b || c === 0x5b) && isJsonText(s);
    if (type === 'jsonb' || nested) {
      this.type = nested && (type === null || type === 'jsonb') ? 'jsonb' : 'text';
      return;
    }
    if (type !== null && textFits(s, type)) return;
    this.type = joinTypes(type, textType(s));
  }

  /** A JSON value's text as written (a number keeps every digit); null and "" are missing. */
  json(text: string): void {
    const type = this.type;
    if (type === 'jsonb') return;
    const c = text.charCodeAt(0);
    if (c === 0x22) {
      // A JSON string is text unless it is a date or a time: "123" stays the string it was sent as.
      if (type === 'text' || text.length === 2) return;
      const s = jsonString(text);
      this.type = joinTypes(type, isDate(s) ? 'date' : isTimestamp(s) ? 'timestamptz' : 'text');
    } else if (c === 0x7b || c === 0x5b) this.type = 'jsonb';
    else if (c === 0x74 || c === 0x66) this.type = joinTypes(type, 'boolean');
    else if (c !== 0x6e) this.type = joinTypes(type, isBigint(text) ? 'bigint' : 'numeric');
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
