/**
 * Receiving a submit's bytes: a multipart upload streamed to disk (limited, hashed when an
 * Idempotency-Key asks for it), or a posted body checked record by record and stored as
 * posted. Whatever fails, nothing is left behind.
 */
import { createHash, randomUUID, type Hash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Multipart } from '@fastify/multipart';
import type { FastifyBaseLogger } from 'fastify';
import type { InputLimits } from '../formats/limits.js';
import { AppError, validationError, type ValidationIssue } from '../core/errors.js';
import { shownFileName } from '../formats/file-name.js';
import { MAX_ERRORS_LIMIT } from './schemas.js';
import { FORMATS, type Format } from '../core/job.js';
import { decodeUtf8 } from '../formats/decode.js';
import { IngestError } from '../core/errors.js';
import { parseJson } from '../formats/json.js';
import { parseNdjson } from '../formats/ndjson.js';
import { formatOfName } from '../formats/parse.js';
import type { UploadStore } from '../sources/uploads.js';

// Multipart limits: one file, and a few short fields before it (max_errors). Anything more is
// refused with 413 while it streams, and nothing is kept.
const MAX_FIELDS = 10;
const MAX_FIELD_BYTES = 1024;
export const multipartLimits = (fileSize: number) => ({
  fileSize,
  files: 1,
  fields: MAX_FIELDS,
  fieldSize: MAX_FIELD_BYTES,
  parts: MAX_FIELDS + 1,
  headerPairs: 100,
});
const tooManyFiles = () => new AppError(413, 'too_many_files', 'Send one file per upload');

/**
 * @fastify/multipart's limit errors, and the multipart parser's (busboy: a missing or wrong
 * boundary, a malformed part header, a body cut short), as the API's own.
 */
function multipartError(err: unknown): AppError | undefined {
  switch ((err as { code?: string }).code) {
    case 'FST_FILES_LIMIT':
      return tooManyFiles();
    case 'FST_PARTS_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return new AppError(413, 'too_many_fields', `Send at most ${MAX_FIELDS} form fields, before the file`);
  }
  if (err instanceof Error && !(err instanceof AppError) && /multipart|boundary|part header|end of form/i.test(err.message)) {
    return new AppError(400, 'invalid_multipart', `The multipart/form-data body is malformed: ${err.message}`);
  }
  return undefined;
}

/** The file's bytes, hashed as they pass; an error of the file comes out of them too. */
function hashed(file: Readable, hash: Hash): Readable {
  const passing = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  pipeline(file, passing).catch(() => {}); // destroys `passing` with the file's error
  return passing;
}

async function discard(uploads: UploadStore, jobId: string, log: FastifyBaseLogger): Promise<void> {
  await uploads.remove(jobId).catch((err: unknown) => log.error({ err, jobId }, 'could not remove an upload refused'));
}

/** `format` as a form field, if given. */
function formatField(raw: string | undefined): Format | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!(FORMATS as readonly string[]).includes(raw)) {
    throw validationError([{ loc: ['body', 'format'], msg: `format is one of ${FORMATS.join(', ')}`, type: 'enum' }]);
  }
  return raw as Format;
}

/** `max_errors` as a form field (text): an integer ≥ 0, default 0. */
function maxErrorsField(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 0;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value > MAX_ERRORS_LIMIT) {
    throw validationError([
      { loc: ['body', 'max_errors'], msg: `max_errors must be an integer from 0 to ${MAX_ERRORS_LIMIT}`, type: 'integer_type' },
    ]);
  }
  return value;
}

export interface ReceivedUpload<Load> {
  jobId: string;
  fileName: string;
  format: Format;
  maxErrors: number;
  /** What `load` made of the form fields sent before the file. */
  load: Load;
  size: number;
  /** With an Idempotency-Key: the hash of what was sent (file name, max_errors, bytes). */
  fingerprint?: string;
}

export interface ReceiveOptions<Load> {
  /**
   * Reads the form fields sent before the file (and the file's name), when the file begins:
   * it may throw to refuse the upload before a byte of it is stored.
   */
  load(fields: Record<string, string>, fileName: string, format: Format): Load;
  uploads: UploadStore;
  maxUploadBytes: number;
  /** max_errors given in the query string, which wins over a form field. */
  maxErrors?: number;
  /** format given in the query string, which wins over a form field. */
  format?: Format;
  /** Hash what is received, for an Idempotency-Key. */
  fingerprint: boolean;
  /** The request's socket is gone: a stream error then means the client left. */
  aborted(): boolean;
  log: FastifyBaseLogger;
}

/**
 * Streams the one file of a multipart body to the upload directory, under a new job id. Form
 * fields are read only before the file (max_errors). Returns the stored upload, or throws
 * with nothing kept.
 */
