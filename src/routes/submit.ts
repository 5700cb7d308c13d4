import { createHash, randomUUID, type Hash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { PassThrough, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config, InputLimits } from '../config.js';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import type { JobEvents } from '../events/job-events.js';
import { AppError, validationError, type ValidationIssue } from '../errors.js';
import { decodeUtf8 } from '../ingest/decode.js';
import { IngestError } from '../ingest/errors.js';
import { parseJson } from '../ingest/json.js';
import { parseNdjson } from '../ingest/ndjson.js';
import { partialUploadPath, uploadPath } from '../ingest/uploads.js';
import { errorRef, ingestJsonBodySchema, MAX_ERRORS_LIMIT, submitQuerySchema, uploadBodySchema, type Format } from '../schemas/jobs.js';
import type { Db } from '../storage/db.js';
import { claimKey, findJob, findKey, insertJob, payloadJson, toPayload, type JobRow, type NewJob } from '../storage/jobs.js';

export interface SubmitDeps {
  db: Db;
  dispatcher: Dispatcher;
  events: JobEvents;
  config: Config;
}

const FORMAT_BY_EXTENSION: Record<string, Format> = { '.csv': 'csv', '.json': 'json', '.ndjson': 'ndjson', '.jsonl': 'ndjson' };

const submitResponses = {
  200: { description: 'The job an earlier request with the same Idempotency-Key created (header Idempotent-Replayed: true)', $ref: 'SubmittedJob#' },
  202: { $ref: 'SubmittedJob#' },
  400: errorRef,
  413: errorRef,
  415: errorRef,
  422: errorRef,
  503: errorRef,
};

/**
 * The job as a submit (or a retry) answers it: with its status URL, and Location. The status
 * URL is built on PUBLIC_URL, or relative: never from the request's Host header, which the
 * client chooses.
 */
export function sendJob(reply: FastifyReply, code: 200 | 202, row: JobRow, publicUrl: string | undefined) {
  const statusPath = `/api/job/${row.job_id}`;
  return reply
    .code(code)
    .header('location', statusPath)
    .send({ ...toPayload(row), status_url: `${publicUrl ?? ''}${statusPath}` });
}

/** A submit's Idempotency-Key and a hash of what it submitted. */
interface Idempotency {
  key: string;
  fingerprint: string;
}

/** The Idempotency-Key header, checked: 1 to 255 printable ASCII characters. */
function idempotencyKey(request: FastifyRequest): string | undefined {
  const raw = request.headers['idempotency-key'];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || !/^[\x20-\x7e]{1,255}$/.test(raw)) {
    throw validationError([{ loc: ['header', 'idempotency-key'], msg: 'Idempotency-Key must be 1 to 255 printable ASCII characters', type: 'string_pattern_mismatch' }]);
  }
  return raw;
}

class KeyTaken extends Error {}

// Multipart limits: one file, and a few short fields before it (max_errors). Anything more is
// refused with 413 while it streams, and nothing is kept.
const MAX_FIELDS = 10;
const MAX_FIELD_BYTES = 1024;
const MULTIPART_LIMITS = (fileSize: number) => ({ fileSize, files: 1, fields: MAX_FIELDS, fieldSize: MAX_FIELD_BYTES, parts: MAX_FIELDS + 1, headerPairs: 100 });
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

const idempotencyHeaderSchema = {
  type: 'object',
  properties: {
    'idempotency-key': {
      type: 'string',
      description:
        'Makes the submit safe to repeat: the same key again within 24 hours answers the job the first request created (200) and creates nothing; with a different payload, 422',
    },
  },
} as const;

function hashing(hash: Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
  });
}

/**
 * Commits the `queued` row for a stored upload (with its idempotency key, in the same
 * transaction), then dispatches it. If the row cannot be written, or the key already names a
 * job, the stored file is removed, so nothing is left half-made: a repeated key answers the
 * original job (200), or 422 if it came with another payload.
 */
