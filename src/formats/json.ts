import { DEFAULT_LIMITS, type InputLimits } from './limits.js';
import { IngestError } from '../core/errors.js';
import { describe, hasNulEscape, rowError, type ParsedRecord } from './record.js';

const enum State {
  Start, // before the top-level value
  ObjectKey, // in the top-level object, expecting a key (or '}' while it is still empty)
  ObjectColon,
  ObjectValue, // expecting the value of the current key
  ObjectNext, // after a value: ',' or '}'
  ArrayItem, // expecting a record (or ']' while the array is still empty)
  ArrayNext, // after a record: ',' or ']'
  End, // only whitespace may follow
}

/** Whether a character code can begin a JSON value: { [ " - 0-9 t f n. */
function startsValue(c: number): boolean {
  return c === 0x7b || c === 0x5b || c === 0x22 || c === 0x2d || (c >= 0x30 && c <= 0x39) || c === 0x74 || c === 0x66 || c === 0x6e;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Streams the records of a JSON document that is an array of objects or {"records": [...]},
 * without holding the document in memory: a small scanner finds where each record starts
 * and ends, and only that slice goes through JSON.parse. The values of keys other than
 * "records" are checked (JSON.parse) and dropped. Each record keeps its text as written
 * (`raw`), so numbers are stored exactly, never through a double.
 *
 * A record nested deeper than maxJsonDepth or longer than maxRecordLength is a row error; the
 * text of a long one is not kept beyond the limit (the scanner reads on to its end).
 */
export async function* parseJson(
  text: AsyncIterable<string> | Iterable<string>,
  limits: InputLimits = DEFAULT_LIMITS,
): AsyncGenerator<ParsedRecord> {
  let state = State.Start;
  let line = 1;
  let index = 0; // records seen
  let inObject = false; // the array is the value of "records" in a top-level object
  let sawRecords = false;
  let emptyAllowed = false; // the array or object just opened: ']' or '}' may close it
  let key = '';
  // The value being captured: a record, a key, or a skipped value of another key.
  let capture: 'record' | 'key' | 'skip' | null = null;
  let parts: string[] = [];
  let captured = 0; // characters of the value being captured, kept or not
  let head = ''; // its first characters, for the excerpt of a value too long to keep
  let tooDeep = false;
  let depth = 0;
  let inString = false;
  let escaped = false; // the chunk ended inside a string, just after an (unpaired) backslash
  let valueLine = 0;

  const unexpected = (ch: string, expected: string) =>
    new IngestError(`JSON error at line ${line}: expected ${expected}, found ${JSON.stringify(ch)}`);

  function finishRecord(raw: string): ParsedRecord {
    if (tooDeep) {
      return rowError(
        valueLine,
        `record ${index} (line ${valueLine}) is nested deeper than ${limits.maxJsonDepth} levels (MAX_JSON_DEPTH)`,
        raw || head,
      );
    }
    if (captured > limits.maxRecordLength) {
      return rowError(
        valueLine,
        `record ${index} (line ${valueLine}) is longer than ${limits.maxRecordLength} characters (MAX_RECORD_LENGTH)`,
        head,
      );
    }
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      return rowError(valueLine, `JSON error in record ${index} (line ${valueLine}): ${message(err)}`, raw);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      return rowError(valueLine, `record ${index} (line ${valueLine}) is ${describe(value)}, expected a JSON object`, raw);
    }
    if (hasNulEscape(raw)) {
      return rowError(valueLine, `record ${index} (line ${valueLine}) contains \\u0000, which PostgreSQL cannot store`, raw);
    }
    return { data: value as Record<string, unknown>, line: valueLine, raw };
  }

  /** Keeps a piece of the value being captured, unless the value is already over the limit. */
  function keep(piece: string): void {
    if (captured === 0) head = piece.slice(0, 200);
    captured += piece.length;
    if (captured <= limits.maxRecordLength) parts.push(piece);
    else if (capture !== 'record') {
      throw new IngestError(
        `JSON error at line ${valueLine}: a value in the top-level object is longer than ${limits.maxRecordLength} characters (MAX_RECORD_LENGTH)`,
      );
    } else parts = [];
  }

  for await (const chunk of text) {
    const len = chunk.length;
    let start = 0; // where the current capture begins in this chunk
    let nl = chunk.indexOf('\n'); // a line break at or after the strings still to scan, or -1
    let i = 0;
    while (i < len) {
      if (capture !== null) {
        // Inside a value: find its end.
        let endAt: number;
        if (inString) {
          // Jump to the closing quote: the next '"' preceded by an even number of backslashes.
          let from = i;
          if (escaped) {
            escaped = false;
            from++;
          }
          let q = chunk.indexOf('"', from);
          while (q !== -1) {
            let k = q - 1;
            while (k >= from && chunk.charCodeAt(k) === 0x5c) k--;
            if (((q - 1 - k) & 1) === 0) break;
            q = chunk.indexOf('"', q + 1);
          }
          const end = q === -1 ? len : q;
          // Line breaks are invalid in strings, but count them so later messages stay right.
          if (nl !== -1 && nl < i) nl = chunk.indexOf('\n', i);
          while (nl !== -1 && nl < end) {
            line++;
            nl = chunk.indexOf('\n', nl + 1);
          }
          if (q === -1) {
            let k = len - 1;
            while (k >= from && chunk.charCodeAt(k) === 0x5c) k--;
            escaped = ((len - 1 - k) & 1) === 1;
            i = len;
            continue;
          }
          inString = false;
          i = q + 1;
          if (depth !== 0) continue;
          endAt = i; // a string value ended
        } else {
          const c = chunk.charCodeAt(i);
          if (c === 0x22) {
            inString = true;
            i++;
            continue;
          }
          if (c === 0x7b || c === 0x5b) {
            if (++depth > limits.maxJsonDepth) {
              if (capture !== 'record')
                throw new IngestError(
                  `JSON error at line ${line}: a value in the top-level object is nested deeper than ${limits.maxJsonDepth} levels (MAX_JSON_DEPTH)`,
                );
              tooDeep = true;
            }
            i++;
            continue;
          }
          if (c === 0x7d || c === 0x5d) {
            if (depth === 0)
              endAt = i; // a scalar ended by the closing bracket, read again as structure
            else if (--depth === 0) endAt = i + 1;
            else {
              i++;
              continue;
            }
          } else if (c === 0x2c || c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
            if (depth === 0)
              endAt = i; // a scalar (number, true, false, null) ended
            else {
              if (c === 0x0a) line++;
              i++;
              continue;
            }
          } else {
            i++;
            continue;
          }
        }
        keep(chunk.slice(start, endAt));
        const raw = parts.length === 1 ? parts[0]! : parts.join('');
        parts = [];
        const kind = capture;
        capture = null;
        i = endAt;
        if (kind === 'record') {
          yield finishRecord(raw);
          captured = 0;
          tooDeep = false;
          index++;
          state = State.ArrayNext;
        } else if (kind === 'key') {
          try {
            key = JSON.parse(raw) as string;
          } catch (err) {
            throw new IngestError(`JSON error at line ${valueLine}: invalid key in the top-level object: ${message(err)}`);
          }
          state = State.ObjectColon;
          captured = 0;
        } else {
          try {
            JSON.parse(raw);
          } catch (err) {
            throw new IngestError(`JSON error in the value of ${JSON.stringify(key)} (line ${valueLine}): ${message(err)}`);
          }
          state = State.ObjectNext;
          captured = 0;
        }
        continue;
      }

      const c = chunk.charCodeAt(i);
      if (c === 0x0a) {
        line++;
        i++;
        continue;
      }
      if (c === 0x20 || c === 0x09 || c === 0x0d) {
        i++;
        continue;
      }
      const ch = chunk[i]!;
      switch (state) {
        case State.Start:
          if (ch === '[') {
            state = State.ArrayItem;
            emptyAllowed = true;
          } else if (ch === '{') {
            state = State.ObjectKey;
            inObject = true;
            emptyAllowed = true;
          } else throw unexpected(ch, 'a JSON array of objects or {"records": [...]}');
          break;
        case State.ObjectKey:
          if (ch === '"') {
            capture = 'key';
            inString = true;
            valueLine = line;
            start = i;
          } else if (ch === '}' && emptyAllowed) state = State.End;
          else throw unexpected(ch, emptyAllowed ? "a key in double quotes or '}'" : 'a key in double quotes');
          break;
        case State.ObjectColon:
          if (ch !== ':') throw unexpected(ch, `':' after the key ${JSON.stringify(key)}`);
          state = State.ObjectValue;
          break;
        case State.ObjectValue:
          if (key === 'records') {
            if (sawRecords) throw new IngestError(`JSON error at line ${line}: "records" appears twice`);
            if (ch !== '[') throw new IngestError(`JSON error at line ${line}: "records" must be an array of objects`);
            sawRecords = true;
            state = State.ArrayItem;
            emptyAllowed = true;
            break;
          }
          if (!startsValue(c)) throw unexpected(ch, `a value for the key ${JSON.stringify(key)}`);
          capture = 'skip';
          valueLine = line;
          start = i;
          continue; // the capture reads the value from its first character
        case State.ObjectNext:
          if (ch === ',') {
            state = State.ObjectKey;
            emptyAllowed = false;
          } else if (ch === '}') state = State.End;
          else throw unexpected(ch, "',' or '}'");
          break;
        case State.ArrayItem:
          if (ch === ']' && emptyAllowed) {
            state = inObject ? State.ObjectNext : State.End;
            break;
          }
          // a trailing or doubled comma, or garbage
          if (!startsValue(c)) throw unexpected(ch, `record ${index}`);
          capture = 'record';
          valueLine = line;
          start = i;
          continue; // the capture reads the record from its first character
        case State.ArrayNext:
          if (ch === ',') {
            state = State.ArrayItem;
            emptyAllowed = false;
          } else if (ch === ']') state = inObject ? State.ObjectNext : State.End;
          else throw unexpected(ch, `',' or ']' after record ${index - 1}`);
          break;
        case State.End:
          throw new IngestError(`JSON error at line ${line}: unexpected data after the end of the document`);
      }
      i++;
    }
    if (capture !== null) keep(chunk.slice(start));
  }
  if (capture === 'record' && depth === 0 && !inString) {
    // A bare scalar record at the very end of a truncated file: say what it is.
    yield finishRecord(parts.join(''));
  }
  if (state === State.Start) throw new IngestError('the file is empty: expected a JSON array of objects or {"records": [...]}');
  if (state !== State.End) {
    const inside = capture === 'record' ? `, inside record ${index} (which starts on line ${valueLine})` : '';
    throw new IngestError(`the JSON document ends early at line ${line}${inside} (truncated file?)`);
  }
  if (inObject && !sawRecords) throw new IngestError('the JSON object has no "records" array');
}
