import { DEFAULT_LIMITS, type InputLimits } from './limits.js';
import { describe, hasNulEscape, nestedDeeperThan, rowError, type ParsedRecord } from './record.js';

/** Parses one NDJSON line (already known to be non-blank) as a record, keeping its text as written. */
export function parseNdjsonLine(raw: string, line: number, limits: InputLimits = DEFAULT_LIMITS): ParsedRecord {
  if (raw.length > limits.maxRecordLength) {
    return rowError(line, `line ${line} is longer than ${limits.maxRecordLength} characters (MAX_RECORD_LENGTH)`, raw.slice(0, 200));
  }
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
  if (nestedDeeperThan(raw, limits.maxJsonDepth)) {
    return rowError(line, `line ${line} is nested deeper than ${limits.maxJsonDepth} levels (MAX_JSON_DEPTH)`, raw);
  }
  return { data: value as Record<string, unknown>, line, raw };
}

/**
 * Newline-delimited JSON: one object per line; blank lines are skipped; LF or CRLF. A line
 * longer than maxRecordLength is a row error, and its text beyond the limit is not kept.
 */
export async function* parseNdjson(
  text: AsyncIterable<string> | Iterable<string>,
  limits: InputLimits = DEFAULT_LIMITS,
): AsyncGenerator<ParsedRecord> {
  let pending = ''; // the start of a line that continues in the next chunk
  let pendingLength = 0; // the whole length of that line, kept or not
  let line = 0;
  const tooLong = () =>
    rowError(line, `line ${line} is longer than ${limits.maxRecordLength} characters (MAX_RECORD_LENGTH)`, pending.slice(0, 200));
  for await (const chunk of text) {
    let from = 0;
    let newline: number;
    while ((newline = chunk.indexOf('\n', from)) !== -1) {
      line++;
      if (pendingLength + newline - from > limits.maxRecordLength) {
        yield tooLong();
      } else {
        const raw = pending + chunk.slice(from, newline);
        if (raw.trim() !== '') yield parseNdjsonLine(raw, line, limits);
      }
      pending = '';
      pendingLength = 0;
      from = newline + 1;
    }
    pendingLength += chunk.length - from;
    if (pendingLength <= limits.maxRecordLength) pending += chunk.slice(from);
    else if (pending === '') pending = chunk.slice(from, from + 200); // for the excerpt
  }
  line++;
  if (pendingLength > limits.maxRecordLength) yield tooLong();
  else if (pending.trim() !== '') yield parseNdjsonLine(pending, line, limits);
}
