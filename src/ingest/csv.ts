import { IngestError } from './errors.js';
import { rowError, type ParsedRecord } from './record.js';

/**
 * Header names, made usable as object keys deliberately: an empty name becomes
 * `column_N` (1-based position) and a repeated one gets `_2`, `_3`, ... so no value is lost.
 */
export function headerKeys(header: string[]): string[] {
  const used = new Set<string>();
  return header.map((raw, index) => {
    const base = raw.trim() === '' ? `column_${index + 1}` : raw;
    let name = base;
    for (let n = 2; used.has(name); n++) name = `${base}_${n}`;
    used.add(name);
    return name;
  });
}

const enum State {
  FieldStart, // at the start of a field
  Unquoted, // in a field without quotes
  Quoted, // in a quoted field
  QuoteSeen, // in a quoted field, just after a '"': it closes the field, or doubles as '""'
}

/**
 * RFC 4180 CSV with a header row: quoted fields (with "" for a quote) which may hold commas
 * and line breaks; records end with CRLF, LF or (old Mac files) a lone CR, mixed at will.
 * Empty lines are skipped; a leading BOM is dropped. Every record must have as many fields as
 * the header. Line numbers count physical lines (CRLF, LF or CR ends one), also inside
 * quoted fields; a record's line is the one where it starts.
 */
export async function* parseCsv(text: AsyncIterable<string>): AsyncGenerator<ParsedRecord> {
  let keys: string[] | null = null;
  let hasProto = false;
  let fields: string[] = [];
  let field = ''; // the current field's text from earlier chunks (and before a doubled quote)
  let state = State.FieldStart as State; // (as: TypeScript narrows it wrongly after the loops)
  let line = 1; // the line of the character being read
  let recordLine = 1; // where the current record starts
  let quoteLine = 1; // where the current quoted field starts
  let afterCR = false; // the previous character was a CR: a LF now completes the CRLF
  let first = true;

  const error = (at: number, what: string) => new IngestError(`CSV error on line ${at}: ${what}`);

  /** Ends the current record; a record (not the header) is returned. */
  function endRecord(): ParsedRecord | undefined {
    const values = fields;
    fields = [];
    if (keys === null) {
      keys = headerKeys(values);
      hasProto = keys.includes('__proto__');
      return undefined;
    }
    if (values.length !== keys.length) {
      const s = keys.length === 1 ? '' : 's';
      return rowError(recordLine, `CSV error on line ${recordLine}: expected ${keys.length} field${s} as in the header, found ${values.length}`, values.join(','));
    }
    const data: Record<string, string> = {};
    for (let k = 0; k < keys.length; k++) {
      if (hasProto && keys[k] === '__proto__') {
        Object.defineProperty(data, '__proto__', { value: values[k], enumerable: true, writable: true, configurable: true });
      } else data[keys[k]!] = values[k]!;
    }
    return { data, line: recordLine };
  }

  for await (const chunk of text) {
    let i = 0;
    if (first && chunk.length > 0) {
      first = false;
      if (chunk.charCodeAt(0) === 0xfeff) i = 1;
    }
    let start = i; // where the current field's text begins in this chunk
    const len = chunk.length;
    for (; i < len; i++) {
      const c = chunk.charCodeAt(i);
      const cr = c === 0x0d;
      const lf = c === 0x0a;
      if (cr || lf) {
        const crlf = lf && afterCR;
        afterCR = cr;
        if (crlf) continue; // the LF of a CRLF: the line (and any record) ended at the CR
        line++;
        if (state === State.Quoted) continue; // a line break inside a quoted field
        // A line break ends the record, if there is one: an empty line is skipped.
        if (state === State.FieldStart && fields.length === 0) continue;
        fields.push(state === State.Unquoted ? field + chunk.slice(start, i) : field);
        field = '';
        state = State.FieldStart;
        const record = endRecord();
        if (record) yield record;
        continue;
      }
      afterCR = false;
      switch (state) {
        case State.FieldStart:
          if (fields.length === 0) recordLine = line;
          if (c === 0x22) {
            state = State.Quoted;
            quoteLine = line;
            start = i + 1;
          } else if (c === 0x2c) fields.push('');
          else {
            state = State.Unquoted;
            start = i;
          }
          break;
        case State.Unquoted:
          if (c === 0x2c) {
            fields.push(field + chunk.slice(start, i));
            field = '';
            state = State.FieldStart;
          } else if (c === 0x22) {
            throw error(
              line,
              `a '"' inside unquoted field ${fields.length + 1}; a field containing quotes must be enclosed in quotes, with each quote in it doubled`,
            );
          }
          break;
        case State.Quoted:
          if (c === 0x22) {
            field += chunk.slice(start, i);
            state = State.QuoteSeen;
          }
          break;
        case State.QuoteSeen:
          if (c === 0x22) {
            // A doubled quote: a quote in the value; the text goes on after it.
            state = State.Quoted;
            start = i; // keep this '"'
          } else if (c === 0x2c) {
            fields.push(field);
            field = '';
            state = State.FieldStart;
          } else {
            throw error(
              line,
              `${JSON.stringify(chunk[i])} after the closing quote of field ${fields.length + 1}; expected ',' or the end of the line`,
            );
          }
          break;
      }
    }
    if (state === State.Unquoted || state === State.Quoted) field += chunk.slice(start);
  }
  if (state === State.Quoted) {
    throw error(quoteLine, `the quoted field ${fields.length + 1} starting here is never closed (the file ends inside it)`);
  }
  if (state !== State.FieldStart || fields.length > 0) {
    fields.push(field);
    const record = endRecord();
    if (record) yield record;
  }
}
