import type { UploadStore } from '../../sources/uploads.js';
import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts';
import type { StatusCache } from '../../live/status-cache.js';
import type { Config } from '../../config.js';
import type { Dispatcher } from '../../jobs/dispatcher.js';
import { AppError, jobNotFound, validationError } from '../../core/errors.js';
import { removeJob } from '../../jobs/removal.js';
import { cancelJob, retryJob, type Tracker } from '../../jobs/tracking.js';
import { jobIdOf, sendJob } from './reply.js';
import { encodingOption } from '../../datasets/options.js';
import { errorRef, jobIdParamsSchema, listQuerySchema, retryQuerySchema } from '../schemas.js';
import { DatabaseUnavailableError, type Db } from '../../storage/db.js';
import { batchReads } from '../../core/batch.js';
import { isUuid } from '../../core/ids.js';
import { listDeliveries } from '../../storage/deliveries.js';
import { shownUrl } from '../../runtime/webhooks.js';
import { countJobs, findJob, findPayloads, listJobs, toPayload, type ListOptions } from '../../storage/jobs.js';

export interface JobRouteDeps {
  config: Config;
  db: Db;
  dispatcher: Dispatcher;
  tracker: Tracker;
  cache?: StatusCache;
  uploads: UploadStore;
}

/** A list cursor: the (submitted_at in UTC to the microsecond, job_id) of the last row, opaque to clients. */
function encodeCursor(submittedAt: string, jobId: string): string {
  return Buffer.from(`${submittedAt}|${jobId}`).toString('base64url');
}

/** A timestamp PostgreSQL takes: the form the cursor holds, and a real date and time (no Feb 30, no year 0). */
function isCursorTimestamp(text: string): boolean {
  if (!/^(?!0000)\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?$/.test(text)) return false;
  const date = new Date(`${text.slice(0, 10)}T${text.slice(11, 19)}Z`);
  return !Number.isNaN(date.getTime()) && date.toISOString().slice(0, 19) === `${text.slice(0, 10)}T${text.slice(11, 19)}`;
}

function decodeCursor(cursor: string): { submittedAt: string; jobId: string } {
  const [submittedAt, jobId] = Buffer.from(cursor, 'base64url').toString().split('|');
  if (!submittedAt || !jobId || !isCursorTimestamp(submittedAt) || !isUuid(jobId)) {
    throw validationError([
      { loc: ['query', 'cursor'], msg: 'cursor is not one this API gave out: use next_cursor as it is', type: 'value_error' },
    ]);
  }
  return { submittedAt, jobId };
}

const RFC3339 = /^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):?(\d\d))$/;

/**
 * A date-time filter in one form PostgreSQL takes: a real date and time (years 1 to 9999, no
 * Feb 30) with an offset PostgreSQL has (under 16 hours), the fraction cut to microseconds
 * (PostgreSQL's precision), the offset with its colon. Anything else is a 422 here, so that
 * neither it nor the batch of reads it would ride in fails on the database.
 */
function timeFilter(name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const m = RFC3339.exec(value);
  const [, year, month, day, hour, minute, second, fraction = '', zulu, sign, offsetHours, offsetMinutes] = m ?? [];
  const date = m ? new Date(0) : undefined;
  date?.setUTCFullYear(Number(year), Number(month) - 1, Number(day)); // (Date.UTC reads years 0–99 as 1900–1999)
  // The instant in UTC, to the minute, must be in years 1 to 9999 too.
  const offset = zulu ? 0 : (sign === '-' ? -1 : 1) * (Number(offsetHours) * 60 + Number(offsetMinutes));
  const utc = date && new Date(date.getTime() + (Number(hour) * 60 + Number(minute) - offset) * 60_000);
  const valid =
    date !== undefined &&
    utc !== undefined &&
    utc.getUTCFullYear() >= 1 &&
    utc.getUTCFullYear() <= 9999 &&
    date.getUTCDate() === Number(day) &&
    date.getUTCMonth() === Number(month) - 1 &&
    Number(hour) < 24 &&
    Number(minute) < 60 &&
    Number(second) < 60 &&
    (zulu !== undefined || (Number(offsetHours) < 16 && Number(offsetMinutes) < 60));
  if (!valid) {
    throw validationError([
      {
        loc: ['query', name],
        msg: `${name} must be an ISO 8601 date-time such as 2026-01-31T09:30:00Z (years 1 to 9999, offsets under 16 hours)`,
        type: 'value_error',
      },
    ]);
  }
  const micros = fraction ? `.${fraction.slice(0, 6)}` : '';
  return `${year}-${month}-${day}T${hour}:${minute}:${second}${micros}${zulu ? 'Z' : `${sign}${offsetHours}:${offsetMinutes}`}`;
}

const nullable = (type: string) => ({ type: [type, 'null'] }) as const;

