import { PassThrough } from 'node:stream';
import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts';
import { AppError, validationError } from '../../core/errors.js';
import { datasetNameProblem } from '../../datasets/names.js';
import { errorRef } from '../schemas.js';
import { csvField, excelSafe, MAX_EXPORTS, writeRows } from './export.js';
import {
  datasetColumns,
  deleteDataset,
  findDataset,
  listDatasetRows,
  listDatasets,
  readDataset,
  type DatasetColumn,
  type DatasetRow,
  EXPORT_APPLICATION_NAME,
} from '../../storage/datasets.js';
import { apiTransaction, type Db, type Queryable } from '../../storage/db.js';

export interface DatasetRouteDeps {
  db: Db;
  datasetSchema: string;
  /** An export whose client takes nothing for this long is cut off (its transaction and slot freed). */
  exportIdleTimeoutMs: number;
}

const nameParamsSchema = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', maxLength: 200, description: 'The dataset name' } },
} as const;

const listQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
    cursor: { type: 'string', maxLength: 200, description: 'next_cursor of the previous page' },
  },
} as const;

const MAX_ROW_ID = 9_223_372_036_854_775_807n;

const rowsQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
    cursor: { type: 'string', pattern: '^(0|[1-9][0-9]{0,18})$', description: 'next_cursor of the previous page' },
  },
} as const;

const exportQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    format: { type: 'string', enum: ['csv', 'ndjson'], default: 'csv' },
    excel_safe: {
      type: 'boolean',
      default: false,
      description:
        "CSV only: a field a spreadsheet would run as a formula (starting with =, +, -, @, a tab or a carriage return, other than a plain number) is written with a leading ' (OWASP CSV injection guidance), and control characters other than tabs and line breaks as \\u{…}. The file then no longer holds the values exactly as stored.",
    },
  },
} as const;

// Rows read per statement of an export.
const EXPORT_BATCH = 5000;

const datasetNotFound = (name: string) => new AppError(404, 'dataset_not_found', `No dataset named "${name}"`);

/** A dataset as the API shows it. */
function datasetJson(row: DatasetRow, columns: DatasetColumn[]) {
  return {
    name: row.name,
    columns: columns.map((c) => ({ name: c.name, type: c.type, original_name: c.original_name })),
    row_count: row.row_count,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    last_job_id: row.last_job_id,
  };
}

/**
 * The datasets: list, one with its columns, its rows (keyset pages), an export, a delete. Row
 * values are sent as PostgreSQL writes them into JSON: bigint and numeric as JSON numbers with
 * every digit (beyond 2^53 a client needs a parser that keeps them, such as
 * JSON.parse with a reviver reading the source text, or json-bigint), times as ISO 8601.
 */
