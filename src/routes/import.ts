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
import { findConnection } from '../storage/connections.js';
import type { NewJob } from '../storage/jobs.js';
import { errorRef, FORMATS, loadOptionProperties, MAX_ERRORS_LIMIT, type Format } from '../schemas/api.js';
import { sendJob } from './reply.js';

const importBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    source: { type: 'string', enum: ['url', 'jira'], description: 'url (default): read `url`; jira: pull the issues `jql` selects through `connection`, merged on their id' },
    connection: { type: 'string', maxLength: 100, description: 'source=jira: the id of a saved connection (POST /api/connections)' },
    jql: { type: 'string', minLength: 1, maxLength: 4000, description: 'source=jira: the issues to pull, e.g. project = ABC (no ORDER BY: Intake orders by updated)' },
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
      const key = request.headers['idempotency-key'];
      const idempotency = key ? { key, fingerprint: createHash('sha256').update(`import\0${JSON.stringify(body)}`).digest('hex') } : undefined;
      const submit = async (job: Omit<NewJob, 'jobId'>) => {
        const { row, replayed } = await submitJob({ ...deps, log: request.log }, { jobId: randomUUID(), ...job }, idempotency);
        if (replayed) reply.header('idempotent-replayed', 'true');
        return sendJob(reply, replayed ? 200 : 202, row, config.publicUrl);
      };
      if (body.source === 'jira') return submit(await jiraJob(body));
      if (body.url === undefined) throw validationError([{ loc: ['body', 'url'], msg: 'url is required (or source=jira with connection and jql)', type: 'missing' }]);
      for (const field of ['connection', 'jql'] as const) {
        if (body[field] !== undefined) throw validationError([{ loc: ['body', field], msg: `${field} is for source=jira`, type: 'value_error' }]);
      }
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
      return submit({ sourceType: source.sourceType, fileName: source.fileName, format, maxErrors: body.max_errors ?? 0, bytesTotal: null, load, sourceUrl: body.url });
    },
  );

  /** A Jira pull: its connection must exist; rows merge on the issue id into the dataset named (default jira_issues). */
  async function jiraJob(body: Record<string, unknown>): Promise<Omit<NewJob, 'jobId'>> {
    const issue = (field: string, msg: string) => validationError([{ loc: ['body', field], msg, type: 'value_error' }]);
    for (const field of ['url', 'format', 'mode', 'key', 'delimiter', 'header', 'encoding', 'sheet', 'schema_update']) {
      if (body[field] !== undefined) throw issue(field, `${field} does not apply to source=jira (issues are merged on their id)`);
    }
    const connection = typeof body.connection === 'string' && UUID.test(body.connection) ? await findConnection(deps.db, body.connection) : undefined;
    if (!connection) throw issue('connection', 'connection is the id of a saved connection (POST /api/connections)');
    const jql = typeof body.jql === 'string' ? body.jql.trim() : '';
    if (jql === '') throw issue('jql', 'jql selects the issues to pull, e.g. project = ABC');
    if (/\border\s+by\b/i.test(jql)) throw issue('jql', 'jql may not have ORDER BY: Intake pulls in order of updated, to sync incrementally');
    const load = loadOptions({ dataset: (body.dataset as string | undefined) ?? 'jira_issues', mode: 'merge', key: 'id', schema: typeof body.schema === 'object' ? JSON.stringify(body.schema) : (body.schema as string | undefined) }, null, 'ndjson', 'body');
    return {
      sourceType: 'jira_ingest',
      fileName: `${connection.name}: ${jql}`.slice(0, 255),
      format: 'ndjson',
      maxErrors: (body.max_errors as number | undefined) ?? 0,
      bytesTotal: null,
      load,
      source: { jira: { connection: connection.id, jql } },
    };
  }
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
