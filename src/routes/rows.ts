import type { FastifyInstance } from 'fastify';
import { jobNotFound } from '../errors.js';
import { errorRef, jobIdParamsSchema, pageQuerySchema } from '../schemas/jobs.js';
import type { Db } from '../storage/db.js';
import { findJob, isJobId, listErrors, listRecords } from '../storage/jobs.js';

interface PageRequest {
  Params: { job_id: string };
  Querystring: { cursor?: string; limit: number };
}

/**
 * What landed: GET /api/job/{id}/records and /errors, keyset-paginated by record_no, so the
 * last page costs what the first does. The cursor is opaque to clients (it is the last
 * record_no of the page).
 */
export async function rowRoutes(app: FastifyInstance, { db }: { db: Db }): Promise<void> {
  async function page<T extends { record_no: number }>(
    params: PageRequest['Params'],
    query: PageRequest['Querystring'],
    list: (db: Db, jobId: string, after: number, limit: number) => Promise<T[]>,
  ) {
    if (!isJobId(params.job_id)) throw jobNotFound();
    const jobId = params.job_id.toLowerCase();
    const after = query.cursor === undefined ? -1 : Number(query.cursor);
    const rows = await list(db, jobId, after, query.limit + 1);
    if (rows.length === 0 && !(await findJob(db, jobId))) throw jobNotFound();
    const results = rows.slice(0, query.limit);
    return { results, next_cursor: rows.length > query.limit ? String(results.at(-1)!.record_no) : null };
  }

  app.get<PageRequest>(
    '/api/job/:job_id/records',
    {
      schema: {
        summary: "A job's ingested records, in input order",
        tags: ['jobs'],
        params: jobIdParamsSchema,
        querystring: pageQuerySchema,
        response: { 200: { $ref: 'RecordPage#' }, 404: errorRef, 422: errorRef, 503: errorRef },
      },
    },
    async (request) => page(request.params, request.query, listRecords),
  );

  app.get<PageRequest>(
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
    async (request) => page(request.params, request.query, listErrors),
  );
}
