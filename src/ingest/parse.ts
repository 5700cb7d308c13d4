import { createReadStream } from 'node:fs';
import { DEFAULT_LIMITS, type InputLimits } from '../config.js';
import type { Format } from '../schemas/api.js';
import { parseCsv, type CsvDialect } from './csv.js';
import { decodeText, type Encoding } from './decode.js';
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

/** Streams the records of a stored upload, in file order, with backpressure from the caller. */
export function readRecords(
  path: string,
  format: Format,
  progress: ReadProgress = { bytes: 0 },
  limits: InputLimits = DEFAULT_LIMITS,
  read: ReadOptions = {},
): AsyncGenerator<ParsedRecord> {
  return PARSERS[format](decodeText(counted(createReadStream(path, { highWaterMark: 256 * 1024 }), progress), read.encoding), limits, read);
}