const deliveryListSchema = {
  type: 'object',
  required: ['results'],
  properties: {
    results: {
      type: 'array',
      items: {
        type: 'object',
        required: [
          'delivery_id',
          'event',
          'url',
          'status',
          'attempts',
          'created_at',
          'next_attempt_at',
          'delivered_at',
          'last_error',
          'attempt_log',
        ],
        properties: {
          delivery_id: { type: 'string', description: 'Also sent as the Intake-Delivery header: receivers may use it to drop a repeat' },
          event: { type: 'string', enum: ['job.completed', 'job.failed', 'job.canceled'] },
          url: { type: 'string', description: 'The receiving URL, without its query' },
          status: { type: 'string', enum: ['pending', 'delivered', 'failed'], description: 'failed: given up after a day of attempts' },
          attempts: { type: 'integer' },
          created_at: { type: 'string', format: 'date-time' },
          next_attempt_at: { ...nullable('string'), description: 'When a pending delivery is tried next' },
          delivered_at: nullable('string'),
          last_error: nullable('string'),
          attempt_log: {
            type: 'array',
            items: {
              type: 'object',
              required: ['attempt', 'started_at', 'duration_ms', 'status_code', 'error', 'response'],
              properties: {
                attempt: { type: 'integer' },
                started_at: { type: 'string', format: 'date-time' },
                duration_ms: { type: 'integer' },
                status_code: nullable('integer'),
                error: nullable('string'),
                response: { ...nullable('string'), description: 'The first KiB of the answer' },
              },
            },
          },
        },
      },
    },
  },
} as const;

