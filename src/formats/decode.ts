import { IngestError } from '../core/errors.js';
import type { Encoding } from '../core/job.js';

const EMPTY = new Uint8Array(0);

/**
 * The number of line ends in bytes[from, to): LF, CRLF, or a lone CR (old Mac files, which
 * CSV accepts). Neither byte is ever part of a multi-byte character. A CRLF split across two
 * chunks counts twice: these numbers only locate errors.
 */
function countLines(bytes: Uint8Array, from: number, to: number): number {
  let n = 0;
  for (let i = bytes.indexOf(0x0a, from); i !== -1 && i < to; i = bytes.indexOf(0x0a, i + 1)) n++;
  for (let i = bytes.indexOf(0x0d, from); i !== -1 && i < to; i = bytes.indexOf(0x0d, i + 1)) {
    if (bytes[i + 1] !== 0x0a) n++;
  }
  return n;
}

/**
 * Where the last, incomplete character of already-validated UTF-8 starts (bytes.length if the
 * bytes end on a character boundary). Only the last 3 bytes can belong to it.
 */
function incompleteStart(bytes: Uint8Array): number {
  for (let k = bytes.length - 1; k >= 0 && k >= bytes.length - 3; k--) {
    const b = bytes[k]!;
    if (b < 0x80) return bytes.length;
    if (b >= 0xc0) {
      const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
      return bytes.length - k < need ? k : bytes.length;
    }
  }
  return bytes.length;
}

/**
 * The first invalid sequence in bytes[from...] (which starts on a character boundary), by the
 * rules of the WHATWG decoder: [its first byte, just after the byte that makes it invalid];
 * undefined if there is none (a sequence cut short by the end of the bytes is not counted).
 */
function firstInvalid(bytes: Uint8Array, from: number): [number, number] | undefined {
  let i = from;
  while (i < bytes.length) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lo = 0xa0;
      else if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lo = 0x90;
      else if (b === 0xf4) hi = 0x8f;
    } else return [i, i + 1];
    for (let j = 1; j <= need; j++) {
      if (i + j >= bytes.length) return undefined;
      const c = bytes[i + j]!;
      if (c < lo || c > hi) return [i, i + j + 1];
      lo = 0x80;
      hi = 0xbf;
    }
    i += need + 1;
  }
  return undefined;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => `0x${b.toString(16).toUpperCase().padStart(2, '0')}`).join(' ');
}

/**
 * Decodes a byte stream as UTF-8, strictly: invalid UTF-8 and NUL bytes (a binary file, or
 * text PostgreSQL cannot store) are errors naming the byte offset (0-based) and line, not
 * silent U+FFFD. A leading BOM is dropped.
 *
 * With `fallback`: bytes that are not UTF-8 after nothing but ASCII, in a chunk that looks like
 * text, are that single-byte encoding instead (what came before reads the same in both), and
 * the rest of the stream is read in it; `switched` is told.
 */
export async function* decodeUtf8(
  bytes: AsyncIterable<Buffer> | Iterable<Buffer>,
  fallback?: { encoding: Encoding; switched: (encoding: Encoding) => void },
): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let offset = 0; // bytes before this chunk
  let line = 1; // line of the first byte of this chunk
  let ascii = true; // every byte so far was ASCII
  // The last bytes read (at most 3): an invalid sequence may begin in an earlier chunk.
  let tail: Uint8Array = EMPTY;
  const iterator = Symbol.asyncIterator in bytes ? bytes[Symbol.asyncIterator]() : bytes[Symbol.iterator]();
  try {
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      const chunk = next.value;
      let text: string;
      try {
        text = decoder.decode(chunk, { stream: true });
        ascii &&= text.length === chunk.length; // a character of several bytes is one or two UTF-16 units
      } catch {
        const joined = new Uint8Array(tail.length + chunk.length);
        joined.set(tail);
        joined.set(chunk, tail.length);
        const found = firstInvalid(joined, incompleteStart(tail));
        // Where the invalid sequence starts within chunk (negative: in the tail). found is
        // undefined only if this function and the decoder disagree: then name the chunk's start.
        const bad = found ? found[0] - tail.length : 0;
        if (fallback && ascii && found && isText(chunk) && chunk.subarray(0, bad).every((b) => b < 0x80)) {
          fallback.switched(fallback.encoding);
          yield* decodeSingleByte(prepend(chunk, { [Symbol.asyncIterator]: () => toAsync(iterator) }), fallback.encoding);
          return;
        }
        const lineAt = line + (bad > 0 ? countLines(chunk, 0, bad) : 0);
        const sequence = found ? ` ${hex(joined.subarray(found[0], found[1]))}` : '';
        const nul = chunk.indexOf(0);
        if (nul === -1 || nul > bad) {
          throw new IngestError(`the file is not valid UTF-8: invalid byte sequence${sequence} at byte ${offset + bad} (line ${lineAt})`);
        }
        text = ''; // a NUL byte comes first: reported below
      }
      const nul = chunk.indexOf(0);
      if (nul !== -1) {
        const lineAt = line + countLines(chunk, 0, nul);
        throw new IngestError(
          `the file contains a NUL byte at byte ${offset + nul} (line ${lineAt}): it looks binary, not CSV or JSON text`,
        );
      }
      offset += chunk.length;
      line += countLines(chunk, 0, chunk.length);
      if (chunk.length >= 3) tail = chunk.subarray(chunk.length - 3);
      else {
        const next = new Uint8Array(Math.min(3, tail.length + chunk.length));
        const keep = next.length - chunk.length;
        next.set(tail.subarray(tail.length - keep));
        next.set(chunk, keep);
        tail = next;
      }
      if (text) yield text;
    }
  } finally {
    await iterator.return?.(); // the source is let go when the reader stops early or fails
  }
  try {
    const rest = decoder.decode();
    if (rest) yield rest;
  } catch {
    const at = offset - (tail.length - incompleteStart(tail));
    throw new IngestError(
      `the file is not valid UTF-8: it ends inside a multi-byte character starting at byte ${at} (line ${line}; truncated?)`,
    );
  }
}

