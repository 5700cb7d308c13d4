import type { ColumnType } from './types.js';

/**
 * How a staged value becomes a typed column value at publish. Values are staged as text: a CSV
 * cell as written ('' for an empty cell), a JSON value as its JSON text (`"x"`, `12.50`,
 * `{"a":1}`, absent or null as SQL NULL). The casts run with TimeZone set to UTC, so a time
 * without an offset is read as UTC.
 *
 * `value` is the SQL expression of the staged text (a quoted column name).
 */
export function castFromCsv(value: string, type: ColumnType): string {
  switch (type) {
    case 'text':
      return value; // an empty cell stays an empty string: it was written so
    case 'jsonb':
      return `NULLIF(${value}, '')::jsonb`;
    default:
      return `NULLIF(${value}, '')::${type}`; // an empty cell in a typed column is NULL
  }
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
