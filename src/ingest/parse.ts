import { createReadStream } from 'node:fs';
import type { Format } from '../schemas/jobs.js';
import { parseCsv } from './csv.js';
import { decodeUtf8 } from './decode.js';
import { parseJson } from './json.js';
import { parseNdjson } from './ndjson.js';
import type { ParsedRecord } from './record.js';

const PARSERS: Record<Format, (text: AsyncIterable<string>) => AsyncGenerator<ParsedRecord>> = {
  csv: parseCsv,
  json: parseJson,
  ndjson: parseNdjson,
};

/** Streams the records of a stored upload, in file order, with backpressure from the caller. */
export function readRecords(path: string, format: Format): AsyncGenerator<ParsedRecord> {
  return PARSERS[format](decodeUtf8(createReadStream(path, { highWaterMark: 256 * 1024 })));
}
