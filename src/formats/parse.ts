import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib, { createGunzip } from 'node:zlib';
import { DEFAULT_LIMITS, type InputLimits } from './limits.js';
import type { Format } from '../core/job.js';
import { parseCsv, type CsvDialect, type CsvReport } from './csv.js';
import { decodeText, type Encoding } from './decode.js';
import { IngestError } from '../core/errors.js';
import { parseJson } from './json.js';
import { parseNdjson } from './ndjson.js';
import type { ParsedRecord } from './record.js';
import { parseXlsx } from './xlsx.js';
import { expansionLimit, Zip } from './zip.js';

type TextFormat = Exclude<Format, 'xlsx'>;

// report: how a CSV file was read (its dialect, header, skipped lines), filled in as it is read.
const PARSERS: Record<
  TextFormat,
  (text: AsyncIterable<string>, limits: InputLimits, dialect: CsvDialect, report?: CsvReport) => AsyncGenerator<ParsedRecord>
> = {
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

/**
 * How a stored file is read: its encoding (default: UTF-8, or UTF-16 by its BOM), a CSV's
 * dialect, a workbook's sheet; and how its text values are typed (a locale hint such as
 * `de-DE`, the order of a date's day and month, the values that mean NULL).
 */
export type ReadOptions = CsvDialect & {
  encoding?: Encoding;
  sheet?: string;
  locale?: string;
  dateOrder?: 'DMY' | 'MDY';
  nullValues?: string[];
};

const FORMAT_BY_EXTENSION: Record<string, Format> = {
  '.csv': 'csv',
  '.tsv': 'csv',
  '.json': 'json',
  '.ndjson': 'ndjson',
  '.jsonl': 'ndjson',
  '.xlsx': 'xlsx',
};

/**
 * The format a file's name says (`orders.csv.gz` and `orders.csv.zip` are CSV: compression
 * is recognised by the bytes), or undefined.
 */
export function formatOfName(name: string): Format | undefined {
  return FORMAT_BY_EXTENSION[extname(name.toLowerCase().replace(/(\.(gz|zst|zstd|zip))+$/, ''))];
}

// Magic numbers, on the first 4 bytes (fewer when the file is shorter).
const isGzip = (head: Buffer) => head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
const isZstd = (head: Buffer) => head.length === 4 && head.readUInt32LE(0) === 0xfd2fb528;
// A local file header, or the end of an empty zip's directory.
const isZip = (head: Buffer) => head.length === 4 && (head.readUInt32LE(0) === 0x04034b50 || head.readUInt32LE(0) === 0x06054b50);
const isOle = (head: Buffer) => head.length === 4 && head.readUInt32BE(0) === 0xd0cf11e0; // Excel 97–2003 (.xls), among others

// zlib gained zstd in Node.js 22.15 / 23.8.
const createZstdDecompress = (zlib as { createZstdDecompress?: () => Transform }).createZstdDecompress;

/**
 * The file's bytes, decompressed when they are gzip or zstd (recognised by their first bytes,
 * whatever the name): at most `limit` bytes of them, or the job fails. Progress counts the
 * bytes read from the file (compressed), so a progress bar reaches its end.
 */
async function* uncompressed(head: Buffer, file: AsyncIterable<Buffer>, limits: InputLimits): AsyncGenerator<Buffer> {
  const limit = limits.maxDecompressedBytes;
  if (!isGzip(head) && !isZstd(head)) {
    yield* file;
    return;
  }
  const kind = isGzip(head) ? 'gzip' : 'zstd';
  if (kind === 'zstd' && !createZstdDecompress) {
    throw new IngestError(
      `the file is zstd-compressed, which Node.js ${process.version} cannot read (Node.js 22.15 or later can): send it uncompressed or gzipped`,
    );
  }
  const inflate = kind === 'gzip' ? createGunzip() : createZstdDecompress!();
  let compressed = 0; // fed to the decompressor so far
  const counting = async function* () {
    for await (const chunk of file) {
      compressed += chunk.length;
      yield chunk;
    }
  };
  const feeding = pipeline(counting, inflate).catch(() => {}); // its errors come out of the reads below
  let total = 0;
  try {
    for await (const chunk of inflate as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > limit) {
        throw new IngestError(`the ${kind} file decompresses to more than MAX_DECOMPRESSED_BYTES (${limit} bytes): nothing of it was kept`);
      }
      if (total > expansionLimit(compressed, limits.maxDecompressionRatio)) {
        throw new IngestError(
          `the ${kind} file expands to more than ${limits.maxDecompressionRatio} times its compressed size (MAX_DECOMPRESSION_RATIO; a decompression bomb?): nothing of it was kept`,
        );
      }
      yield chunk;
    }
  } catch (err) {
    if (err instanceof IngestError) throw err;
    const code = (err as { code?: string }).code;
    throw new IngestError(
      code === 'Z_BUF_ERROR' || /unexpected end/i.test((err as Error).message)
        ? `the ${kind} file is cut short after ${total} decompressed bytes (truncated?)`
        : `the ${kind} file is damaged after ${total} decompressed bytes: ${(err as Error).message}`,
    );
  } finally {
    inflate.destroy();
    await feeding;
  }
}

