/**
 * A declared column of `schema`: a type name (`"numeric"`), or an object that also says how to
 * read the column's text: `{"type": "numeric", "decimal": ","}`, `{"type": "numeric",
 * "currency": true}`, `{"type": "date", "format": "DD.MM.YYYY"}`. Checked at submit (a wrong one
 * is a 422 saying what is allowed), stored as JSON in `ingest_jobs.declared_types` (rows written
 * before hold type names: both are read).
 *
 * A format's tokens: DD or D (the day), MM or M (the month's number), Mon (its English name, full
 * or abbreviated), YYYY (the year), then optionally a time: HH or H (the hour), mm (minutes), ss
 * (seconds), A (AM or PM). Between them: `.` `/` `-` `,` `:` or a space. The format fixes the order
 * of day, month and year and whether a time may follow; the values' separators are read as the
 * inference reads them (any of `.` `/` `-`), so `DD.MM.YYYY` also reads `31/12/2025`.
 */
import { COLUMN_TYPES, type ColumnSpec, type ColumnType, type DateLayout } from './types.js';

const SPEC_KEYS = ['type', 'decimal', 'format', 'currency'];
const FORMAT_TOKEN = /YYYY|Mon|DD|D|MM|M|HH|H|mm|ss|A|[./\-,: ]/g;

const isColumnType = (type: unknown): type is ColumnType => typeof type === 'string' && (COLUMN_TYPES as readonly string[]).includes(type);

/** The date layout a format says, or why it is not one. */
export function dateLayout(format: string, type: ColumnType): DateLayout | string {
  const tokens = format.match(FORMAT_TOKEN) ?? [];
  const allowed =
    'a format is made of DD or D, MM or M or Mon, YYYY, then optionally HH or H, mm, ss and A (AM/PM), separated by . / - , : or a space';
  if (tokens.join('') !== format || format.length > 40) return `${allowed} (got ${JSON.stringify(format.slice(0, 40))})`;
  const where = (...names: string[]) => tokens.findIndex((t) => names.includes(t));
  const count = (...names: string[]) => tokens.filter((t) => names.includes(t)).length;
  const day = where('DD', 'D');
  const month = where('MM', 'M', 'Mon');
  const year = where('YYYY');
  if (
    count('DD', 'D') !== 1 ||
    count('MM', 'M', 'Mon') !== 1 ||
    count('YYYY') !== 1 ||
    count('HH', 'H') > 1 ||
    count('mm') > 1 ||
    count('ss') > 1
  )
    return `${allowed}: one day, one month and one year (got ${JSON.stringify(format)})`;
  const hour = where('HH', 'H');
  const time = hour >= 0;
  if (time && (where('mm') < 0 || hour < Math.max(day, month, year)))
    return `a format's time (HH:mm, HH:mm:ss) comes after its date (got ${JSON.stringify(format)})`;
  if (!time && (where('mm') >= 0 || where('ss') >= 0 || where('A') >= 0))
    return `a format's minutes, seconds and A come with an hour, HH (got ${JSON.stringify(format)})`;
  if (time && type === 'date') return `a date holds no time: declare "timestamptz" for ${JSON.stringify(format)}`;
  const order = tokens[month] === 'Mon' ? undefined : year < Math.min(day, month) ? 'YMD' : day < month ? 'DMY' : 'MDY';
  if (order === 'YMD' && day < month) return `a format with the year first has the month next (YYYY-MM-DD): got ${JSON.stringify(format)}`;
  if (order !== undefined && year < Math.max(day, month) && order !== 'YMD')
    return `a format has its year first or last (got ${JSON.stringify(format)})`;
  return { ...(order !== undefined ? { order } : { order: 'named' as const }), time };
}

/** A `schema` value checked into a ColumnSpec, or what is wrong with it (for a 422). */
export function columnSpec(value: unknown): ColumnSpec | string {
  const types = COLUMN_TYPES.join(', ');
  if (typeof value === 'string')
    return isColumnType(value) ? { type: value } : `is one of ${types} (got ${JSON.stringify(value.slice(0, 40))})`;
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    return `is a type (one of ${types}) or an object such as {"type": "numeric", "decimal": ","} (got ${JSON.stringify(value)?.slice(0, 40)})`;
  const spec = value as Record<string, unknown>;
  const unknown = Object.keys(spec).filter((k) => !SPEC_KEYS.includes(k));
  if (unknown.length > 0) return `takes only ${SPEC_KEYS.join(', ')} (got ${JSON.stringify(unknown[0]!.slice(0, 40))})`;
  const { type, decimal, format, currency } = spec;
  if (!isColumnType(type)) return `has a "type", one of ${types} (got ${JSON.stringify(type)?.slice(0, 40)})`;
  const number = type === 'numeric' || type === 'bigint';
  const result: ColumnSpec = { type };
  if (decimal !== undefined) {
    if (!number) return `has a "decimal" only as a number (bigint or numeric), not ${type}`;
    if (decimal !== ',' && decimal !== '.') return `has a "decimal" of "," or "." (got ${JSON.stringify(decimal)?.slice(0, 20)})`;
    result.decimal = decimal;
  }
  if (currency !== undefined) {
    if (!number) return `has a "currency" only as a number (bigint or numeric), not ${type}`;
    if (typeof currency !== 'boolean') return `has a "currency" of true or false (got ${JSON.stringify(currency)?.slice(0, 20)})`;
    result.currency = currency;
  }
  if (format !== undefined) {
    if (type !== 'date' && type !== 'timestamptz') return `has a "format" only as a date or timestamptz, not ${type}`;
    if (typeof format !== 'string') return `has a "format" such as "DD.MM.YYYY" (got ${JSON.stringify(format)?.slice(0, 20)})`;
    const layout = dateLayout(format, type);
    if (typeof layout === 'string') return `has a wrong "format": ${layout}`;
    result.format = format;
  }
  return result;
}

/** A declared column as stored (a type name, or a spec): what the loader's targets take. */
export function storedSpec(value: unknown): ColumnSpec | undefined {
  const spec = columnSpec(value);
  return typeof spec === 'string' ? undefined : spec;
}

/** A target with its date layout read from its format. */
export function withLayout(spec: ColumnSpec): ColumnSpec & { layout?: DateLayout } {
  if (spec.format === undefined) return spec;
  const layout = dateLayout(spec.format, spec.type);
  return typeof layout === 'string' ? spec : { ...spec, layout };
}