async function createJob(deps: SubmitDeps, request: FastifyRequest, reply: FastifyReply, job: NewJob, idempotency?: Idempotency) {
  const { db, config } = deps;
  let row: JobRow | undefined;
  try {
    row = await insertOrReplay(db, job, idempotency);
  } finally {
    // Whatever answers the request other than the new job (an error, a replay), the upload goes.
    if (row?.job_id !== job.jobId) await rm(uploadPath(config.uploadDir, job.jobId), { force: true });
  }
  if (row.job_id !== job.jobId) {
    reply.header('idempotent-replayed', 'true');
    return sendJob(reply, 200, row, config.publicUrl);
  }
  // Live job lists show the new job at once; best effort, like every event.
  await deps.events.publish(job.jobId, payloadJson(row));
  // A failed dispatch loses nothing: the row is committed and is taken up again at start.
  await deps.dispatcher.dispatch(job.jobId).catch((err: unknown) => request.log.error({ err, jobId: job.jobId }, 'dispatch failed'));
  return sendJob(reply, 202, row, config.publicUrl);
}

/** The new job's row, or with a key already taken for the same payload, the original job's. */
async function insertOrReplay(db: Db, job: NewJob, idempotency?: Idempotency): Promise<JobRow> {
  for (let tries = 0; tries < 3; tries++) {
    try {
      return await db.transaction(async (tx) => {
        const inserted = await insertJob(tx, job);
        if (idempotency && !(await claimKey(tx, idempotency, job.jobId))) throw new KeyTaken();
        return inserted;
      });
    } catch (err) {
      if (!(err instanceof KeyTaken)) throw err;
    }
    const existing = await findKey(db, idempotency!.key);
    if (!existing) continue; // gone meanwhile (expired and swept, or its job deleted): take the key again
    if (existing.fingerprint !== idempotency!.fingerprint) {
      throw new AppError(422, 'idempotency_key_reused', 'This Idempotency-Key was used in the last 24 hours for a different request: use a new key for new data');
    }
    const original = await findJob(db, existing.job_id);
    if (original) return original;
    // deleted between the two reads: try again
  }
  throw new AppError(409, 'idempotency_key_busy', 'The Idempotency-Key is being used by another request: try again');
}

/**
 * The client's file name as stored and shown: at most 255 characters (the column's size),
 * well-formed, and with control characters (a NUL PostgreSQL cannot store, escape sequences
 * that would reach a terminal) replaced by U+FFFD.
 */
function displayName(name: string): string {
  return name.slice(0, 255).toWellFormed().replace(/[\u0000-\u001f\u007f-\u009f]/g, '\ufffd');
}

async function discard(path: string, log: FastifyBaseLogger): Promise<void> {
  await rm(path, { force: true }).catch((err: unknown) => log.error({ err, path }, 'could not remove a partial upload'));
}

/** `max_errors` given as text (a query parameter or a form field): an integer ≥ 0, default 0. */
function maxErrorsFrom(raw: unknown, where: 'query' | 'body'): number {
  if (raw === undefined || raw === '') return 0;
  const value = Number(raw);
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value > MAX_ERRORS_LIMIT) {
    throw validationError([{ loc: [where, 'max_errors'], msg: `max_errors must be an integer from 0 to ${MAX_ERRORS_LIMIT}`, type: 'integer_type' }]);
  }
  return value;
}

