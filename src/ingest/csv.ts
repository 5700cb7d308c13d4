import { CsvError, parse } from 'csv-parse';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { IngestError } from './errors.js';
import type { ParsedRecord } from './record.js';

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

/** RFC 4180 CSV with a header row: quoted fields, embedded newlines, CRLF or LF. */
export async function* parseCsv(text: AsyncIterable<string>): AsyncGenerator<ParsedRecord> {
  const parser = parse({
    columns: headerKeys,
    record_delimiter: ['\r\n', '\n'],
    skip_empty_lines: true,
    info: true,
  });
  // An error of the source (say, invalid UTF-8) destroys the parser with that error, and so
  // reaches the loop below; the pipeline's own rejection would only repeat it.
  const piping = pipeline(Readable.from(text), parser).catch(() => {});
  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
      yield { data: record, line: info.lines };
    }
  } catch (err) {
    if (err instanceof CsvError) throw new IngestError(`CSV error: ${err.message}`);
    throw err;
  } finally {
    parser.destroy();
    await piping;
  }
}
