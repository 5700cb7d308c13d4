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
 *                Z or an offset; without one it is read as UTC
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

/** Whether s starts with a real date YYYY-MM-DD. (Char by char: it runs for every value of a date column.) */
function startsWithDate(s: string): boolean {
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45) return false;
  const century = twoDigits(s, 0);
  const year = twoDigits(s, 2);
  if (century < 0 || year < 0) return false;
  return validDate(century * 100 + year, twoDigits(s, 5), twoDigits(s, 8));
}

export function isDate(s: string): boolean {
  return s.length === 10 && startsWithDate(s);
}

/**
 * YYYY-MM-DD, T (or t, or a space), HH:MM, then optionally :SS and a fraction of 1 to 9 digits,
 * then optionally Z (or z) or an offset: ±HH, ±HHMM or ±HH:MM, under 16 hours.
 */
export function isTimestamp(s: string): boolean {
  const n = s.length;
  if (n < 16 || n > 35 || !startsWithDate(s)) return false;
  const t = s.charCodeAt(10);
  if (t !== 84 && t !== 116 && t !== 32) return false;
  const hour = twoDigits(s, 11);
  const minute = twoDigits(s, 14);
  if (hour < 0 || hour > 23 || s.charCodeAt(13) !== 58 || minute < 0 || minute > 59) return false;
  let i = 16;
  if (s.charCodeAt(i) === 58) {
    const second = twoDigits(s, i + 1);
    if (second < 0 || second > 59) return false;
    i += 3;
    if (s.charCodeAt(i) === 46) {
      const start = ++i;
      while (i < n && isDigit(s.charCodeAt(i))) i++;
      if (i === start || i - start > 9) return false;
    }
  }
  if (i === n) return true;
  const zone = s.charCodeAt(i);
  if (zone === 90 || zone === 122) return i + 1 === n;
  if (zone !== 43 && zone !== 45) return false;
  const offsetHours = twoDigits(s, i + 1);
  if (offsetHours < 0 || offsetHours > 15) return false;
  i += 3;
  if (i === n) return true;
  if (s.charCodeAt(i) === 58) i++;
  const offsetMinutes = twoDigits(s, i);
  return offsetMinutes >= 0 && offsetMinutes <= 59 && i + 2 === n;
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

function isJsonText(s: string): boolean {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
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
 * into bigint (integers) or numeric, true/false into boolean, ISO strings into date and
 * timestamptz, "" into any of these as NULL; anything into text and jsonb.
 */
export function jsonFits(text: string, type: ColumnType): boolean {
  if (type === 'text' || type === 'jsonb') return true;
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
  return type === 'numeric' || (type === 'bigint' && isBigint(text));
}