/** The first chunk of a stream (at least 4 bytes unless the stream is shorter), and the whole stream again. */
async function peek(bytes: AsyncIterable<Buffer>): Promise<[Buffer, AsyncGenerator<Buffer>]> {
  const iterator = bytes[Symbol.asyncIterator]();
  const read: Buffer[] = [];
  let length = 0;
  let ended = false;
  while (length < 4) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    read.push(next.value);
    length += next.value.length;
  }
  const whole = (async function* () {
    try {
      yield* read;
      if (!ended) for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
    } finally {
      // Let go of the source (its file) when the reader stops early.
      if (!ended) await iterator.return?.();
    }
  })();
  return [Buffer.concat(read).subarray(0, 4), whole];
}

/** Where a job's bytes come from. */
export interface Input {
  /** The bytes as a file on this machine, when they are one (a zip is read from a file). */
  path?: string;
  /** `signal` aborts a read in flight (the job was canceled): the read throws its reason. */
  open(signal?: AbortSignal): Promise<AsyncIterable<Buffer>>;
  /** Where bytes that must be read as a file (a zip from elsewhere) are kept while the job reads them. */
  scratchDir: string;
}

/**
 * Streams the records of a stored upload, in file order, with backpressure from the caller;
 * `report` (CSV only) is filled in with how the file was read, and `found` told the text's
 * encoding (any text format; again when it changes, see decodeText).
 */
export async function* readRecords(
  input: Input,
  format: Format,
  progress: ReadProgress = { bytes: 0 },
  limits: InputLimits = DEFAULT_LIMITS,
  read: ReadOptions = {},
  report?: CsvReport,
  found?: (encoding: Encoding) => void,
): AsyncGenerator<ParsedRecord> {
  const noted = (encoding: Encoding) => {
    if (report) report.encoding = encoding;
    found?.(encoding);
  };
  const [head, bytes] = await peek(counted(await input.open(), progress));
  if (isZip(head)) {
    yield* readZip(input, bytes, format, progress, limits, read, report, noted);
    return;
  }
  if (format === 'xlsx') {
    await bytes.return(undefined);
    throw new IngestError(
      isOle(head)
        ? 'the file is an Excel 97–2003 workbook (.xls), which Intake does not read: save it as .xlsx or CSV'
        : 'the file is not an Excel workbook (.xlsx): it is not a zip',
    );
  }
  yield* PARSERS[format](decodeText(uncompressed(head, bytes, limits), read.encoding, noted), limits, read, report);
}

/**
 * The input's bytes as the text readers get them (gunzipped or unzstd'ed, within the limits),
 * before decoding; null for a zip, which is read as a file.
 */
export async function plainBytes(input: Input, limits: InputLimits, signal?: AbortSignal): Promise<AsyncIterable<Buffer> | null> {
  const [head, bytes] = await peek(await input.open(signal));
  if (isZip(head)) {
    await bytes.return(undefined);
    return null;
  }
  return uncompressed(head, bytes, limits);
}

/** A zip: an Excel workbook, or an archive of one data file read as the job's format. */
async function* readZip(
  input: Input,
  bytes: AsyncGenerator<Buffer>,
  format: Format,
  progress: ReadProgress,
  limits: InputLimits,
  read: ReadOptions,
  report: CsvReport | undefined,
  noted: (encoding: Encoding) => void,
): AsyncGenerator<ParsedRecord> {
  let path = input.path;
  let spooled: string | undefined;
  let zip: Zip | undefined;
  try {
    if (path === undefined) {
      await mkdir(input.scratchDir, { recursive: true });
      spooled = join(input.scratchDir, `spool-${randomUUID()}`);
      path = spooled;
      await pipeline(bytes, createWriteStream(spooled));
    } else await bytes.return(undefined);
    // Progress, from here on: the compressed bytes of what is read, in proportion, from 0 (the
    // bytes counted while spooling are the same file's: counting both would reach twice its size).
    const size = (await stat(path)).size;
    progress.bytes = 0;
    zip = await Zip.open(
      path,
      { limit: limits.maxDecompressedBytes, ratio: limits.maxDecompressionRatio },
      (n) => (progress.bytes = Math.min(size, progress.bytes + n)),
    );
    if (format === 'xlsx') {
      yield* parseXlsx(zip, limits, { sheet: read.sheet, header: read.header });
    } else {
      const entry = zip.dataEntry();
      const inner = formatOfName(entry.fileName);
      if (inner === 'xlsx') throw new IngestError(`the zip holds the workbook "${entry.fileName}": send the .xlsx file itself`);
      if (/\.zip$/i.test(entry.fileName))
        throw new IngestError(`the zip holds another zip ("${entry.fileName}"): send the data file, zipped once`);
      if (inner !== undefined && inner !== format) {
        throw new IngestError(
          `the zip holds "${entry.fileName}", which is ${inner.toUpperCase()}, but the job reads ${format.toUpperCase()}: submit it again with format=${inner}`,
        );
      }
      const [head, data] = await peek(zip.read(entry));
      yield* PARSERS[format](decodeText(uncompressed(head, data, limits), read.encoding, noted), limits, read, report);
    }
    progress.bytes = size;
  } finally {
    zip?.close();
    if (spooled) await rm(spooled, { force: true });
  }
}
