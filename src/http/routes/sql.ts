import { PassThrough } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts';
import { AppError } from '../../core/errors.js';
import { errorRef } from '../schemas.js';
import type { Db } from '../../storage/db.js';
import { answerQuery, SqlProblem, streamQuery, withQuerySlot, type SqlSettings } from '../../storage/sql-query.js';
import { MAX_EXPORTS, writeRows } from './export.js';

export interface SqlRouteDeps {
  db: Db;
  sql: SqlSettings;
  /** An export whose client takes nothing for this long is cut off (its transaction and slot freed). */
  exportIdleTimeoutMs: number;
  /** Submits `into`: the query as a job that writes a dataset (POST /api/import with source=sql). */
  submitInto: (request: FastifyRequest, reply: FastifyReply, body: SqlIntoRequest) => Promise<FastifyReply>;
}

export interface SqlIntoRequest {
  sql: string;
  into: string;
  mode?: 'append' | 'replace' | 'merge';
  key?: string;
}

const sqlProperty = { type: 'string', minLength: 1, maxLength: 100_000, description: 'One SELECT over the datasets' } as const;

const bodySchema = {
  type: 'object',
  required: ['sql'],
  additionalProperties: false,
  properties: {
    sql: sqlProperty,
    into: {
      type: 'string',
      minLength: 1,
      maxLength: 200,
      description: "Save the query's whole result as this dataset instead: answers at once with the queued job (source_type sql_query)",
    },
    mode: {
      type: 'string',
      enum: ['append', 'replace', 'merge'],
      description: 'With into: append (default), replace, or merge on key',
    },
    key: { type: 'string', maxLength: 2000, description: 'With into and mode=merge: the key column(s), comma-separated' },
  },
} as const;

const exportQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { format: { type: 'string', enum: ['csv', 'ndjson'], default: 'csv' } },
} as const;

const failed = (err: unknown): never => {
  if (err instanceof SqlProblem) throw new AppError(err.status, err.code, err.message);
  throw err;
};

/**
 * POST /api/sql: a read-only query of the datasets, for embedded mode (where nothing outside
 * Intake can open its database) and the console, run behind the guard and as the role
 * (storage/sql-query.ts). Answered as columns and arrays, cut at SQL_MAX_ROWS rows; streamed
 * whole by POST /api/sql/export; or saved as a dataset with `into` (a job).
 */
export const sqlRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: SqlRouteDeps }> = async (
  app,
  { db, sql, exportIdleTimeoutMs, submitInto },
) => {
  let exports = 0;
  app.post(
    '/api/sql',
    {
      schema: {
        summary: 'Run one read-only SELECT over the datasets (time-limited, cost-limited, row-capped), or save its result as a dataset',
        description:
          "Answers `columns` (name and PostgreSQL type, in the query's order, duplicate names as they are) and `rows` (arrays in that order; bigint and numeric as JSON numbers with every digit, times in ISO 8601 UTC). With `into`, the query runs as a job instead (source_type sql_query) that writes its whole result into that dataset, atomically: the answer is the queued job (202), as from POST /api/import.",
        tags: ['datasets'],
        body: bodySchema,
        response: {
          200: { $ref: 'SqlResult#' },
          202: { $ref: 'SubmittedJob#' },
          422: errorRef,
          429: errorRef,
          503: errorRef,
        },
      },
    },
    async (request, reply) => {
      const { sql: text, into, mode, key } = request.body;
      if (into !== undefined) return submitInto(request, reply, { sql: text, into, mode, key });
      if (mode !== undefined || key !== undefined)
        throw new AppError(422, 'validation_error', `${mode !== undefined ? 'mode' : 'key'} is for saving a query with into`);
      const answer = await withQuerySlot(() => answerQuery(db, sql, text)).catch(failed);
      // Each row's JSON as PostgreSQL wrote it: parsed here, a long number would be rounded.
      return reply
        .type('application/json; charset=utf-8')
        .send(`{"columns":${JSON.stringify(answer.columns)},"rows":[${answer.rows.join(',')}],"truncated":${answer.truncated}}`);
    },
  );

  app.post(
    '/api/sql/export',
    {
      schema: {
        summary: "Stream a read-only SELECT's whole result as CSV (a header of column names; NULL as an empty field) or NDJSON",
        description: `The same guard and limits as POST /api/sql, but no row cap: every row, read from one snapshot (a cursor) as the client takes it. At most ${MAX_EXPORTS} exports of queries run at once per process; a client that takes nothing for EXPORT_IDLE_TIMEOUT_MS is cut off. NDJSON writes each row as an object (PostgreSQL's row_to_json: a name given twice appears twice; name the columns apart with AS).`,
        tags: ['datasets'],
        body: { type: 'object', required: ['sql'], additionalProperties: false, properties: { sql: sqlProperty } },
        querystring: exportQuerySchema,
        response: {
          200: { description: 'Every row, streamed: text/csv or application/x-ndjson' },
          422: errorRef,
          429: errorRef,
          503: errorRef,
        },
      },
    },
    async (request, reply) => {
      const { format } = request.query;
      if (exports >= MAX_EXPORTS)
        throw new AppError(429, 'too_many_exports', `${MAX_EXPORTS} exports are running: try again when one has finished`);
      exports++;
      let started = false;
      try {
        const rows = streamQuery(db, sql, request.body.sql, format === 'csv' ? 'text' : 'json', { idleMs: 2 * exportIdleTimeoutMs });
        // The columns first: a query that is refused or fails to plan is a 422, before the stream starts.
        const first = await rows.next().catch(failed);
        const columns = !first.done && 'columns' in first.value ? first.value.columns : [];
        const out = new PassThrough();
        started = true;
        // The rest of the stream: its batches of rows.
        const batches = (async function* () {
          for await (const batch of rows) if ('rows' in batch) yield batch.rows;
        })();
        writeRows(
          out,
          format,
          columns.map((c) => c.name),
          batches,
          exportIdleTimeoutMs,
        )
          .then(
            () => out.end(),
            (err: unknown) => {
              request.log.warn({ err }, 'export of a query broke off');
              out.destroy(err as Error);
            },
          )
          .finally(() => {
            exports--;
            void rows.return(undefined);
          });
        return reply
          .type(format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8')
          .header('content-disposition', `attachment; filename="query.${format}"`)
          .send(out);
      } finally {
        if (!started) exports--;
      }
    },
  );
};
