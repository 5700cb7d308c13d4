/**
 * One record of the input, in order, with the 1-based line where it starts: either its data,
 * or a row-level error (wrong number of fields, invalid JSON, not an object) with a message
 * and a short excerpt. A row error leaves the input readable: parsing goes on after it.
 * Errors that make the rest unreadable (invalid UTF-8, truncation) are thrown instead.
 */
export type ParsedRecord =
  | { data: Record<string, unknown>; line: number; error?: undefined }
  | { data?: undefined; line: number; error: string; excerpt: string };

const EXCERPT_LENGTH = 120;

export function rowError(line: number, error: string, raw: string): ParsedRecord {
  const flat = raw.replace(/\s+/g, ' ').trim();
  const excerpt = flat.length > EXCERPT_LENGTH ? `${flat.slice(0, EXCERPT_LENGTH - 1)}…` : flat;
  return { line, error, excerpt };
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