export async function submitRoutes(app: FastifyInstance, deps: SubmitDeps): Promise<void> {
  const { config } = deps;
  await mkdir(config.uploadDir, { recursive: true });

  app.post(
    '/api/upload',
    {
      schema: {
        summary: 'Upload a CSV, JSON or NDJSON file; answers at once with the queued job',
        tags: ['submit'],
        consumes: ['multipart/form-data'],
        headers: idempotencyHeaderSchema,
        body: uploadBodySchema,
        response: submitResponses,
      },
      // The file is streamed, not parsed into request.body, so there is no body to validate
      // here; the schema above documents it. Its checks are made while it streams.
      validatorCompiler: () => () => true,
    },
    async (request, reply) => {
      if (!request.headers['content-type']) {
        throw new AppError(400, 'file_missing', 'No file: send it as multipart/form-data in a field named "file"');
      }
      if (!request.isMultipart()) {
        throw new AppError(415, 'unsupported_media_type', 'Send the file as multipart/form-data in a field named "file"');
      }
      // RFC 2046 allows 70 characters; the multipart parser fails on much longer ones.
      const boundary = /;\s*boundary\s*=\s*"?([^";]*)/i.exec(request.headers['content-type'])?.[1];
      if (boundary !== undefined && boundary.length > 70) {
        throw new AppError(400, 'invalid_multipart', 'The multipart boundary is longer than 70 characters (RFC 2046)');
      }
      const key = idempotencyKey(request);
      const query = request.query as Record<string, unknown>;
      const unknown = Object.keys(query).find((name) => name !== 'max_errors');
      if (unknown) throw validationError([{ loc: ['query', unknown], msg: `unknown parameter "${unknown}"`, type: 'additionalProperties' }]);
      const tooLarge = () => new AppError(413, 'payload_too_large', `The file is larger than MAX_UPLOAD_BYTES (${config.maxUploadBytes} bytes)`);
      const fields: Record<string, string> = {};
      let stored: { jobId: string; partial: string; fileName: string; format: Format; maxErrors: number; hash?: Hash } | undefined;
      try {
        for await (const part of request.parts({ limits: MULTIPART_LIMITS(config.maxUploadBytes) })) {
          if (part.type === 'field') {
            if (part.valueTruncated) {
              throw new AppError(413, 'field_too_large', `The form field "${part.fieldname}" is longer than ${MAX_FIELD_BYTES} bytes`);
            }
            // Only fields sent before the file are read: the file is stored as it arrives.
            if (!stored) fields[part.fieldname] = String(part.value);
            continue;
          }
          if (stored) throw tooManyFiles();
          // max_errors as a query parameter, or as a form field sent before the file.
          const maxErrors = query.max_errors !== undefined ? maxErrorsFrom(query.max_errors, 'query') : maxErrorsFrom(fields.max_errors, 'body');
          if (part.fieldname !== 'file') {
            part.file.resume();
            throw new AppError(400, 'file_missing', `Send the file in a field named "file", not "${part.fieldname}"`);
          }
          const format = FORMAT_BY_EXTENSION[extname(part.filename).toLowerCase()];
          const fileName = displayName(part.filename);
          if (!format) {
            part.file.resume();
            throw new AppError(415, 'unsupported_file_type', `Unsupported file type "${fileName}": send a .csv, .json, .ndjson or .jsonl file`);
          }
          const jobId = randomUUID();
          const partial = partialUploadPath(config.uploadDir, jobId);
          const out = createWriteStream(partial);
          // With an Idempotency-Key, what was sent is hashed on its way to disk.
          const hash = key ? createHash('sha256').update(`upload\0${fileName}\0${maxErrors}\0`) : undefined;
          try {
            await pipeline(part.file, hash ? hashing(hash) : new PassThrough(), out);
          } catch (err) {
            // The file is opened asynchronously: let the stream finish opening and close before
            // removing it, or its late open would create the file again after the removal.
            if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
            await discard(partial, request.log);
            if ((err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') throw tooLarge();
            if (request.raw.destroyed || /unexpected end|terminated early|aborted/i.test((err as Error).message)) {
              throw new AppError(400, 'upload_incomplete', 'The upload ended before the file was complete; nothing was kept');
            }
            throw err;
          }
          stored = { jobId, partial, fileName, format, maxErrors, hash };
          // At the limit the parser stops writing and marks the stream truncated: a cut file
          // must never be ingested as if it were whole.
          if (part.file.truncated) throw tooLarge();
        }
      } catch (err) {
        if (stored) await discard(stored.partial, request.log);
        throw multipartError(err) ?? err;
      }
      if (!stored) throw new AppError(400, 'file_missing', 'No file: send it in a multipart field named "file"');
      const { jobId, partial, fileName, format, maxErrors, hash } = stored;
      if ((await stat(partial)).size === 0) {
        await discard(partial, request.log);
        throw new AppError(422, 'empty_file', `The file "${fileName}" is empty`);
      }
      const { size } = await stat(partial);
      await rename(partial, uploadPath(config.uploadDir, jobId));
      const sourceType = format === 'csv' ? 'csv_upload' : 'json_upload';
      const idempotency = key && hash ? { key, fingerprint: hash.digest('hex') } : undefined;
      return createJob(deps, request, reply, { jobId, sourceType, fileName, format, maxErrors, bytesTotal: size }, idempotency);
    },
  );

  await app.register(async (scope) => {
    // The body arrives as bytes and is read here: decoded strictly as UTF-8 and scanned record
    // by record, so each record is stored as written (a number is never rounded through a
    // double) and a bad one is named. Only JSON and NDJSON are taken: a text/plain body (which
    // a web page may send cross-origin without asking) answers 415. Both are limited by
    // MAX_JSON_BODY_BYTES: large data belongs in an upload.
    scope.removeAllContentTypeParsers();
    for (const type of ['application/json', 'application/x-ndjson']) {
      scope.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit: config.maxJsonBodyBytes }, (_req, body, done) => done(null, body));
    }
    scope.post<{ Body: Buffer; Querystring: { max_errors: number } }>(
      '/api/ingest/json',
      {
        bodyLimit: config.maxJsonBodyBytes,
        schema: {
          querystring: submitQuerySchema,
          summary: 'Post records as JSON (array or {"records": [...]}) or NDJSON; answers at once with the queued job',
          tags: ['submit'],
          headers: idempotencyHeaderSchema,
          body: ingestJsonBodySchema,
          response: submitResponses,
        },
      },
      async (request, reply) => {
        const key = idempotencyKey(request);
        const maxErrors = request.query.max_errors;
        const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(request.headers['content-type'] ?? '')?.[1]?.toLowerCase();
        if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
          throw new AppError(415, 'unsupported_media_type', `Send the body as UTF-8 (got charset=${charset.slice(0, 40)})`);
        }
        const type = request.headers['content-type']?.toLowerCase();
        if (!type) throw new AppError(415, 'unsupported_media_type', 'Send the records as application/json or application/x-ndjson');
        const format: Format = type.startsWith('application/x-ndjson') ? 'ndjson' : 'json';
        const text = await bodyText(request.body);
        const issues = await recordIssues(text, format, config.limits);
        // More bad records than the job may skip: refuse now rather than fail later.
        if (issues.length > maxErrors) throw validationError(issues.slice(0, 20));
        const jobId = randomUUID();
        // Stored as posted, like an upload, so the worker reads every job the same way.
        const partial = partialUploadPath(config.uploadDir, jobId);
        try {
          await writeFile(partial, request.body);
          await rename(partial, uploadPath(config.uploadDir, jobId));
        } catch (err) {
          await discard(partial, request.log);
          throw err;
        }
        const fingerprint = key ? createHash('sha256').update(`${format}\0${maxErrors}\0`).update(request.body).digest('hex') : '';
        return createJob(
          deps,
          request,
          reply,
          { jobId, sourceType: 'json_api', fileName: null, format, maxErrors, bytesTotal: request.body.length },
          key ? { key, fingerprint } : undefined,
        );
      },
    );
  });
}