export const jobRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: JobRouteDeps }> = async (
  app,
  { config, db, dispatcher, tracker, cache, uploads },
) => {
  // Status reads and list pages that arrive while the database is busy go to it together (see
  // batchReads): the ids of status reads in one statement, identical pages as one. Status reads
  // keep at most two statements at the database: under load they then carry dozens of ids
  // each, and a round trip costs far more than an id; the second keeps one slow statement from
  // holding up every read. Pages take the rest of the pool, one statement each, so a deep
  // OFFSET page (seconds) holds up one connection, not the others; together they never ask
  // for more connections than the pool has.
  const unavailable = (err: unknown) => err instanceof DatabaseUnavailableError;
  const statusSlots = Math.min(2, db.connections);
  const readPayload = batchReads(statusSlots, 1000, (jobIds: string[]) => findPayloads(db, jobIds), unavailable);
  const pageBatch = batchReads(Math.max(1, db.connections - statusSlots), 1, async ([key]: string[]) => {
    return new Map([[key!, await listJobs(db, JSON.parse(key!) as ListOptions)]]);
  });
  // Identical pages asked at once share one statement: the options, written the same way, are the key.
  const readPage = async (options: ListOptions) => (await pageBatch(JSON.stringify(options)))!;

  app.get(
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
      const jobId = jobIdOf(request.params);
      reply.type('application/json; charset=utf-8').header('cache-control', 'no-cache');
      // The cached value is the payload's JSON as the database path would send it: sent as is.
      const cached = await cache?.get(jobId);
      if (cached) return reply.send(cached);
      const found = await readPayload(jobId);
      if (!found) throw jobNotFound();
      // Fill the key for the next reader; a newer version already there wins (see StatusCache).
      void cache?.fill(jobId, found.version, found.payload);
      return reply.send(found.payload);
    },
  );

  app.get(
    '/api/jobs',
    {
      schema: {
        summary: 'Jobs, newest first; filtered by status, source type and submission time; paged by cursor (or offset)',
        tags: ['jobs'],
        querystring: listQuerySchema,
        response: { 200: { $ref: 'JobList#' }, 422: errorRef, 503: errorRef },
      },
    },
    async (request, reply) => {
      const {
        status,
        source_type: sourceType,
        dataset,
        submitted_after: submittedAfter,
        submitted_before: submittedBefore,
        limit,
        offset,
        cursor,
        total,
      } = request.query;
      if (cursor !== undefined && offset > 0) {
        throw validationError([{ loc: ['query', 'cursor'], msg: 'use cursor or offset, not both', type: 'value_error' }]);
      }
      const after = cursor === undefined ? undefined : decodeCursor(cursor);
      const filters = {
        status,
        sourceType,
        dataset,
        submittedAfter: timeFilter('submitted_after', submittedAfter),
        submittedBefore: timeFilter('submitted_before', submittedBefore),
      };
      // One row more than asked tells whether another page exists, without a count.
      const rows = await readPage({ ...filters, after, limit: limit + 1, offset });
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      const more = rows.length > limit;
      const nextOffset = more && cursor === undefined ? offset + limit : null;
      const nextCursor = more && last ? encodeCursor(last.submittedAt, last.jobId) : null;
      const count = total ? `,"total":${await countJobs(db, filters)}` : '';
      // Each payload as PostgreSQL wrote it (as the status URL sends it), the page around them by
      // hand: parsing the payloads only to serialise them again by the schema is the costly part
      // of a page (see README, Performance). A test checks the answer against JobList.
      return reply
        .type('application/json; charset=utf-8')
        .send(
          `{"results":[${page.map((job) => job.payload).join(',')}],"offset":${offset},"limit":${limit},` +
            `"next_offset":${nextOffset},"next_cursor":${JSON.stringify(nextCursor)}${count}}`,
        );
    },
  );

  app.get(
    '/api/job/:job_id/deliveries',
    {
      schema: {
        summary: "The webhook deliveries of the job's ends (WEBHOOK_URLS and its callback_url): each with its attempts and the answers",
        tags: ['jobs'],
        params: jobIdParamsSchema,
        response: { 200: deliveryListSchema, 404: errorRef, 503: errorRef },
      },
    },
    async (request) => {
      const jobId = jobIdOf(request.params);
      if (!(await findJob(db, jobId))) throw jobNotFound();
      const rows = await listDeliveries(db, jobId);
      return {
        results: rows.map((row) => ({
          delivery_id: row.delivery_id,
          event: row.event,
          url: shownUrl(row.url),
          status: row.status,
          attempts: row.attempts,
          created_at: row.created_at.toISOString(),
          next_attempt_at: row.status === 'pending' ? row.next_attempt_at.toISOString() : null,
          delivered_at: row.delivered_at?.toISOString() ?? null,
          last_error: row.last_error,
          attempt_log: row.log.map((a) => ({ ...a, started_at: new Date(a.started_at).toISOString() })),
        })),
      };
    },
  );

  app.post(
    '/api/job/:job_id/cancel',
    {
      schema: {
        summary: 'Cancel a queued or running job; a running one stops at its next batch, and none of its rows reach its dataset',
        tags: ['jobs'],
        params: jobIdParamsSchema,
        response: { 200: { $ref: 'Job#' }, 404: errorRef, 409: errorRef, 503: errorRef },
      },
    },
    async (request) => {
      const jobId = jobIdOf(request.params);
      const row = await cancelJob(tracker, jobId);
      if (row) return toPayload(row);
      const current = await findJob(db, jobId);
      if (!current) throw jobNotFound();
      throw new AppError(409, 'job_finished', `The job is already ${current.status}: only a queued or running job can be canceled`);
    },
  );

  app.post(
    '/api/job/:job_id/retry',
    {
      schema: {
        summary: 'Run a failed or canceled job again, under the same id, from a clean slate',
        description:
          "The row errors of earlier runs are deleted and the stored upload is read again from the start into the job's dataset. `max_errors` and `encoding`, when given, replace the job's.",
        tags: ['jobs'],
        params: jobIdParamsSchema,
        querystring: retryQuerySchema,
        response: { 202: { $ref: 'SubmittedJob#' }, 404: errorRef, 409: errorRef, 422: errorRef, 503: errorRef },
      },
    },
    async (request, reply) => {
      const jobId = jobIdOf(request.params);
      const encoding = encodingOption(request.query.encoding, 'query');
      const current = await findJob(db, jobId);
      if (!current) throw jobNotFound();
      if (current.status !== 'failed' && current.status !== 'canceled') {
        throw new AppError(409, 'job_not_retryable', `The job is ${current.status}: only a failed or canceled job can be retried`);
      }
      // An import reads its source again; an upload needs its stored file.
      if (current.source_url === null && current.source === null && !(await uploads.exists(jobId))) {
        throw new AppError(
          409,
          'upload_missing',
          'The stored upload of this job is gone, so it cannot be read again: submit the data anew',
        );
      }
      const row = await retryJob(tracker, jobId, request.query.max_errors ?? null, encoding ?? null);
      if (!row) throw new AppError(409, 'job_not_retryable', 'The job changed meanwhile: only a failed or canceled job can be retried');
      await dispatcher.dispatch(jobId).catch((err: unknown) => request.log.error({ err, jobId }, 'dispatch failed'));
      return sendJob(reply, 202, row, config.publicUrl);
    },
  );

  app.delete(
    '/api/job/:job_id',
    {
      schema: {
        summary:
          'Delete a job with its row errors and stored upload (a running job is canceled first); rows it published stay in its dataset',
        tags: ['jobs'],
        params: jobIdParamsSchema,
        response: { 204: { description: 'Deleted', type: 'null' }, 404: errorRef, 503: errorRef },
      },
    },
    async (request, reply) => {
      const jobId = jobIdOf(request.params);
      // Canceled first, so its worker lets go at its next batch and live views see it end.
      await cancelJob(tracker, jobId);
      if (!(await removeJob({ db, uploads, cache, log: request.log }, jobId))) throw jobNotFound();
      return reply.code(204).send(null);
    },
  );
};
