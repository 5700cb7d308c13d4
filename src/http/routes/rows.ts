import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts';
import { jobNotFound, validationError } from '../../core/errors.js';
import { errorRef, jobIdParamsSchema, pageQuerySchema } from '../schemas.js';
import type { Db } from '../../storage/db.js';
import { listDatasetRecords } from '../../storage/datasets.js';
import { findJob, listErrors } from '../../storage/jobs.js';
import { jobIdOf } from './reply.js';

const MAX_RECORD_NO = 2_147_483_647; // record_no is an INTEGER

/**
 * What landed: GET /api/job/{id}/records and /errors, keyset-paginated by record_no, so the
 * last page costs what the first does. The cursor is opaque to clients (it is the last
 * record_no of the page).
 */
export const rowRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: { db: Db; datasetSchema: string } }> = async (
  app,
  { db, datasetSchema },
) => {
  /** A page of rows after the cursor, one more than asked (it tells whether another page exists). */
  async function rowsAfter<T>(
    params: { job_id: string },
    query: { cursor?: string; limit: number },
    list: (db: Db, jobId: string, after: number, limit: number) => Promise<T[]>,
  ) {
    const jobId = jobIdOf(params);
    const after = query.cursor === undefined ? -1 : Number(query.cursor);
    if (after > MAX_RECORD_NO) {
      throw validationError([
        { loc: ['query', 'cursor'], msg: 'cursor is not one this API gave out: use next_cursor as it is', type: 'value_error' },
      ]);
    }
    const rows = await list(db, jobId, after, query.limit + 1);
    if (rows.length === 0 && !(await findJob(db, jobId))) throw jobNotFound();
    return rows;
  }

  /** A job's rows in its dataset (as published: none before it completes). */
  const records = async (db: Db, jobId: string, after: number, limit: number) => {
    const job = await findJob(db, jobId);
    if (!job?.dataset) return [];
    return listDatasetRecords(db, datasetSchema, job.dataset, jobId, after, limit);
  };

  app.get(
    '/api/job/:job_id/records',
    {
      schema: {
        summary: "A job's rows in its dataset (once it has completed), in input order",
        tags: ['jobs'],
        params: jobIdParamsSchema,
        querystring: pageQuerySchema,
        response: { 200: { $ref: 'RecordPage#' }, 404: errorRef, 422: errorRef, 503: errorRef },
      },
    },
    async (request, reply) => {
      const rows = await rowsAfter(request.params, request.query, records);
      const page = rows.slice(0, request.query.limit);
      const next = rows.length > request.query.limit ? JSON.stringify(page.at(-1)![0]) : 'null';
      // Each record's JSON as PostgreSQL wrote it: parsed here, a long number would be rounded.
      return reply
        .type('application/json; charset=utf-8')
        .send(
          `{"results":[${page.map(([recordNo, data]) => `{"record_no":${recordNo},"data":${data}}`).join(',')}],"next_cursor":${next}}`,
        );
    },
  );

  app.get(
    '/api/job/:job_id/errors',
    {
      schema: {
        summary: "A job's row errors (bad rows skipped or failing the job), in input order",
        tags: ['jobs'],
        params: jobIdParamsSchema,
        querystring: pageQuerySchema,
        response: { 200: { $ref: 'ErrorPage#' }, 404: errorRef, 422: errorRef, 503: errorRef },
      },
    },
    async (request) => {
      const rows = await rowsAfter(request.params, request.query, listErrors);
      const results = rows.slice(0, request.query.limit);
      return { results, next_cursor: rows.length > request.query.limit ? String(results.at(-1)!.record_no) : null };
    },
  );
};
