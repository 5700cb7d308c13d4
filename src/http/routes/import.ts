import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts';
import { createHash, randomUUID } from 'node:crypto';
import type { Config } from '../../config.js';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ImportSettings } from '../../sources/imports.js';
import { prepareImport, type ImportRequest } from '../../jobs/import-job.js';
import { submitJob, type SubmitDeps } from '../../jobs/submit.js';
import { errorRef, idempotencyHeaders, loadOptionProperties, MAX_ERRORS_LIMIT } from '../schemas.js';
import { FORMATS } from '../../core/job.js';
import { sendJob } from './reply.js';

export const importBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    source: {
      type: 'string',
      enum: ['url', 'jira', 'sql'],
      description:
        'url (default): read `url`; jira: pull the issues `jql` selects through `connection`, merged on their id; sql: save the whole result of the SELECT `sql` (over the datasets, as POST /api/sql runs it) as `dataset`',
    },
    sql: {
      type: 'string',
      minLength: 1,
      maxLength: 100_000,
      description: 'source=sql: one SELECT over the datasets; its columns keep their types (cast them in the query)',
    },
    connection: { type: 'string', maxLength: 100, description: 'source=jira: the id of a saved connection (POST /api/connections)' },
    jql: {
      type: 'string',
      minLength: 1,
      maxLength: 4000,
      description: 'source=jira: the issues to pull, e.g. project = ABC (no ORDER BY: Intake orders by updated)',
    },
    url: {
      type: 'string',
      minLength: 1,
      maxLength: 4096,
      description: 'https://…, http://… or s3://bucket/key: the worker reads it each time the job runs',
    },
    format: {
      type: 'string',
      enum: FORMATS,
      description: 'csv, json, ndjson or xlsx. Default: from the URL path (orders.csv.gz …), else csv',
    },
    max_errors: {
      type: 'integer',
      minimum: 0,
      maximum: MAX_ERRORS_LIMIT,
      default: 0,
      description: 'Bad rows to skip and report before the job fails',
    },
    ...loadOptionProperties,
    schema: { type: ['string', 'object'], description: loadOptionProperties.schema.description },
    header: { type: ['string', 'boolean'], description: loadOptionProperties.header.description },
    header_row: { type: ['string', 'integer'], description: loadOptionProperties.header_row.description },
    skip_lines: { type: ['string', 'integer'], description: loadOptionProperties.skip_lines.description },
    null_values: {
      anyOf: [
        { type: 'string', maxLength: 2000 },
        { type: 'array', maxItems: 100, items: { type: 'string', maxLength: 100 } },
      ],
      description: `${loadOptionProperties.null_values.description} (a string, or an array of strings)`,
    },
  },
} as const;

type ImportDeps = Omit<SubmitDeps, 'log' | 'allowPrivate'> & { config: Config; imports: ImportSettings };

/** Submits an import request as a job: 202 with the queued job, or 200 with the one an Idempotency-Key already made. */
export function importSubmitter(deps: ImportDeps) {
  const { config, imports } = deps;
  return async (request: FastifyRequest, reply: FastifyReply, body: ImportRequest) => {
    const key = request.headers['idempotency-key'];
    const idempotency =
      typeof key === 'string'
        ? {
            key,
            fingerprint: createHash('sha256')
              .update(`import\0${JSON.stringify(body)}`)
              .digest('hex'),
          }
        : undefined;
    const job = await prepareImport({ db: deps.db, settings: imports }, body);
    const { row, replayed } = await submitJob(
      { ...deps, log: request.log, allowPrivate: config.importAllowPrivate, maxDatasets: config.maxDatasets },
      { jobId: randomUUID(), ...job },
      idempotency,
    );
    if (replayed) reply.header('idempotent-replayed', 'true');
    return sendJob(reply, replayed ? 200 : 202, row, config.publicUrl);
  };
}

export const importRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: ImportDeps }> = async (app, deps) => {
  const submit = importSubmitter(deps);
  app.post(
    '/api/import',
    {
      schema: {
        summary:
          'Import a file by URL (https, or s3://bucket/key), a Jira pull or a query of the datasets: answers at once with the queued job, whose worker reads the source itself',
        tags: ['submit'],
        body: importBodySchema,
        headers: idempotencyHeaders('Makes the import safe to repeat (see POST /api/upload)'),
        response: {
          200: { $ref: 'SubmittedJob#' },
          202: { $ref: 'SubmittedJob#' },
          400: errorRef,
          409: errorRef,
          415: errorRef,
          422: errorRef,
          429: errorRef,
          503: errorRef,
        },
      },
    },
    async (request, reply) => submit(request, reply, request.body),
  );
};
