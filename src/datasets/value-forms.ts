/**
 * The forms in which people write numbers, dates and booleans outside ISO and PostgreSQL's own
 * literals, read from one value's text: which number styles (decimal separator × thousands
 * separator) could have written it, which orders of day and month, with a currency or a percent.
 * A column's type is decided from what every one of its values allows (types.ts); these only
 * say what one value allows. Only the slow path comes here: plain ASCII numbers and ISO dates
 * are told apart in types.ts first.
 */

/**
 * The number styles, one bit each: a decimal separator and a thousands separator. Spaces of any
 * width (space, no-break space, narrow no-break space) are one group separator; `'` and `’`
 * (Swiss) another. A value without a group separator fits every style of its decimal.
 */
export const NUMBER_STYLES = [
  { decimal: '.', group: ',' },
  { decimal: '.', group: ' ' },
  { decimal: '.', group: "'" },
  { decimal: ',', group: '.' },
  { decimal: ',', group: ' ' },
  { decimal: ',', group: "'" },
] as const;
export const ALL_STYLES = 0b111111;
export const POINT_STYLES = 0b000111;
export const COMMA_STYLES = 0b111000;

/** Decimal bits: a value is a fraction (or beyond bigint) when read with a point, with a comma. */
export const POINT = 1;
export const COMMA = 2;

/** Orders of a date's day and month (a year-first date has one order: it is neutral). */
export const DMY = 1;
export const MDY = 2;
export const BOTH_ORDERS = DMY | MDY;

export interface NumberForm {
  kind: 'number';
  /** The styles that can have written it. */
  styles: number;
  /** Decimal bits (POINT, COMMA) under which it is not a bigint (a fraction, or too long). */
  wide: number;
  /** Written with an exponent (1e5): read with a point only, and never with a group or currency. */
  exponent: boolean;
  /** Written with a separator other than a point (a group, or a decimal comma). */
  grouped: boolean;
  currency?: string;
  percent: boolean;
}

export interface DateForm {
  kind: 'date';
  /** DMY, MDY or both: the orders that read it as a real date (BOTH_ORDERS when the year comes first or the month is named). */
  orders: number;
  /** Whether its day and month are numbers with the year last (their order matters). */
  ordered: boolean;
  time: boolean;
  /** Written otherwise than as ISO 8601 (the cast rewrites it). */
  rewritten: boolean;
}

const isDigitCode = (c: number) => c >= 48 && c <= 57;

// ISO 4217 codes of the currencies in use, written before or after a number (`EUR 5`, `5 CHF`).
const CURRENCY_CODES = new Set(
  (
    'AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF ' +
    'CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG ' +
    'HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA ' +
    'MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD ' +
    'RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH ' +
    'UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL'
  ).split(' '),
);

