import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { DEFAULT_LIMITS, type InputLimits } from '../config.js';
import type { Format } from '../schemas/api.js';
import { parseCsv, type CsvDialect } from './csv.js';
import { decodeText, type Encoding } from './decode.js';
import { IngestError } from './errors.js';
import { parseJson } from './json.js';
import { parseNdjson } from './ndjson.js';
import type { ParsedRecord } from './record.js';

const PARSERS: Record<Format, (text: AsyncIterable<string>, limits: InputLimits, dialect: CsvDialect) => AsyncGenerator<ParsedRecord>> = {
  csv: parseCsv,
  json: parseJson,
  ndjson: parseNdjson,
};

/** Counts the bytes read, for byte progress (it runs at most one read ahead of the parser). */
export interface ReadProgress {
  bytes: number;
}

async function* counted(bytes: AsyncIterable<Buffer>, progress: ReadProgress): AsyncGenerator<Buffer> {
  for await (const chunk of bytes) {
    progress.bytes += chunk.length;
    yield chunk;
  }
}

/** How a stored file is read: its encoding (default: UTF-8, or UTF-16 by its BOM), and a CSV's dialect. */
export type ReadOptions = CsvDialect & { encoding?: Encoding };

/**
 * The file's bytes, gunzipped when they are gzip (recognised by their first bytes, whatever the
 * name): at most `limit` bytes of them, or the job fails. Progress counts the bytes read from
 * the file (compressed), so a progress bar reaches its end.
 */
async function* uncompressed(file: AsyncIterable<Buffer>, limit: number): AsyncGenerator<Buffer> {
  const iterator = file[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) return;
  const rest = (async function* () {
    yield first.value;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
  })();
  if (first.value[0] !== 0x1f || first.value[1] !== 0x8b) {
    yield* rest;
    return;
  }
  const gunzip = createGunzip();
  const feeding = pipeline(rest, gunzip).catch(() => {}); // its errors come out of the reads below
  let total = 0;
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > limit) {
        throw new IngestError(`the gzip file decompresses to more than MAX_DECOMPRESSED_BYTES (${limit} bytes): nothing of it was kept`);
      }
      yield chunk;
    }
  } catch (err) {
    if (err instanceof IngestError) throw err;
    const code = (err as { code?: string }).code;
    throw new IngestError(
      code === 'Z_BUF_ERROR' || /unexpected end/i.test((err as Error).message)
        ? `the gzip file is cut short after ${total} decompressed bytes (truncated?)`
        : `the gzip file is damaged after ${total} decompressed bytes: ${(err as Error).message}`,
    );
  } finally {
    gunzip.destroy();
    await feeding;
  }
}

/** Streams the records of a stored upload, in file order, with backpressure from the caller. */
export function readRecords(
  path: string,
  format: Format,
  progress: ReadProgress = { bytes: 0 },
  limits: InputLimits = DEFAULT_LIMITS,
  read: ReadOptions = {},
): AsyncGenerator<ParsedRecord> {
  const bytes = uncompressed(counted(createReadStream(path, { highWaterMark: 256 * 1024 }), progress), limits.maxDecompressedBytes);
  return PARSERS[format](decodeText(bytes, read.encoding), limits, read);
}