export async function receiveUpload<Load>(parts: AsyncIterable<Multipart>, options: ReceiveOptions<Load>): Promise<ReceivedUpload<Load>> {
  const { uploads, log } = options;
  const tooLarge = () =>
    new AppError(413, 'payload_too_large', `The file is larger than MAX_UPLOAD_BYTES (${options.maxUploadBytes} bytes)`);
  const fields: Record<string, string> = {};
  let stored: { jobId: string; size: number; fileName: string; format: Format; maxErrors: number; load: Load; hash?: Hash } | undefined;
  try {
    for await (const part of parts) {
      if (part.type === 'field') {
        if (part.valueTruncated)
          throw new AppError(413, 'field_too_large', `The form field "${part.fieldname}" is longer than ${MAX_FIELD_BYTES} bytes`);
        // Only fields sent before the file are read: the file is stored as it arrives.
        if (!stored) fields[part.fieldname] = String(part.value);
        continue;
      }
      if (stored) throw tooManyFiles();
      const maxErrors = options.maxErrors ?? maxErrorsField(fields.max_errors);
      if (part.fieldname !== 'file') {
        part.file.resume();
        throw new AppError(400, 'file_missing', `Send the file in a field named "file", not "${part.fieldname}"`);
      }
      // A compressed file is named by what it holds: data.csv.gz is a CSV (gunzipped as it is read).
      const fileName = shownFileName(part.filename);
      const format =
        options.format ??
        formatField(fields.format) ??
        formatOfName(part.filename) ??
        (/\.(zip|gz|zst|zstd)$/i.test(part.filename) ? 'csv' : undefined);
      if (!format) {
        part.file.resume();
        const xls = /\.xls$/i.test(part.filename) ? ' (an Excel 97–2003 .xls: save it as .xlsx or CSV)' : '';
        throw new AppError(
          415,
          'unsupported_file_type',
          `Unsupported file type "${fileName}"${xls}: send a .csv, .tsv, .json, .ndjson, .jsonl or .xlsx file (gzip, zstd or zip as well), or say format=`,
        );
      }
      let load: Load;
      try {
        load = options.load(fields, fileName, format);
      } catch (err) {
        part.file.resume();
        throw err;
      }
      const jobId = randomUUID();
      const hash = options.fingerprint
        ? createHash('sha256').update(`upload\0${fileName}\0${format}\0${maxErrors}\0${JSON.stringify(load)}\0`)
        : undefined;
      let size: number;
      try {
        size = await uploads.put(jobId, hash ? hashed(part.file, hash) : part.file);
      } catch (err) {
        if ((err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') throw tooLarge();
        if (err instanceof AppError) throw err;
        if (options.aborted() || /unexpected end|terminated early|aborted|premature close/i.test((err as Error).message)) {
          throw new AppError(400, 'upload_incomplete', 'The upload ended before the file was complete; nothing was kept');
        }
        throw err;
      }
      stored = { jobId, size, fileName, format, maxErrors, load, hash };
      // At the limit the parser stops writing and marks the stream truncated: a cut file
      // must never be ingested as if it were whole.
      if (part.file.truncated) throw tooLarge();
    }
  } catch (err) {
    if (stored) await discard(uploads, stored.jobId, log);
    throw multipartError(err) ?? err;
  }
  if (!stored) throw new AppError(400, 'file_missing', 'No file: send it in a multipart field named "file"');
  const { jobId, size, fileName, format, maxErrors, load, hash } = stored;
  if (size === 0) {
    await discard(uploads, jobId, log);
    throw new AppError(422, 'empty_file', `The file "${fileName}" is empty`);
  }
  return { jobId, fileName, format, maxErrors, load, size, fingerprint: hash?.digest('hex') };
}

/** Stores a posted body as an upload, so the worker reads every job the same way. */
export async function storeBody(uploads: UploadStore, jobId: string, body: Buffer): Promise<void> {
  await uploads.put(jobId, Readable.from([body]));
}

const bodyIssue = (msg: string, type: string): ValidationIssue => ({ loc: ['body'], msg, type });

// Bad records named in a refusal: the first ones are what a client needs to fix its body.
const SHOWN_ISSUES = 20;
// A body of up to MAX_JSON_BODY_BYTES is checked for seconds: the check gives the event loop
// back this often, so the other requests of the process are answered meanwhile.
const CHECK_SLICE_MS = 20;

/**
 * Checks posted records: the body must be strict UTF-8 (an invalid byte is named, never
 * replaced by U+FFFD) and readable as records. Single bad records (wrong shape, too deep, too
 * long) are kept in the body (the worker reports them as row errors), up to `maxErrors`; one
 * more refuses the body with 422 naming the first of them, each at its place (loc
 * ["body", index] or ["body", "records", index]; for NDJSON ["body", line]), and the check
 * stops there. Only those first few are held, whatever the body holds. A body that cannot be
 * read as records at all is refused too. Returns how many bad records the body holds.
 */
export async function checkPostedRecords(body: Buffer, format: Format, limits: InputLimits, maxErrors: number): Promise<number> {
  let text = '';
  try {
    for await (const piece of decodeUtf8([body])) text += piece;
  } catch (err) {
    if (!(err instanceof IngestError)) throw err;
    throw validationError([bodyIssue(err.message.replace('the file', 'the body'), 'utf8_invalid')]);
  }
  const shown: ValidationIssue[] = [];
  let bad = 0;
  let count = 0;
  let sliceStart = performance.now();
  const where: (string | number)[] = format === 'ndjson' ? ['body'] : text.trimStart().startsWith('{') ? ['body', 'records'] : ['body'];
  try {
    const parse = format === 'ndjson' ? parseNdjson : parseJson;
    for await (const record of parse([text], limits)) {
      if (record.error !== undefined) {
        const type = record.error.endsWith('expected a JSON object') ? 'object_type' : 'value_error';
        if (shown.length < SHOWN_ISSUES)
          shown.push({ loc: [...where, format === 'ndjson' ? record.line : count], msg: record.error, type });
        // More bad records than the job may skip: refuse now rather than fail later.
        if (++bad > maxErrors) throw validationError(shown);
      }
      count++;
      if (count % 256 === 0 && performance.now() - sliceStart > CHECK_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
    }
  } catch (err) {
    if (!(err instanceof IngestError)) throw err;
    throw validationError([bodyIssue(`the body is not valid JSON: ${err.message}`, 'json_invalid')]);
  }
  if (count === 0) throw validationError([{ loc: where, msg: 'no records: send at least one', type: 'too_short' }]);
  return bad;
}
