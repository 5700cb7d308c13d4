import type { FastifyInstance } from 'fastify';
import { jobNotFound } from '../errors.js';
import { errorRef, jobIdParamsSchema, listQuerySchema, type JobStatus } from '../schemas/jobs.js';
import type { Db } from '../storage/db.js';
import { findJob, isJobId, listJobs, payloadJson, toPayload } from '../storage/jobs.js';
import type { StatusCache } from '../cache/status-cache.js';

export async function jobRoutes(app: FastifyInstance, { db, cache }: { db: Db; cache?: StatusCache }): Promise<void> {
  app.get<{ Params: { job_id: string } }>(
    '/api/job/:job_id',
    {
      schema: {
        summary: 'One job: its status, timestamps, progress counters and error',
        tags: ['jobs'],
        params: jobIdParamsSchema,
        response: { 200: { $ref: 'Job#' }, 404: errorRef, 503: errorRef },
      },
    },
    async (request, reply) => {
      if (!isJobId(request.params.job_id)) throw jobNotFound();
      const jobId = request.params.job_id.toLowerCase();
      reply.type('application/json; charset=utf-8').header('cache-control', 'no-cache');
      // The cached value is the payload's JSON as the database path would send it: sent as is.
      const cached = await cache?.get(jobId);
      if (cached) return reply.send(cached);
      const row = await findJob(db, jobId);
      if (!row) throw jobNotFound();
      const payload = payloadJson(row);
      // Fill the key for the next reader; a newer version already there wins (see StatusCache).
      void cache?.store(jobId, row.version, payload);
      return reply.send(payload);
    },
  );

  app.get<{ Querystring: { status?: JobStatus; limit: number; offset: number } }>(
    '/api/jobs',
    {
      schema: {
        summary: 'Jobs, newest first, optionally filtered by status',
        tags: ['jobs'],
        querystring: listQuerySchema,
        response: { 200: { $ref: 'JobList#' }, 422: errorRef, 503: errorRef },
      },
    },
    async (request) => {
      const { status, limit, offset } = request.query;
      // One row more than asked tells whether another page exists, without a count.
      const rows = await listJobs(db, { status, limit: limit + 1, offset });
      return {
        results: rows.slice(0, limit).map(toPayload),
        offset,
        limit,
        next_offset: rows.length > limit ? offset + limit : null,
      };
    },
  );
}
