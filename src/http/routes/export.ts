import type { PassThrough } from 'node:stream';
import type { TextRow } from '../../storage/db.js';

/** Exports at once per process, of each kind: each holds a connection for its whole length on PostgreSQL, for one consistent view. */
export const MAX_EXPORTS = 4;

/** One CSV field: quoted when it holds a delimiter, a quote, a line break or edge spaces; NULL is empty, '' is "". */
export function csvField(value: string | null): string {
  if (value === null) return '';
  if (value === '' || /[",\r\n]/.test(value) || value.trim() !== value) return `"${value.replaceAll('"', '""')}"`;
  return value;
}

// A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(…), +cmd|…);
// a plain number is left alone so that negative numbers stay numbers.
const FORMULA_START = /^[=+\-@\t\r]/;
const PLAIN_NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
// Control characters a terminal or spreadsheet may act on (escape sequences), but not tab or line breaks.
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/g;

/** A value made safe to open in a spreadsheet: formulas made text, control characters escaped. */
export function excelSafe(value: string | null): string | null {
  if (value === null) return null;
  const escaped = value.replace(CONTROL, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
  return FORMULA_START.test(escaped) && !PLAIN_NUMBER.test(escaped) ? `'${escaped}` : escaped;
}

/**
 * Resolves when the stream can take more, or is gone; rejects when it has taken nothing for
 * `timeoutMs` (a client that stopped reading would hold the export's slot and transaction).
 */
export function drained(stream: PassThrough, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(timer);
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    timer = setTimeout(() => {
      stream.off('drain', done);
      stream.off('close', done);
      reject(new Error(`the client took nothing for ${timeoutMs} ms (EXPORT_IDLE_TIMEOUT_MS): export cut off`));
    }, timeoutMs);
    stream.once('drain', done);
    stream.once('close', done);
  });
}

/**
 * Writes an export's rows as the client takes them: for CSV a header of `names`, then each row's
 * fields (through `field`); for NDJSON each row's one JSON text, a line each. Stops when the
 * client has gone.
 */
export async function writeRows(
  out: PassThrough,
  format: 'csv' | 'ndjson',
  names: string[],
  batches: AsyncIterable<TextRow[]>,
  idleMs: number,
  field: (value: string | null) => string = csvField,
): Promise<void> {
  if (format === 'csv' && !out.write(`${names.map(field).join(',')}\r\n`)) await drained(out, idleMs);
  for await (const rows of batches) {
    if (out.destroyed) return;
    const text =
      format === 'csv' ? rows.map((row) => `${row.map(field).join(',')}\r\n`).join('') : rows.map(([json]) => `${json}\n`).join('');
    if (!out.write(text)) await drained(out, idleMs);
  }
}
