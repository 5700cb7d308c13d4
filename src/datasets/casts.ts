import type { ColumnType, Reading } from './types.js';

/** A string as an SQL literal (markers come from the submit: any text). */
const literal = (s: string) => `'${s.replaceAll("'", "''")}'`;

/**
 * How a staged value becomes a typed column value at publish. Values are staged as text: a CSV
 * cell as written ('' for a field written `""`, NULL for an empty field), a JSON value as its
 * JSON text (`"x"`, `12.50`, `{"a":1}`, absent or null as SQL NULL). The casts run with TimeZone
 * set to UTC, so a time without an offset is read as UTC.
 *
 * A CSV column's `reading` (decided over all of its values by the loader's tally) says how its
 * text is read when not as PostgreSQL reads it. The SQL gives the same value on PostgreSQL and
 * PGlite whatever DateStyle or lc_numeric: numbers lose everything but their digits, sign and
 * decimal separator, and a decimal comma becomes a point; dates written D/M/Y or M/D/Y (and
 * Y/M/D) are rewritten into ISO order before PostgreSQL reads them (it reads a four-digit
 * year first as year, month, day in any DateStyle, and a named month in English wherever it is).
 *
 * `value` is the SQL expression of the staged text (a quoted column name).
 */
export function castFromCsv(value: string, type: ColumnType, reading?: Reading): string {
  if (type === 'text') return value; // '' stays an empty string: it was written so
  if (type === 'jsonb') return `NULLIF(${value}, '')::jsonb`;
  let text = value;
  if ((type === 'bigint' || type === 'numeric') && reading !== undefined) {
    const decimal = reading.decimal ?? '.';
    if (decimal === ',' || reading.group !== undefined || reading.currency !== undefined || reading.percent) {
      text = `regexp_replace(${value}, '[^0-9+${decimal}-]', '', 'g')`;
      if (decimal === ',') text = `translate(${text}, ',', '.')`;
    }
  } else if ((type === 'date' || type === 'timestamptz') && reading !== undefined && (reading.rewrite || reading.order)) {
    text = `regexp_replace(btrim(${value}), '^([0-9]{4})[./]([0-9]{1,2})[./]', E'\\\\1-\\\\2-')`;
    if (reading.order !== undefined) {
      const iso = reading.order === 'DMY' ? `E'\\\\3-\\\\2-\\\\1'` : `E'\\\\3-\\\\1-\\\\2'`;
      text = `regexp_replace(${text}, '^([0-9]{1,2})[./-]([0-9]{1,2})[./-]([0-9]{4})', ${iso})`;
    }
  }
  // An empty field, or one of the column's NULL markers, is NULL in a typed column.
  const cast = `NULLIF(${text}, '')::${type}`;
  const nulls = reading?.nulls ?? [];
  return nulls.length === 0 ? cast : `CASE WHEN btrim(${value}) IN (${nulls.map(literal).join(', ')}) THEN NULL ELSE ${cast} END`;
}

export function castFromJson(value: string, type: ColumnType): string {
  switch (type) {
    case 'jsonb':
      return `${value}::jsonb`;
    case 'text':
      // A string unquoted; any other value as its JSON text (a number as written).
      return `CASE WHEN left(${value}, 1) = '"' THEN ${value}::jsonb #>> '{}' ELSE ${value} END`;
    case 'bigint':
    case 'numeric':
    case 'boolean':
      // A JSON number or boolean's text is PostgreSQL's literal; "" counted as missing.
      return `NULLIF(${value}, '""')::${type}`;
    case 'date':
    case 'timestamptz':
      // An ISO date or time holds no escapes: the quotes are all there is to take off.
      return `NULLIF(btrim(${value}, '"'), '')::${type}`;
  }
}

/**
 * The USING expression that widens a column from `from` to `to` (`joinTypes(from, to) === to`)
 * in `ALTER TABLE … ALTER COLUMN … TYPE to USING …`, written so that the result does not depend
 * on the session's DateStyle or TimeZone: a date becomes midnight UTC, a time as text is ISO 8601
 * in UTC (`2026-01-31T09:30:00.000000Z`), a value into jsonb keeps its JSON type.
 */
export function widenExpression(column: string, from: ColumnType, to: ColumnType): string {
  if (from === to) return column;
  if (to === 'numeric') return `${column}::numeric`;
  if (to === 'timestamptz') return `(${column}::timestamp AT TIME ZONE 'UTC')`;
  const asText =
    from === 'date'
      ? `to_char(${column}, 'YYYY-MM-DD')`
      : from === 'timestamptz'
        ? `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
        : `${column}::text`;
  if (to === 'text') return asText;
  // jsonb: numbers and booleans as themselves, dates and times as ISO strings, text as strings.
  return from === 'date' || from === 'timestamptz' ? `to_jsonb(${asText})` : `to_jsonb(${column})`;
}
