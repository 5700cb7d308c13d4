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