const bodyIssue = (msg: string, type: string): ValidationIssue => ({ loc: ['body'], msg, type });

/** The body as text: strict UTF-8 (an invalid byte is named, never replaced by U+FFFD). */
async function bodyText(body: Buffer): Promise<string> {
  let text = '';
  try {
    for await (const piece of decodeUtf8([body])) text += piece;
  } catch (err) {
    if (!(err instanceof IngestError)) throw err;
    throw validationError([bodyIssue(err.message.replace('the file', 'the body'), 'utf8_invalid')]);
  }
  return text;
}

/**
 * What is wrong with the posted records, each at its place (loc ["body", index] or
 * ["body", "records", index]; for NDJSON ["body", line]). Bad records are kept (the worker
 * reports them as row errors) so that a job with `max_errors` can skip them; a body that
 * cannot be read as records at all is refused here.
 */
async function recordIssues(text: string, format: Format, limits: InputLimits): Promise<ValidationIssue[]> {
  const issues: ValidationIssue[] = [];
  let count = 0;
  const where: (string | number)[] = format === 'ndjson' ? ['body'] : text.trimStart().startsWith('{') ? ['body', 'records'] : ['body'];
  try {
    const parse = format === 'ndjson' ? parseNdjson : parseJson;
    for await (const record of parse([text], limits)) {
      if (record.error !== undefined) {
        const type = record.error.endsWith('expected a JSON object') ? 'object_type' : 'value_error';
        issues.push({ loc: [...where, format === 'ndjson' ? record.line : count], msg: record.error, type });
      }
      count++;
    }
  } catch (err) {
    if (!(err instanceof IngestError)) throw err;
    throw validationError([bodyIssue(`the body is not valid JSON: ${err.message}`, 'json_invalid')]);
  }
  if (count === 0) throw validationError([{ loc: where, msg: 'no records: send at least one', type: 'too_short' }]);
  return issues;
}