// A currency: a symbol, a symbol with its country's letters, or an ISO code (checked against
// the list). None holds a digit, a sign, a point or a comma: the cast drops all but those.
const CURRENCY = '[$€£¥₹₽₩₺₪₫฿₴₦₱¢]|US\\$|R\\$|A\\$|C\\$|kr|zł|Kč|Ft|[A-Z]{3}';
const GAP = '[ \\u00a0\\u202f]?';
const NUMBER_TEXT = new RegExp(`^([+-]?)(?:(${CURRENCY})${GAP})?([+-]?)(\\d(?:[\\d.,'’ \\u00a0\\u202f]*\\d)?)(?:${GAP}(${CURRENCY}|%))?$`);
const SEPARATOR = /[.,'’ \u00a0\u202f]/;

/** The group class of a separator: spaces are one, apostrophes another. */
function separatorClass(c: string): string {
  if (c === '\u00a0' || c === '\u202f') return ' ';
  if (c === '’') return "'";
  return c;
}

const BIGINT_DIGITS = 18; // past 18 digits, bigint's range is checked digit by digit
const MAX_DIGITS = 1000;
const BIGINT_MAX = '9223372036854775807';
const BIGINT_MIN_ABS = '9223372036854775808';

function beyondBigint(digits: string, negative: boolean): boolean {
  if (digits.length <= BIGINT_DIGITS) return false;
  if (digits.length > 19) return true;
  return digits > (negative ? BIGINT_MIN_ABS : BIGINT_MAX);
}

/**
 * A number written with separators, a currency or a percent (`8.493,25`, `1 234,5`, `$74.69`,
 * `16,18 €`, `-$5`, `CHF 1'234.50`, `12,5%`), trimmed; null when it is none of these. An
 * integer part with a leading zero (`007`, `00,5`) is an identifier, not a number.
 */
export function readNumber(s: string): NumberForm | null {
  const m = NUMBER_TEXT.exec(s);
  if (m === null) return null;
  const [, sign1, before, sign2, body, after] = m as unknown as [string, string, string | undefined, string, string, string | undefined];
  if (sign1 !== '' && sign2 !== '') return null;
  if (before !== undefined && after !== undefined) return null; // one currency, before or after
  for (const code of [before, after]) if (code !== undefined && /^[A-Z]{3}$/.test(code) && !CURRENCY_CODES.has(code)) return null;
  const percent = after === '%';
  const currency = before ?? (percent ? undefined : after);
  const runs: string[] = [];
  const seps: string[] = [];
  let start = 0;
  for (let i = 0; i < body.length; i++) {
    if (SEPARATOR.test(body.charAt(i))) {
      if (i === start) return null; // two separators in a row
      runs.push(body.slice(start, i));
      seps.push(separatorClass(body.charAt(i)));
      start = i + 1;
    }
  }
  runs.push(body.slice(start));
  let digitCount = 0;
  for (const run of runs) digitCount += run.length;
  if (digitCount > MAX_DIGITS) return null;
  let styles = 0;
  let wide = 0;
  const negative = (sign1 || sign2) === '-';
  NUMBER_STYLES.forEach((style, k) => {
    let decimalAt = -1;
    for (let i = 0; i < seps.length; i++) {
      const sep = seps[i]!;
      if (sep === style.decimal && decimalAt < 0) decimalAt = i;
      else if (sep !== style.group || decimalAt >= 0) return;
    }
    if (decimalAt >= 0 && decimalAt !== seps.length - 1) return;
    const intRuns = decimalAt >= 0 ? runs.slice(0, decimalAt + 1) : runs;
    const first = intRuns[0]!;
    if (intRuns.length > 1) {
      if (first.length > 3 || first.charCodeAt(0) === 48) return;
      for (let i = 1; i < intRuns.length; i++) if (intRuns[i]!.length !== 3) return;
    } else if (first.length > 1 && first.charCodeAt(0) === 48) return;
    styles |= 1 << k;
    if (decimalAt >= 0 || beyondBigint(intRuns.join(''), negative)) wide |= style.decimal === '.' ? POINT : COMMA;
  });
  if (styles === 0) return null;
  // A separator other than a point is a group or a decimal comma: the cast must take it out.
  const grouped = seps.some((sep) => sep !== '.');
  return { kind: 'number', styles, wide, exponent: false, grouped, ...(currency !== undefined && { currency }), percent };
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const MONTH_NAMES = [
  'january',
  'february',
  'march',
  'april',
  'may',
  'june',
  'july',
  'august',
  'september',
  'october',
  'november',
  'december',
];

/** An English month's number (1–12) from its full name or three-letter abbreviation, in any case; 0 for none. */
function monthNumber(name: string): number {
  const lower = name.toLowerCase();
  const i = lower.length === 3 ? MONTHS.indexOf(lower) : MONTH_NAMES.indexOf(lower);
  return i + 1;
}

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

export function realDate(year: number, month: number, day: number): boolean {
  if (year < 1 || year > 9999 || month < 1 || month > 12 || day < 1) return false;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return day <= (month === 2 && leap ? 29 : DAYS[month - 1]!);
}

// A time after a date: H:MM or HH:MM, then :SS and a fraction of up to 6 digits, then AM or PM
// (with or without a space, any case).
const TIME = String.raw`(?: +(\d{1,2}):(\d\d)(?::(\d\d)(?:\.\d{1,6})?)?(?: ?([AaPp][Mm]))?)?`;
const NUMERIC_DATE = new RegExp(String.raw`^(\d{1,4})([./-])(\d{1,2})\2(\d{1,4})${TIME}$`);
const DAY_MONTH_NAME = new RegExp(String.raw`^(\d{1,2})([ -])([A-Za-z]{3,9})\2(\d{4})${TIME}$`);
const MONTH_NAME_DAY = new RegExp(String.raw`^([A-Za-z]{3,9}) (\d{1,2}),? (\d{4})${TIME}$`);

/** Whether the time groups (hour, minute, second, AM/PM) of a match are a real time (or absent). */
function realTime(hour?: string, minute?: string, second?: string, half?: string): boolean {
  if (hour === undefined) return true;
  const h = Number(hour);
  if (Number(minute) > 59 || (second !== undefined && Number(second) > 59)) return false;
  return half === undefined ? h <= 23 : h >= 1 && h <= 12;
}

/**
 * A date (and time) written otherwise than ISO 8601, trimmed: `DD.MM.YYYY`, `DD/MM/YYYY`,
 * `MM/DD/YYYY`, `DD-MM-YYYY`, `YYYY/MM/DD`, `D Mon YYYY`, `D-Mon-YYYY`, `Mon D, YYYY` (English
 * month names, full or abbreviated, any case), each optionally with a time; null when it is none
 * of these, or not a real date in years 1–9999.
 */
export function readDate(s: string): DateForm | null {
  let m = NUMERIC_DATE.exec(s);
  if (m !== null) {
    const [, a, sep, b, c, hour, minute, second, half] = m as unknown as string[];
    if (!realTime(hour, minute, second, half)) return null;
    const time = hour !== undefined;
    if (a!.length === 4 && c!.length <= 2) {
      return realDate(Number(a), Number(b), Number(c))
        ? { kind: 'date', orders: BOTH_ORDERS, ordered: false, time, rewritten: true }
        : null;
    }
    if (a!.length > 2 || c!.length !== 4) return null;
    let orders = 0;
    if (realDate(Number(c), Number(b), Number(a))) orders |= DMY;
    // A dotted date is day-first wherever it is written (31.12.2025: Germany, Switzerland,
    // Russia...): no country writes the month first with dots.
    if (sep !== '.' && realDate(Number(c), Number(a), Number(b))) orders |= MDY;
    return orders === 0 ? null : { kind: 'date', orders, ordered: true, time, rewritten: true };
  }
  let day, month, year, time;
  if ((m = DAY_MONTH_NAME.exec(s)) !== null) [, day = '', , month = '', year = '', ...time] = m;
  else if ((m = MONTH_NAME_DAY.exec(s)) !== null) [, month = '', day = '', year = '', ...time] = m;
  else return null;
  if (!realTime(time[0], time[1], time[2], time[3])) return null;
  const monthNo = monthNumber(month);
  if (monthNo === 0 || !realDate(Number(year), monthNo, Number(day))) return null;
  return { kind: 'date', orders: BOTH_ORDERS, ordered: false, time: time[0] !== undefined, rewritten: true };
}

const BOOLEAN_WORDS = new Set(['true', 'false', 'yes', 'no', 'y', 'n', 'on', 'off']);

/** true/false, yes/no, y/n, on/off in any case (as PostgreSQL's boolean reads them). */
export function isBooleanWord(s: string): boolean {
  return s.length <= 5 && BOOLEAN_WORDS.has(s.toLowerCase());
}

/** Whether a value's first character may start a number or a date (a digit, a sign, a point). */
export const startsNumeric = (c: number) => isDigitCode(c) || c === 45 || c === 43 || c === 46;

/** An example of how a set of number styles writes 1234.56, for messages. */
export function styleExample(styles: number): string {
  const found = NUMBER_STYLES.filter((_, k) => styles & (1 << k));
  if (found.length === 1) return `as 1${found[0]!.group}234${found[0]!.decimal}56`;
  if ((styles & COMMA_STYLES) === 0) return 'with a decimal point';
  if ((styles & POINT_STYLES) === 0) return 'with a decimal comma';
  return 'in any style';
}

/** What a locale writes: its decimal separator, and the order of a date's day and month. */
export function localeHints(locale: string | undefined): { decimal?: '.' | ','; order?: 'DMY' | 'MDY' } {
  if (locale === undefined) return {};
  try {
    const decimal = new Intl.NumberFormat(locale).formatToParts(1234.5).find((p) => p.type === 'decimal')?.value;
    const parts = new Intl.DateTimeFormat(locale, { day: 'numeric', month: 'numeric', year: 'numeric', timeZone: 'UTC' })
      .formatToParts(new Date(Date.UTC(2025, 11, 31)))
      .map((p) => p.type);
    const day = parts.indexOf('day');
    const month = parts.indexOf('month');
    const yearFirst = parts.indexOf('year') < Math.min(day, month);
    return {
      ...(decimal === ',' || decimal === '.' ? { decimal } : {}),
      ...(yearFirst ? {} : { order: day < month ? 'DMY' : 'MDY' }),
    };
  } catch {
    return {};
  }
}
