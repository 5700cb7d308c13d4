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
