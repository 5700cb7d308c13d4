import { IngestError } from './errors.js';

/**
 * Decodes a byte stream as UTF-8, strictly: invalid UTF-8 and NUL bytes (a binary file, or
 * text PostgreSQL cannot store) are errors naming the byte offset, not silent U+FFFD.
 * A leading BOM is dropped.
 */
export async function* decodeUtf8(bytes: AsyncIterable<Buffer>): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let offset = 0;
  for await (const chunk of bytes) {
    let text: string;
    try {
      text = decoder.decode(chunk, { stream: true });
    } catch {
      throw new IngestError(`the file is not valid UTF-8 (invalid bytes within bytes ${offset}–${offset + chunk.length})`);
    }
    const nul = chunk.indexOf(0);
    if (nul !== -1) {
      throw new IngestError(`the file contains a NUL byte at byte ${offset + nul}: it looks binary, not CSV or JSON text`);
    }
    offset += chunk.length;
    if (text) yield text;
  }
  try {
    const rest = decoder.decode();
    if (rest) yield rest;
  } catch {
    throw new IngestError('the file is not valid UTF-8: it ends inside a multi-byte character (truncated?)');
  }
}
