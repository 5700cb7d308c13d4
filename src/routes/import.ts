import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts';
import { createHash, randomUUID } from 'node:crypto';
import type { Config } from '../config.js';
import { loadOptions } from '../datasets/options.js';
import { AppError, validationError } from '../errors.js';
import { IngestError } from '../ingest/errors.js';
import { AddressRefused, checkImportHost, isPublicAddress } from '../ingest/fetch.js';
import { importSource, importSettings } from '../ingest/imports.js';
import { formatOfName } from '../ingest/parse.js';
import { submitJob, type SubmitDeps } from '../jobs/submit.js';
import { errorRef, FORMATS, loadOptionProperties, MAX_ERRORS_LIMIT, type Format } from '../schemas/api.js';
import { sendJob } from './reply.js';

const importBodySchema = {
  type: 'object',
  required: ['url'],
  additionalProperties: false,
  properties: {
    url: { type: 'string', minLength: 1, maxLength: 4096, description: 'https://…, http://… or s3://bucket/key: the worker reads it each time the job runs' },
    format: { type: 'string', enum: FORMATS, description: 'csv, json, ndjson or xlsx. Default: from the URL path (orders.csv.gz …), else csv' },
    max_errors: { type: 'integer', minimum: 0, maximum: MAX_ERRORS_LIMIT, default: 0, description: 'Bad rows to skip and report before the job fails' },
    ...loadOptionProperties,
    schema: { type: ['string', 'object'], description: loadOptionProperties.schema.description },
    header: { type: ['string', 'boolean'], description: loadOptionProperties.header.description },
  },
} as const;

export const importRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: Omit<SubmitDeps, 'log'> & { config: Config } }> = async (app, deps) => {
  const { config } = deps;
  const settings = importSettings(config);
  app.post(
    '/api/import',
    {
      schema: {
        summary: 'Import a file by URL (https, or s3://bucket/key): answers at once with the queued job, whose worker streams the file itself',
        tags: ['submit'],
        body: importBodySchema,
        headers: {
          type: 'object',
          properties: { 'idempotency-key': { type: 'string', minLength: 1, maxLength: 255, pattern: '^[ -~]+$', description: 'Makes the import safe to repeat (see POST /api/upload)' } },
        },
        response: { 200: { $ref: 'SubmittedJob#' }, 202: { $ref: 'SubmittedJob#' }, 400: errorRef, 409: errorRef, 415: errorRef, 422: errorRef, 503: errorRef },
      },
    },
    async (request, reply) => {
      const body = request.body;
      let source;
      try {
        source = importSource(body.url, settings);
        if (source.sourceType === 'url_import' && !settings.allowPrivate) await checkImportHost(source.url, { allowed: isPublicAddress });
      } catch (err) {
        if (err instanceof AddressRefused) throw new AppError(422, 'import_refused', err.message);
        if (err instanceof IngestError) throw validationError([{ loc: ['body', 'url'], msg: err.message, type: 'value_error' }]);
        throw err;
      }
      const format: Format = body.format ?? formatOfName(source.baseName) ?? 'csv';
      const raw = { ...body, schema: typeof body.schema === 'object' ? JSON.stringify(body.schema) : body.schema };
      const load = loadOptions(raw, source.baseName || source.url.hostname, format, 'body');
      const key = request.headers['idempotency-key'];
      const jobId = randomUUID();
      const { row, replayed } = await submitJob(
        { ...deps, log: request.log },
        { jobId, sourceType: source.sourceType, fileName: source.fileName, format, maxErrors: body.max_errors ?? 0, bytesTotal: null, load, sourceUrl: body.url },
        key ? { key, fingerprint: createHash('sha256').update(`import\0${JSON.stringify(body)}`).digest('hex') } : undefined,
      );
      if (replayed) reply.header('idempotent-replayed', 'true');
      return sendJob(reply, replayed ? 200 : 202, row, config.publicUrl);
    },
  );
};
