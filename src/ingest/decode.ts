import { IngestError } from './errors.js';

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
 */
export async function* decodeUtf8(bytes: AsyncIterable<Buffer> | Iterable<Buffer>): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let offset = 0; // bytes before this chunk
  let line = 1; // line of the first byte of this chunk
  // The last bytes read (at most 3): an invalid sequence may begin in an earlier chunk.
  let tail: Uint8Array = EMPTY;
  for await (const chunk of bytes) {
    let text: string;
    try {
      text = decoder.decode(chunk, { stream: true });
    } catch {
      const joined = new Uint8Array(tail.length + chunk.length);
      joined.set(tail);
      joined.set(chunk, tail.length);
      const found = firstInvalid(joined, incompleteStart(tail));
      // Where the invalid sequence starts within chunk (negative: in the tail). found is
      // undefined only if this function and the decoder disagree: then name the chunk's start.
      const bad = found ? found[0] - tail.length : 0;
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
