import { basename } from 'node:path';
import yauzl, { type Entry, type ZipFile } from 'yauzl';
import { IngestError } from '../core/errors.js';

// A zip's table of contents is read whole: this many entries at most.
const MAX_ENTRIES = 10_000;
// A part read whole (a workbook's rels, styles): this many bytes at most.
const MAX_PART_BYTES = 64 * 1024 ** 2;

/** Files a zip tool adds beside the data, never data themselves. */
const isClutter = (name: string) =>
  name.endsWith('/') || name.startsWith('__MACOSX/') || basename(name).startsWith('.') || basename(name) === 'Thumbs.db';

/**
 * A zip file on disk, read by entry (yauzl: the central directory, then each entry's bytes as
 * they inflate). Sizes are checked against the directory as the bytes come, and against
 * `limit` (MAX_DECOMPRESSED_BYTES), so a zip that lies about its sizes or expands without
 * end stops there.
 */
// Bytes any compressed input may expand to whatever its ratio: a small file of very repetitive
// data (a sparse CSV) is no threat at this size.
const RATIO_FREE_BYTES = 1024 ** 2;

/**
 * The bytes a compressed input of `compressed` bytes may decompress to under
 * MAX_DECOMPRESSION_RATIO (`ratio`; 0: no bound): a few hundred KB that expand to gigabytes
 * (millions of rows) are a decompression bomb, however far below MAX_DECOMPRESSED_BYTES.
 */
export function expansionLimit(compressed: number, ratio: number): number {
  return ratio > 0 ? Math.max(RATIO_FREE_BYTES, compressed * ratio) : Infinity;
}

export class Zip {
  private constructor(
    private readonly file: ZipFile,
    readonly entries: Entry[],
    private readonly limit: number,
    private readonly ratio: number,
    private readonly onRead?: (compressedBytes: number) => void,
  ) {}

  /**
   * `limit` bounds what an entry decompresses to (MAX_DECOMPRESSED_BYTES), and `ratio` how many
   * times its compressed size (MAX_DECOMPRESSION_RATIO, see expansionLimit). `onRead` learns, as
   * each entry is read, how many compressed bytes each chunk stood for (for progress).
   */
  static async open(
    path: string,
    { limit, ratio }: { limit: number; ratio: number },
    onRead?: (compressedBytes: number) => void,
  ): Promise<Zip> {
    let file: ZipFile;
    try {
      file = await yauzl.openPromise(path, { lazyEntries: true, autoClose: false, strictFileNames: false, validateEntrySizes: true });
    } catch (err) {
      throw new IngestError(`the file is not a readable zip: ${(err as Error).message}`);
    }
    const entries: Entry[] = [];
    try {
      for await (const entry of file.eachEntry()) {
        if (entries.length >= MAX_ENTRIES) throw new IngestError(`the zip holds more than ${MAX_ENTRIES} entries`);
        entries.push(entry);
      }
    } catch (err) {
      file.close();
      throw err instanceof IngestError ? err : new IngestError(`the zip's table of contents is damaged: ${(err as Error).message}`);
    }
    return new Zip(file, entries, limit, ratio, onRead);
  }

  find(name: string): Entry | undefined {
    return this.entries.find((entry) => entry.fileName === name);
  }

  /** The one data file of a zip that holds a single file (beside a zip tool's clutter). */
  dataEntry(): Entry {
    const data = this.entries.filter((entry) => !isClutter(entry.fileName));
    if (data.length === 1) return data[0]!;
    if (data.length === 0) throw new IngestError('the zip holds no data file');
    if (this.find('xl/workbook.xml') && this.find('[Content_Types].xml')) {
      throw new IngestError('the file is an Excel workbook: name it .xlsx, or submit it with format=xlsx');
    }
    const names = data.slice(0, 5).map((entry) => entry.fileName);
    throw new IngestError(
      `the zip holds ${data.length} files (${names.join(', ')}${data.length > 5 ? ', …' : ''}): send a zip of one data file, or the files one by one`,
    );
  }

  /** An entry's bytes as they inflate. */
  async *read(entry: Entry): AsyncGenerator<Buffer> {
    if (entry.isEncrypted()) throw new IngestError(`"${entry.fileName}" in the zip is encrypted`);
    if (!entry.canDecodeFileData())
      throw new IngestError(
        `"${entry.fileName}" in the zip uses compression method ${entry.compressionMethod}: only stored and deflate are read`,
      );
    if (entry.uncompressedSize > this.limit) throw this.tooLarge(entry);
    let stream;
    try {
      stream = await this.file.openReadStreamPromise(entry);
    } catch (err) {
      throw new IngestError(`"${entry.fileName}" in the zip cannot be read: ${(err as Error).message}`);
    }
    let total = 0;
    const ratio = entry.uncompressedSize > 0 ? entry.compressedSize / entry.uncompressedSize : 0;
    // The entry's compressed size bounds the bytes read for it (yauzl reads no more).
    const expansion = expansionLimit(entry.compressedSize, this.ratio);
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (total > this.limit) throw this.tooLarge(entry);
        if (total > expansion)
          throw new IngestError(
            `"${entry.fileName}" in the zip expands to more than ${this.ratio} times its compressed size (MAX_DECOMPRESSION_RATIO; a decompression bomb?): nothing of it was kept`,
          );
        this.onRead?.(Math.round(chunk.length * ratio));
        yield chunk;
      }
    } catch (err) {
      if (err instanceof IngestError) throw err;
      throw new IngestError(`"${entry.fileName}" in the zip is damaged after ${total} bytes: ${(err as Error).message}`);
    } finally {
      stream.destroy();
    }
  }

  /** A small entry (a workbook's parts but its sheets and strings) as text, at most 64 MiB. */
  async text(entry: Entry): Promise<string> {
    if (entry.uncompressedSize > MAX_PART_BYTES)
      throw new IngestError(`"${entry.fileName}" in the zip is larger than ${MAX_PART_BYTES} bytes`);
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of this.read(entry)) {
      total += chunk.length;
      if (total > MAX_PART_BYTES) throw new IngestError(`"${entry.fileName}" in the zip is larger than ${MAX_PART_BYTES} bytes`);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  private tooLarge(entry: Entry): IngestError {
    return new IngestError(
      `"${entry.fileName}" in the zip decompresses to more than MAX_DECOMPRESSED_BYTES (${this.limit} bytes): nothing of it was kept`,
    );
  }

  close(): void {
    this.file.close();
  }
}
