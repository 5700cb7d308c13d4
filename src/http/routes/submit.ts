import { createHash, randomUUID } from 'node:crypto';
import type { FastifyPluginAsyncJsonSchemaToTs, JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';
import type { FastifyReply, onRequestAsyncHookHandler } from 'fastify';
import type { Config } from '../../config.js';
import { AppError } from '../../core/errors.js';
import { multipartLimits, checkPostedRecords, receiveUpload, storeBody } from '../receive.js';
import { submitJob, type Idempotency, type SubmitDeps } from '../../jobs/submit.js';
import { LOAD_OPTION_NAMES, loadOptions } from '../../datasets/options.js';
import { errorRef, idempotencyHeaders, ingestJsonBodySchema, submitQuerySchema, uploadBodySchema, uploadQuerySchema } from '../schemas.js';
import { isTabular, type Format } from '../../core/job.js';
import { IngestError, validationError } from '../../core/errors.js';
import type { LoadOptions } from '../../datasets/options.js';
import { previewInput, unknownSchemaKeys, unknownSchemaMessage } from '../../jobs/preview.js';
import type { UploadStore } from '../../sources/uploads.js';
import type { InputLimits } from '../../formats/limits.js';
import type { NewJob } from '../../storage/jobs.js';
import type { ColumnSpec } from '../../datasets/types.js';
import { sendJob } from './reply.js';

const submitResponses = {
  200: {
    description: 'The job an earlier request with the same Idempotency-Key created (header Idempotent-Replayed: true)',
    $ref: 'SubmittedJob#',
  },
  202: { $ref: 'SubmittedJob#' },
  400: errorRef,
  413: errorRef,
  409: errorRef,
  415: errorRef,
  422: errorRef,
  503: errorRef,
};

const headersSchema = idempotencyHeaders(
  'Makes the submit safe to repeat: the same key again within 24 hours answers the job the first request created (200) and creates nothing; with a different payload, 422. 1 to 255 printable ASCII characters',
);

// Uploads in flight end as their bodies arrive, which nothing predicts.
const UPLOAD_RETRY_AFTER_SECONDS = 5;
// A refused body up to this size is read and dropped rather than cut off (see inFlightLimit).
const SMALL_REFUSED_BODY_BYTES = 64 * 1024;

/**
 * A route hook that lets at most `max` requests be received at once (each holds a connection
 * and a file being written, or its body in memory); one more is refused with 503 before its
 * body is read. `what` names the limit in the answer.
 */
export function inFlightLimit(max: number, what: string): onRequestAsyncHookHandler {
  let inFlight = 0;
  return async (request, reply) => {
    if (inFlight >= max) {
      reply.header('retry-after', String(UPLOAD_RETRY_AFTER_SECONDS));
      // A large (or unsized) body is not read: the connection closes after the answer. A small
      // one is read and dropped, so a client still writing it gets the answer, not a broken pipe.
      const length = Number(request.headers['content-length']);
      if (!(length <= SMALL_REFUSED_BODY_BYTES)) reply.header('connection', 'close');
      throw new AppError(503, 'too_many_uploads', `This server is already receiving ${max} ${what}: try again shortly`);
    }
    inFlight++;
    // A pipelined request's answer gets no 'close' if the client leaves first: its socket's counts too.
    const socket = request.raw.socket;
    const release = () => {
      reply.raw.off('close', release);
      socket.off('close', release);
      inFlight--;
    };
    reply.raw.once('close', release);
    socket.once('close', release);
  };
}

/** Declared types as the loader takes them, by column (a declared column's type, whatever else it says). */
export function declaredTargets(types: LoadOptions['types']): Map<string, ColumnSpec> {
  return new Map(Object.entries(types));
}

/**
 * A stored upload whose schema names a column its header does not have is refused (422 naming
 * the key and the file's columns) and removed: read from its head as a preview reads it. A
 * file that cannot be read is left to its job, which says why.
 */
async function checkSchemaKeys(
  upload: { jobId: string; format: Format; load: LoadOptions },
  deps: { uploads: UploadStore; limits: InputLimits },
  where: 'query' | 'body',
): Promise<void> {
  const declared = Object.keys(upload.load.types);
  if (declared.length === 0 || !isTabular(upload.format)) return;
  const input = await deps.uploads.input(upload.jobId);
  if (!input) return;
  let columns;
  try {
    ({ columns } = await previewInput(input, {
      format: upload.format,
      read: upload.load.read,
      targets: declaredTargets(upload.load.types),
      limits: deps.limits,
      maxRows: 1,
    }));
  } catch (err) {
    if (err instanceof IngestError || err instanceof AppError) return;
    throw err;
  }
  const unknown = unknownSchemaKeys(declared, columns);
  if (unknown.length === 0) return;
  await deps.uploads.remove(upload.jobId);
  throw validationError([{ loc: [where, 'schema'], msg: unknownSchemaMessage(unknown, columns), type: 'value_error' }]);
}

export const submitRoutes: FastifyPluginAsyncJsonSchemaToTs<{
  Options: Omit<SubmitDeps, 'log' | 'allowPrivate'> & { config: Config };
}> = async (app, deps) => {
  const { config } = deps;
  const submit = async (reply: FastifyReply, job: NewJob, idempotency: Idempotency | undefined) => {
    const { row, replayed } = await submitJob(
      { ...deps, log: reply.log, allowPrivate: config.importAllowPrivate, maxDatasets: config.maxDatasets },
      job,
      idempotency,
    );
    if (replayed) reply.header('idempotent-replayed', 'true');
    return sendJob(reply, replayed ? 200 : 202, row, config.publicUrl);
  };

  app.post(
    '/api/upload',
    {
      onRequest: inFlightLimit(config.maxUploadsInFlight, 'uploads (MAX_UPLOADS_IN_FLIGHT)'),
      schema: {
        summary:
          'Upload a CSV, JSON, NDJSON or Excel (.xlsx) file, plain or compressed (gzip, zstd, zip); answers at once with the queued job',
        tags: ['submit'],
        consumes: ['multipart/form-data'],
        querystring: uploadQuerySchema,
        headers: headersSchema,
        // Checked (and documented) for multipart only: another media type gets its 415 below.
        body: { content: { 'multipart/form-data': { schema: uploadBodySchema } } },
        response: submitResponses,
      },
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
      const key = request.headers['idempotency-key'];
      const upload = await receiveUpload(request.parts({ limits: multipartLimits(config.maxUploadBytes) }), {
        uploads: deps.uploads,
        maxUploadBytes: config.maxUploadBytes,
        maxErrors: request.query.max_errors,
        format: request.query.format,
        // The query string wins over a form field of the same name.
        load: (fields, fileName, format) => {
          const given = Object.fromEntries(LOAD_OPTION_NAMES.map((name) => [name, request.query[name] ?? fields[name]]));
          const where = LOAD_OPTION_NAMES.some((name) => request.query[name] === undefined && fields[name] !== undefined)
            ? 'body'
            : 'query';
          return loadOptions(given, fileName, format, where);
        },
        fingerprint: key !== undefined,
        aborted: () => request.raw.destroyed,
        log: request.log,
      });
      const { jobId, fileName, format, maxErrors, size, load } = upload;
      await checkSchemaKeys(
        upload,
        { uploads: deps.uploads, limits: config.limits },
        request.query.schema === undefined ? 'body' : 'query',
      );
      const sourceType = format === 'csv' ? 'csv_upload' : format === 'xlsx' ? 'xlsx_upload' : 'json_upload';
      const idempotency = key && upload.fingerprint ? { key, fingerprint: upload.fingerprint } : undefined;
      return submit(reply, { jobId, sourceType, fileName, format, maxErrors, bytesTotal: size, load }, idempotency);
    },
  );

  await app.register(async (scope) => {
    // The body arrives as bytes and is read by checkPostedRecords: decoded strictly as UTF-8
    // and scanned record by record, so each record is stored as written (a number is never
    // rounded through a double) and a bad one is named. Only JSON and NDJSON are taken: a
    // text/plain body (which a web page may send cross-origin without asking) answers 415.
    // Both are limited by MAX_JSON_BODY_BYTES: large data belongs in an upload.
    scope.removeAllContentTypeParsers();
    for (const type of ['application/json', 'application/x-ndjson']) {
      scope.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit: config.maxJsonBodyBytes }, (_req, body, done) => done(null, body));
    }
    scope.withTypeProvider<JsonSchemaToTsProvider>().post(
      '/api/ingest/json',
      {
        bodyLimit: config.maxJsonBodyBytes,
        // Each holds up to MAX_JSON_BODY_BYTES in memory (and its text while it is checked).
        onRequest: inFlightLimit(config.maxJsonBodiesInFlight, 'posted bodies (MAX_JSON_BODIES_IN_FLIGHT)'),
        schema: {
          querystring: submitQuerySchema,
          summary: 'Post records as JSON (array or {"records": [...]}) or NDJSON; answers at once with the queued job',
          tags: ['submit'],
          headers: headersSchema,
          body: ingestJsonBodySchema,
          response: submitResponses,
        },
      },
      async (request, reply) => {
        // The schema documents the records; the content-type parsers above hand over the bytes.
        const body = request.body as Buffer;
        const key = request.headers['idempotency-key'];
        const maxErrors = request.query.max_errors ?? 0;
        const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(request.headers['content-type'] ?? '')?.[1]?.toLowerCase();
        if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
          throw new AppError(415, 'unsupported_media_type', `Send the body as UTF-8 (got charset=${charset.slice(0, 40)})`);
        }
        const type = request.headers['content-type']?.toLowerCase();
        if (!type) throw new AppError(415, 'unsupported_media_type', 'Send the records as application/json or application/x-ndjson');
        const format: Format = type.startsWith('application/x-ndjson') ? 'ndjson' : 'json';
        const load = loadOptions(request.query, null, format, 'query');
        await checkPostedRecords(body, format, config.limits, maxErrors);
        const jobId = randomUUID();
        await storeBody(deps.uploads, jobId, body);
        const fingerprint = key
          ? createHash('sha256')
              .update(`${format}\0${maxErrors}\0${JSON.stringify(load)}\0`)
              .update(body)
              .digest('hex')
          : '';
        return submit(
          reply,
          { jobId, sourceType: 'json_api', fileName: null, format, maxErrors, bytesTotal: body.length, load },
          key ? { key, fingerprint } : undefined,
        );
      },
    );
  });
};