export { ENCODINGS } from '../core/job.js';
export type { Encoding };

/**
 * What a file that is not UTF-8 probably is, from its first bytes: UTF-16 without a BOM (a NUL
 * every other byte), a single-byte encoding (text with bytes over 0x7F), or nothing (NULs
 * elsewhere: binary).
 */
function likelyEncoding(head: Uint8Array): Encoding | undefined {
  let evenNul = 0;
  let oddNul = 0;
  const n = Math.min(head.length, 4096);
  for (let i = 0; i < n; i++) {
    if (head[i] !== 0) continue;
    if (i % 2 === 0) evenNul++;
    else oddNul++;
  }
  if (oddNul > n / 4 && evenNul < n / 50) return 'utf-16le';
  if (evenNul > n / 4 && oddNul < n / 50) return 'utf-16be';
  return evenNul + oddNul === 0 ? 'windows-1252' : undefined;
}

/** The byte order mark's encoding, and its length, or undefined. */
function bomOf(head: Uint8Array): { encoding: Encoding; length: number } | undefined {
  if (head[0] === 0xff && head[1] === 0xfe) return { encoding: 'utf-16le', length: 2 };
  if (head[0] === 0xfe && head[1] === 0xff) return { encoding: 'utf-16be', length: 2 };
  return undefined;
}

/**
 * Decodes a stored file: in `encoding` when given; UTF-16 when it starts with a UTF-16 byte
 * order mark, or (without one) when a NUL comes every other byte of its first chunk;
 * otherwise as UTF-8 (decodeUtf8, strictly), or, when bytes that are not UTF-8 come after
 * nothing but ASCII and look like text, as Windows-1252 (the single-byte encoding of most
 * Western exports) from there on. Bytes that are not UTF-8 after UTF-8 text fail the file,
 * and the error suggests the encoding it looks like. A NUL character fails the file in any
 * encoding (PostgreSQL cannot store it). `found` is told the encoding read (again when it
 * changes to Windows-1252).
 */
export async function* decodeText(
  bytes: AsyncIterable<Buffer>,
  encoding?: Encoding,
  found?: (encoding: Encoding) => void,
): AsyncGenerator<string> {
  const iterator = bytes[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) return;
  const head = first.value;
  const rest = { [Symbol.asyncIterator]: () => iterator };
  const bom = encoding === undefined ? bomOf(head) : undefined;
  const nulPattern = encoding === undefined && !bom ? likelyEncoding(head) : undefined;
  const chosen = encoding ?? bom?.encoding ?? (nulPattern === 'utf-16le' || nulPattern === 'utf-16be' ? nulPattern : 'utf-8');
  found?.(chosen);
  if (chosen !== 'utf-8') {
    yield* decodeSingleByte(prepend(bom ? head.subarray(bom.length) : head, rest), chosen);
    return;
  }
  try {
    yield* decodeUtf8(prepend(head, rest), encoding === undefined ? { encoding: 'windows-1252', switched: (e) => found?.(e) } : undefined);
  } catch (err) {
    if (encoding === undefined && err instanceof IngestError) {
      const likely = likelyEncoding(head);
      // A NUL byte says UTF-16 when they come every other byte; a file cut inside a character was cut, not encoded otherwise.
      const suggest =
        likely && (err.message.includes('invalid byte sequence') || (err.message.includes('NUL byte') && likely !== 'windows-1252'));
      if (suggest)
        throw new IngestError(
          `${err.message.replace(': it looks binary, not CSV or JSON text', '')}; it looks like ${likely}: retry with encoding=${likely}`,
        );
    }
    throw err;
  }
}

/** Bytes in an encoding other than UTF-8 (UTF-16 errors become U+FFFD; single-byte encodings map every byte). */
async function* decodeSingleByte(bytes: AsyncIterable<Buffer>, encoding: Encoding): AsyncGenerator<string> {
  const decoder = new TextDecoder(encoding);
  let chars = 0;
  for await (const chunk of bytes) {
    const text = decoder.decode(chunk, { stream: true });
    const nul = text.indexOf('\0');
    if (nul !== -1)
      throw new IngestError(
        `the file contains a NUL character (character ${chars + nul} read as ${encoding}): it is not ${encoding} text, or not text`,
      );
    chars += text.length;
    if (text) yield text;
  }
  const tail = decoder.decode();
  if (tail) yield tail;
}

/** Whether bytes hold no control character text never does (all but tab, line breaks, form feed and DOS's end of file). */
function isText(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d && b !== 0x0c && b !== 0x1a) return false;
  return true;
}

async function* toAsync(iterator: AsyncIterator<Buffer> | Iterator<Buffer>): AsyncGenerator<Buffer> {
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
}

async function* prepend(head: Buffer, rest: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  yield head;
  yield* rest;
}
