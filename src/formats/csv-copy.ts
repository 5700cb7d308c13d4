/**
 * A CSV file's records as PostgreSQL's `COPY … (FORMAT csv)` reads them, for the fast path: the
 * header's record dropped and each data record's bytes passed on as written, preceded by its
 * record number and the delimiter (the `_intake_record_no` column, listed first in the COPY).
 *
 * It also proves the file is one PostgreSQL reads field for field as Intake's own reader does:
 * plain RFC 4180, quotes only around whole fields (doubled inside), every record of the header's
 * field count, no blank line, one kind of line end. Anything else throws `NotPlainCsv`, and the
 * job is loaded by the checked path, which reads such files its own way and reports each bad row.
 */

/** The file is not plain CSV as COPY reads it: why, and where. */
export class NotPlainCsv extends Error {}

export interface CopyDialect {
  /** One byte: `,` `;` tab `|`. */
  delimiter: number;
  /** One byte: `"` or `'`; it also escapes itself (doubled). */
  quote: number;
}

const LF = 0x0a;
const CR = 0x0d;

const enum State {
  RecordStart, // before a record's first byte
  Field, // in a record, outside quotes
  Quoted, // in a quoted field
  QuoteSeen, // in a quoted field, just after a quote: it closes the field, or doubles
}

/** The bytes `n` and the delimiter, as ASCII digits. */
function prefix(n: number, delimiter: number): Buffer {
  const digits = String(n);
  const b = Buffer.allocUnsafe(digits.length + 1);
  b.write(digits, 0, 'latin1');
  b[digits.length] = delimiter;
  return b;
}

/**
 * The data records of `bytes` (a CSV file's, UTF-8, header first), each as `<record_no><delimiter>`
 * and its bytes, in chunks the size of the input's. `counted` is told the number of data records
 * once the input has ended. Records are found by searching for line feeds and quotes (memchr),
 * not byte by byte: a record without quotes costs two searches. Field counts, line ends and the
 * bytes' encoding are left to COPY, which refuses a record that breaks them.
 */
export async function* copyRecords(
  bytes: AsyncIterable<Buffer>,
  d: CopyDialect,
  counted?: (records: number) => void,
): AsyncGenerator<Buffer> {
  const { delimiter, quote } = d;
  let state = State.RecordStart as State;
  let recordNo = -1; // the record being read (-1: the header)
  let blank = false; // a blank line was dropped: only blank lines may follow (the file's end)
  let previous = -1; // the byte before the current position (across chunks)
  const fail = (why: string): never => {
    throw new NotPlainCsv(`record ${Math.max(recordNo, 0)}${recordNo < 0 ? ' (the header)' : ''}: ${why}`);
  };
  for await (const chunk of bytes) {
    const parts: Buffer[] = [];
    const len = chunk.length;
    let from = recordNo >= 0 ? 0 : len; // where the bytes to pass on begin (none of the header's)
    let i = 0;
    let nextQuote = -2; // where the next quote is at or after i (-1: none in the chunk; -2: not searched)
    while (i < len) {
      if (state === State.Quoted || state === State.QuoteSeen) {
        // Byte by byte to the field's closing quote.
        for (; i < len; i++) {
          const c = chunk[i]!;
          if (state === State.Quoted) {
            if (c === quote) state = State.QuoteSeen;
          } else if (c === quote) state = State.Quoted;
          else {
            if (c !== delimiter && c !== LF && c !== CR) fail('a quoted field goes on after its closing quote');
            state = State.Field;
            break;
          }
        }
        nextQuote = -2;
        if (i === len) {
          previous = chunk[len - 1]!;
          break;
        }
        // i is the byte after the field, in the record: read on from it.
      }
      if (state === State.RecordStart) {
        const c = chunk[i]!;
        if (c === LF || c === CR) {
          // A blank line (or the LF of the CRLF that ended the line before): dropped.
          if (c === CR || previous !== CR) {
            if (recordNo < 0) fail('a blank line before the header');
            blank = true;
          }
          if (i > from) parts.push(chunk.subarray(from, i));
          from = i + 1;
          previous = c;
          i++;
          continue;
        }
        if (recordNo >= 0) {
          if (blank) fail('a blank line inside the table');
          if (i > from) parts.push(chunk.subarray(from, i));
          parts.push(prefix(recordNo, delimiter));
          from = i;
        }
        state = State.Field;
        previous = -1; // a record's start: a quote may open a field here
      }
      // In a record, outside quotes: to its line end, or to a quote before it.
      const lf = chunk.indexOf(LF, i);
      if (nextQuote !== -1 && nextQuote < i) nextQuote = chunk.indexOf(quote, i);
      const end = lf < 0 ? len : lf;
      if (nextQuote < 0 || nextQuote > end) {
        // (A CR before the LF is a CRLF's: COPY refuses a file that mixes line ends.)
        if (lf < 0) {
          previous = chunk[len - 1]!;
          break;
        }
        recordNo++;
        if (recordNo === 0) from = lf + 1; // the header ends here
        state = State.RecordStart;
        previous = LF;
        i = lf + 1;
        continue;
      }
      // A quote in the record: it must open a field (at the record's start or after a delimiter).
      const before = nextQuote > i ? chunk[nextQuote - 1]! : previous;
      if (before !== delimiter && before !== -1) fail('a quote inside a field that does not start with one');
      state = State.Quoted;
      i = nextQuote + 1;
    }
    if (from < len) parts.push(chunk.subarray(from));
    if (parts.length > 0) yield parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
  if (state === State.Quoted) fail('a quoted field is not closed at the end of the file');
  if (state !== State.RecordStart) recordNo++; // the last record, without a line end
  counted?.(Math.max(recordNo, 0));
}
