import { describe, hasNulEscape, rowError, type ParsedRecord } from './record.js';

/** Parses one NDJSON line (already known to be non-blank) as a record. */
export function parseNdjsonLine(raw: string, line: number): ParsedRecord {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    return rowError(line, `invalid JSON on line ${line}: ${(err as Error).message}`, raw);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return rowError(line, `line ${line} is ${describe(value)}, expected a JSON object`, raw);
  }
  if (hasNulEscape(raw)) {
    return rowError(line, `line ${line} contains \\u0000, which PostgreSQL cannot store`, raw);
  }
  return { data: value as Record<string, unknown>, line };
}

/** Newline-delimited JSON: one object per line; blank lines are skipped; LF or CRLF. */
export async function* parseNdjson(text: AsyncIterable<string>): AsyncGenerator<ParsedRecord> {
  let pending = ''; // the start of a line that continues in the next chunk
  let line = 0;
  for await (const chunk of text) {
    let from = 0;
    let newline: number;
    while ((newline = chunk.indexOf('\n', from)) !== -1) {
      const raw = pending + chunk.slice(from, newline);
      pending = '';
      from = newline + 1;
      line++;
      if (raw.trim() !== '') yield parseNdjsonLine(raw, line);
    }
    pending += chunk.slice(from);
  }
  line++;
  if (pending.trim() !== '') yield parseNdjsonLine(pending, line);
}
