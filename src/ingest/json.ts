import { IngestError } from './errors.js';
import { describe, type ParsedRecord } from './record.js';

/**
 * Streams the records of a JSON document that is an array of objects or {"records": [...]},
 * without holding the document in memory: a small scanner finds where each record starts
 * and ends, and only that slice goes through JSON.parse.
 */
export async function* parseJson(text: AsyncIterable<string>): AsyncGenerator<ParsedRecord> {
  const enum State {
    Start, // before the top-level value
    ObjectKey, // in the top-level object, expecting a key or '}'
    ObjectColon,
    ObjectValue, // expecting the value of the current key
    ObjectNext, // after a value: ',' or '}'
    ArrayItem, // expecting a record (or ']' when the array is still empty)
    ArrayNext, // after a record: ',' or ']'
    End, // only whitespace may follow
  }
  let state = State.Start;
  let line = 1;
  let index = 0; // records seen
  let inObject = false; // the array is the value of "records" in a top-level object
  let sawRecords = false;
  let emptyArrayAllowed = false;
  let key = '';
  // The value being captured: a record, a key, or a skipped value of another key.
  let capture: 'record' | 'key' | 'skip' | null = null;
  let parts: string[] = [];
  let depth = 0;
  let inString = false;
  let escaped = false;
  let valueLine = 0;

  const where = () => `line ${line}`;
  const unexpected = (ch: string, expected: string) =>
    new IngestError(`JSON error at ${where()}: expected ${expected}, found ${JSON.stringify(ch)}`);

  function finishRecord(raw: string): ParsedRecord {
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      throw new IngestError(`JSON error in record ${index} (line ${valueLine}): ${(err as Error).message}`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new IngestError(`record ${index} (line ${valueLine}) is ${describe(value)}, expected a JSON object`);
    }
    if (raw.includes('\\u0000')) {
      throw new IngestError(`record ${index} (line ${valueLine}) contains \\u0000, which PostgreSQL cannot store`);
    }
    return { data: value as Record<string, unknown>, line: valueLine };
  }

  for await (const chunk of text) {
    let start = capture ? 0 : -1; // where the current capture begins in this chunk
    for (let i = 0; i < chunk.length; i++) {
      const ch = chunk[i]!;
      if (capture) {
        // Inside a value: find its end.
        let ended = false;
        let endAt = i + 1;
        if (inString) {
          if (escaped) escaped = false;
          else if (ch === '\\') escaped = true;
          else if (ch === '"') {
            inString = false;
            if (depth === 0) ended = true;
          } else if (ch === '\n') line++;
        } else if (ch === '"') inString = true;
        else if (ch === '{' || ch === '[') depth++;
        else if (ch === '}' || ch === ']') {
          if (depth === 0) {
            ended = true; // a scalar ended by the closing bracket
            endAt = i;
          } else if (--depth === 0) ended = true;
        } else if (depth === 0 && (ch === ',' || ch === ' ' || ch === '\t' || ch === '\r' || ch === '\n')) {
          ended = true; // a scalar (number, true, false, null) ended
          endAt = i;
        } else if (ch === '\n') line++;
        if (!ended) continue;
        parts.push(chunk.slice(start, endAt));
        const raw = parts.join('');
        parts = [];
        const kind = capture;
        capture = null;
        i = endAt - 1; // the scalar's terminator is read again as structure
        if (kind === 'record') {
          yield finishRecord(raw);
          index++;
          state = State.ArrayNext;
        } else if (kind === 'key') {
          key = JSON.parse(raw) as string;
          state = State.ObjectColon;
        } else {
          state = State.ObjectNext;
        }
        continue;
      }
      if (ch === '\n') {
        line++;
        continue;
      }
      if (ch === ' ' || ch === '\t' || ch === '\r') continue;
      switch (state) {
        case State.Start:
          if (ch === '[') {
            state = State.ArrayItem;
            emptyArrayAllowed = true;
          } else if (ch === '{') {
            state = State.ObjectKey;
            inObject = true;
          } else throw unexpected(ch, 'a JSON array of objects or {"records": [...]}');
          break;
        case State.ObjectKey:
          if (ch === '"') {
            capture = 'key';
            inString = true;
            start = i;
          } else if (ch === '}' && key === '') state = State.End;
          else throw unexpected(ch, 'a key in double quotes');
          break;
        case State.ObjectColon:
          if (ch !== ':') throw unexpected(ch, "':'");
          state = State.ObjectValue;
          break;
        case State.ObjectValue:
          if (key === 'records') {
            if (ch !== '[') throw new IngestError(`JSON error at ${where()}: "records" must be an array of objects`);
            if (sawRecords) throw new IngestError(`JSON error at ${where()}: "records" appears twice`);
            sawRecords = true;
            state = State.ArrayItem;
            emptyArrayAllowed = true;
          } else {
            capture = 'skip';
            start = i;
            i--; // let the capture loop see the value's first character
          }
          break;
        case State.ObjectNext:
          if (ch === ',') state = State.ObjectKey;
          else if (ch === '}') state = State.End;
          else throw unexpected(ch, "',' or '}'");
          break;
        case State.ArrayItem:
          if (ch === ']' && emptyArrayAllowed) {
            state = inObject ? State.ObjectNext : State.End;
            break;
          }
          if (ch === ']' || ch === ',') throw unexpected(ch, `record ${index}`); // a trailing or doubled comma
          capture = 'record';
          valueLine = line;
          start = i;
          i--;
          break;
        case State.ArrayNext:
          if (ch === ',') {
            state = State.ArrayItem;
            emptyArrayAllowed = false;
          } else if (ch === ']') state = inObject ? State.ObjectNext : State.End;
          else throw unexpected(ch, `',' or ']' after record ${index - 1}`);
          break;
        case State.End:
          throw new IngestError(`JSON error at ${where()}: unexpected data after the end of the document`);
      }
    }
    if (capture) parts.push(chunk.slice(start));
  }
  if (capture === 'record' && depth === 0 && !inString) {
    // A bare scalar record at the very end of a truncated file.
    yield finishRecord(parts.join(''));
  }
  if (state === State.Start) throw new IngestError('the file is empty: expected a JSON array of objects or {"records": [...]}');
  if (state !== State.End) throw new IngestError(`the JSON document ends early at ${where()} (truncated file?)`);
  if (inObject && !sawRecords) throw new IngestError('the JSON object has no "records" array');
}
