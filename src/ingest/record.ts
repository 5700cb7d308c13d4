/** A parsed record and where it came from, for error messages. */
export interface ParsedRecord {
  data: Record<string, unknown>;
  /** 1-based line where the record starts. */
  line: number;
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
