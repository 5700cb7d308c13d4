/** What one input may hold before its record fails (a row error) or its job does. */
export interface InputLimits {
  /** Columns of a CSV header (PostgreSQL's own limit on a table is 1600). */
  maxColumns: number;
  /** Characters in one CSV field. */
  maxFieldLength: number;
  /** Characters in one record (a CSV row, a JSON record, an NDJSON line). */
  maxRecordLength: number;
  /** Nesting of arrays and objects in one JSON record. */
  maxJsonDepth: number;
  /** Bytes a compressed (gzip) file may decompress to: past them the job fails (a decompression bomb). */
  maxDecompressedBytes: number;
  /** Times its compressed size a compressed file (or zip entry) may decompress to, beyond its first MiB (0: no bound). */
  maxDecompressionRatio: number;
}

export const DEFAULT_LIMITS: InputLimits = {
  maxColumns: 1600,
  maxFieldLength: 8 * 1024 ** 2,
  maxRecordLength: 16 * 1024 ** 2,
  maxJsonDepth: 1024,
  maxDecompressedBytes: 16 * 1024 ** 3,
  maxDecompressionRatio: 100,
};