export const datasetRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: DatasetRouteDeps }> = async (
  app,
  { db, datasetSchema, exportIdleTimeoutMs },
) => {
  let exports = 0;

  /** The dataset named in the path, with its columns, or a 404 (a name no dataset can have is one too). */
  async function datasetOf(name: string, reader: Queryable = db): Promise<{ row: DatasetRow; columns: DatasetColumn[] }> {
    if (datasetNameProblem(name)) throw datasetNotFound(name.slice(0, 63));
    const row = await findDataset(reader, name);
    if (!row) throw datasetNotFound(name);
    return { row, columns: await datasetColumns(reader, datasetSchema, name) };
  }

  app.get(
    '/api/datasets',
    {
      schema: {
        summary: 'The datasets, by name: columns (type and name as the input wrote it), rows, when created and last loaded, the last job',
        tags: ['datasets'],
        querystring: listQuerySchema,
        response: { 200: { $ref: 'DatasetList#' }, 422: errorRef, 503: errorRef },
      },
    },
    async (request) => {
      const { limit, cursor } = request.query;
      const rows = await listDatasets(db, cursor, limit + 1);
      const page = rows.slice(0, limit);
      const results = [];
      for (const row of page) results.push(datasetJson(row, await datasetColumns(db, datasetSchema, row.name)));
      return { results, next_cursor: rows.length > limit ? page.at(-1)!.name : null };
    },
  );

  app.get(
    '/api/datasets/:name',
    {
      schema: {
        summary: 'One dataset: its columns, rows, when created and last loaded, the last job',
        tags: ['datasets'],
        params: nameParamsSchema,
        response: { 200: { $ref: 'Dataset#' }, 404: errorRef, 503: errorRef },
      },
    },
    async (request) => {
      const { row, columns } = await datasetOf(request.params.name);
      return datasetJson(row, columns);
    },
  );

  app.get(
    '/api/datasets/:name/rows',
    {
      schema: {
        summary: "A dataset's rows in the order they arrived, keyset-paged",
        description:
          'Values as JSON: bigint and numeric as numbers with every digit (beyond 2^53, parse them with a parser that keeps digits), times in ISO 8601.',
        tags: ['datasets'],
        params: nameParamsSchema,
        querystring: rowsQuerySchema,
        response: { 200: { $ref: 'RowPage#' }, 404: errorRef, 422: errorRef, 503: errorRef },
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      const { limit, cursor } = request.query;
      // The pattern takes 19 digits; a BIGINT (_intake_id) holds up to MAX_ROW_ID.
      if (cursor !== undefined && BigInt(cursor) > MAX_ROW_ID) {
        throw validationError([
          { loc: ['query', 'cursor'], msg: 'cursor is not one this API gave out: use next_cursor as it is', type: 'value_error' },
        ]);
      }
      await datasetOf(name); // a 404 for a dataset Intake does not have
      const rows = await listDatasetRows(db, datasetSchema, name, cursor ?? '0', limit + 1);
      const page = rows.slice(0, limit);
      const next = rows.length > limit ? JSON.stringify(page.at(-1)![0]) : 'null';
      // Each row's JSON as PostgreSQL wrote it: parsed here, a long number would be rounded.
      return reply
        .type('application/json; charset=utf-8')
        .send(`{"results":[${page.map(([, json]) => json).join(',')}],"next_cursor":${next}}`);
    },
  );

  app.get(
    '/api/datasets/:name/export',
    {
      schema: {
        summary: 'Every row of a dataset, streamed as CSV (a header of column names; NULL as an empty field) or NDJSON',
        description: `One consistent view of the dataset on PostgreSQL. At most ${MAX_EXPORTS} exports run at once per process; more answer 429. A client that takes nothing for EXPORT_IDLE_TIMEOUT_MS is cut off, and a load that must drop or alter the dataset's table cuts off the exports reading it: the answer then ends without its last chunk.`,
        tags: ['datasets'],
        params: nameParamsSchema,
        querystring: exportQuerySchema,
        response: {
          200: { description: 'Every row, streamed: text/csv or application/x-ndjson' },
          404: errorRef,
          422: errorRef,
          429: errorRef,
          503: errorRef,
        },
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      const { format, excel_safe: excelSafeQuery } = request.query;
      const field = format === 'csv' && excelSafeQuery ? (value: string | null) => csvField(excelSafe(value)) : csvField;
      await datasetOf(name); // a 404 before the stream starts
      if (exports >= MAX_EXPORTS)
        throw new AppError(429, 'too_many_exports', `${MAX_EXPORTS} exports are running: try again when one has finished`);
      exports++;
      const out = new PassThrough();
      const write = async (reader: Queryable) => {
        const columns = await datasetColumns(reader, datasetSchema, name);
        const batches = readDataset(reader, datasetSchema, name, columns, EXPORT_BATCH, format === 'ndjson');
        await writeRows(
          out,
          format,
          columns.map((c) => c.name),
          batches,
          exportIdleTimeoutMs,
          field,
        );
      };
      // PostgreSQL: one snapshot for the whole export. PGlite is one connection, which a long
      // transaction would hold from every other request: it reads statement by statement.
      const run =
        db.kind === 'postgres'
          ? db.transaction(async (tx) => {
              await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
              // Named, so that a load which must drop or alter the table ends it (publishStage)
              // rather than wait for it; and ended by PostgreSQL too if this process stops tending it.
              await tx.query(
                `SELECT set_config('application_name', $1, true), set_config('idle_in_transaction_session_timeout', $2, true)`,
                [EXPORT_APPLICATION_NAME, String(2 * exportIdleTimeoutMs)],
              );
              await write(tx);
            })
          : write(db);
      run.then(
        () => out.end(),
        (err: unknown) => {
          request.log.warn({ err, dataset: name }, 'export broke off');
          out.destroy(err as Error);
        },
      );
      run.finally(() => exports--).catch(() => {});
      return reply
        .type(format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8')
        .header('content-disposition', `attachment; filename="${name}.${format}"`)
        .send(out);
    },
  );

  app.delete(
    '/api/datasets/:name',
    {
      schema: {
        summary: 'Drop a dataset and its table (409 while a job that writes it is queued or running)',
        tags: ['datasets'],
        params: nameParamsSchema,
        response: { 204: { description: 'Deleted', type: 'null' }, 404: errorRef, 409: errorRef, 503: errorRef },
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      if (datasetNameProblem(name)) throw datasetNotFound(name.slice(0, 63));
      const outcome = await apiTransaction(db, (tx) => deleteDataset(tx, datasetSchema, name));
      if (outcome === 'missing') throw datasetNotFound(name);
      if (outcome === 'busy')
        throw new AppError(
          409,
          'dataset_busy',
          `A job that writes dataset "${name}" is queued or running: cancel it or wait for it to end`,
        );
      return reply.code(204).send(null);
    },
  );
};
