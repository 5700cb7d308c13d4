import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts';
import { randomUUID } from 'node:crypto';
import type { Config } from '../../config.js';
import { AppError, validationError } from '../../core/errors.js';
import { isUuid } from '../../core/ids.js';
import type { ImportSettings } from '../../sources/imports.js';
import { prepareImport, type ImportRequest } from '../../jobs/import-job.js';
import { checkCallback } from '../../jobs/submit.js';
import { MAX_EVERY_MS, MIN_EVERY_MS, parseEvery, type Scheduler } from '../../runtime/schedules.js';
import { apiTransaction, type Db } from '../../storage/db.js';
import { findPayloads } from '../../storage/jobs.js';
import {
  deleteSchedule,
  findSchedule,
  insertSchedule,
  listRuns,
  listSchedules,
  updateEvery,
  updatePaused,
  type ScheduleRow,
} from '../../storage/schedules.js';
import { errorRef } from '../schemas.js';
import { importBodySchema } from './import.js';

const RECENT_RUNS = 10;

const scheduleSchema = {
  type: 'object',
  required: [
    'schedule_id',
    'import',
    'every',
    'every_ms',
    'paused',
    'created_at',
    'next_run_at',
    'last_run_at',
    'last_error',
    'runs',
    'skipped',
    'deferred',
    'consecutive_failures',
    'failing_since',
    'last_run',
  ],
  properties: {
    schedule_id: { type: 'string', format: 'uuid' },
    import: {
      type: 'object',
      additionalProperties: true,
      description: 'The import each run submits (POST /api/import); URLs shown without their query',
    },
    every: { type: 'string' },
    every_ms: { type: 'integer' },
    paused: { type: 'boolean' },
    created_at: { type: 'string', format: 'date-time' },
    next_run_at: { type: ['string', 'null'], description: 'null while paused' },
    last_run_at: { type: ['string', 'null'] },
    last_error: {
      type: ['string', 'null'],
      description:
        'Why the last beat could not start a job (the connection was deleted …) or its last run failed; null once a run completes. A schedule paused after a day of failures says so here',
    },
    runs: { type: 'integer', description: 'Jobs the schedule has started' },
    skipped: { type: 'integer', description: 'Beats skipped because the previous run was still queued or running' },
    deferred: {
      type: 'integer',
      description:
        'Beats put off because schedules together had started MAX_SCHEDULED_JOBS_PER_MINUTE jobs in the last minute (each ran once there was room)',
    },
    consecutive_failures: {
      type: 'integer',
      description:
        'Runs (or beats that could not start one) that failed in a row. From the 3rd, each next run waits twice as long (next_run_at, up to an hour); after a day of failures the schedule is paused',
    },
    failing_since: { type: ['string', 'null'], description: 'When the current run of failures began (null while it succeeds)' },
    last_run: { type: ['object', 'null'], additionalProperties: true, description: 'The last job it started (a Job), or null' },
    recent_runs: {
      type: 'array',
      items: { type: 'object', additionalProperties: true },
      description: 'GET /api/schedules/{id}: its last jobs (Jobs), newest first',
    },
  },
} as const;

const everySchema = {
  type: 'string',
  maxLength: 40,
  description: 'How often: a number and a unit (ms, s, m, h, d), e.g. 30s, 15m, 1h30m; at least 1s',
} as const;

/** `every` in ms, or a 422 naming the field. */
function everyMsOf(every: string): number {
  const everyMs = parseEvery(every);
  if (everyMs === undefined || everyMs < MIN_EVERY_MS || everyMs > MAX_EVERY_MS) {
    throw validationError([
      {
        loc: ['body', 'every'],
        msg: `every is a duration from 1s to 366d: a number and a unit (ms, s, m, h, d), e.g. 30s, 15m, 1h30m (got ${JSON.stringify(every)})`,
        type: 'value_error',
      },
    ]);
  }
  return everyMs;
}

const schedulerDown = () =>
  new AppError(503, 'scheduler_unavailable', 'The scheduler (Redis) is unavailable; the change is saved and takes effect once it is back');

const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 100 } } } as const;
const notFound = () => new AppError(404, 'schedule_not_found', 'No schedule with this id');

const withoutQuery = (raw: unknown) => {
  if (typeof raw !== 'string') return raw;
  try {
    const url = new URL(raw);
    return url.search ? `${url.origin === 'null' ? `${url.protocol}//${url.host}` : url.origin}${url.pathname}` : raw;
  } catch {
    return raw;
  }
};

export const scheduleRoutes: FastifyPluginAsyncJsonSchemaToTs<{
  Options: { db: Db; config: Config; scheduler: Scheduler; imports: ImportSettings };
}> = async (app, { db, config, scheduler, imports: settings }) => {
  /** The payloads of these jobs, read in one statement. */
  async function payloadsOf(ids: string[]): Promise<Map<string, { payload: string }>> {
    return ids.length > 0 ? findPayloads(db, ids) : new Map();
  }

  async function shown(row: ScheduleRow, runs?: string[], known?: Map<string, { payload: string }>) {
    const payloads = known ?? (await payloadsOf([...(row.last_job_id ? [row.last_job_id] : []), ...(runs ?? [])]));
    const payload = (id: string) => (payloads.has(id) ? (JSON.parse(payloads.get(id)!.payload) as Record<string, unknown>) : null);
    return {
      schedule_id: row.schedule_id,
      import: { ...row.import, url: withoutQuery(row.import.url), callback_url: withoutQuery(row.import.callback_url) },
      every: row.every,
      every_ms: Number(row.every_ms),
      paused: row.paused,
      created_at: row.created_at.toISOString(),
      next_run_at: row.paused ? null : row.next_run_at.toISOString(),
      last_run_at: row.last_run_at?.toISOString() ?? null,
      last_error: row.last_error,
      runs: row.runs,
      skipped: row.skipped,
      deferred: row.deferred,
      consecutive_failures: row.consecutive_failures,
      failing_since: row.failing_since?.toISOString() ?? null,
      last_run: row.last_job_id ? payload(row.last_job_id) : null,
      ...(runs && { recent_runs: runs.map(payload).filter((run) => run !== null) }),
    };
  }

  async function find(id: string): Promise<ScheduleRow> {
    const row = isUuid(id) ? await findSchedule(db, id) : undefined;
    if (!row) throw notFound();
    return row;
  }

  app.post(
    '/api/schedules',
    {
      schema: {
        summary:
          'Run an import periodically: {"import": {…as POST /api/import…}, "every": "15m"}; a beat whose previous run is still going is skipped',
        tags: ['schedules'],
        body: {
          type: 'object',
          required: ['import', 'every'],
          additionalProperties: false,
          properties: {
            import: importBodySchema,
            every: everySchema,
            paused: { type: 'boolean', default: false, description: 'Made paused: it runs once resumed' },
          },
        },
        response: { 201: scheduleSchema, 400: errorRef, 409: errorRef, 422: errorRef, 503: errorRef },
      },
    },
    async (request, reply) => {
      const { every, paused = false } = request.body;
      const body = request.body.import as ImportRequest;
      const everyMs = everyMsOf(every);
      // Checked as an import would be now; each run checks it again.
      const job = await prepareImport({ db, settings }, body);
      if (job.load.callbackUrl && !config.importAllowPrivate) await checkCallback(job.load.callbackUrl);
      const max = config.maxSchedules;
      const row = await db.transaction((tx) => insertSchedule(tx, max, randomUUID(), body, every.trim().toLowerCase(), everyMs, paused));
      if (!row) throw new AppError(409, 'too_many_schedules', `At most ${max} schedules (MAX_SCHEDULES): delete some first`);
      if (!paused) {
        try {
          await scheduler.set(row.schedule_id, everyMs);
        } catch (err) {
          await deleteSchedule(db, row.schedule_id);
          request.log.error({ err }, 'could not set the schedule');
          throw new AppError(503, 'scheduler_unavailable', 'The scheduler (Redis) is unavailable; try again shortly');
        }
      }
      return reply.code(201).send(await shown(row));
    },
  );

  app.get(
    '/api/schedules',
    {
      schema: {
        summary: 'Every schedule, oldest first, with its last run',
        tags: ['schedules'],
        response: { 200: { type: 'object', required: ['results'], properties: { results: { type: 'array', items: scheduleSchema } } } },
      },
    },
    async () => {
      const rows = await listSchedules(db);
      const payloads = await payloadsOf(rows.flatMap((row) => (row.last_job_id ? [row.last_job_id] : [])));
      return { results: await Promise.all(rows.map((row) => shown(row, undefined, payloads))) };
    },
  );

  app.get(
    '/api/schedules/:id',
    {
      schema: {
        summary: 'A schedule and its last runs',
        tags: ['schedules'],
        params: idParams,
        response: { 200: scheduleSchema, 404: errorRef },
      },
    },
    async (request) => {
      const row = await find(request.params.id);
      return shown(row, await listRuns(db, row.schedule_id, RECENT_RUNS));
    },
  );

  for (const action of ['pause', 'resume'] as const) {
    app.post(
      `/api/schedules/:id/${action}`,
      {
        schema: {
          summary:
            action === 'pause'
              ? 'Pause a schedule: no run starts until it is resumed (a run going on goes on)'
              : 'Resume a paused schedule: its next run is one interval from now',
          tags: ['schedules'],
          params: idParams,
          response: { 200: scheduleSchema, 404: errorRef, 503: errorRef },
        },
      },
      async (request) => {
        await find(request.params.id);
        const row = await apiTransaction(db, (tx) => updatePaused(tx, request.params.id, action === 'pause'));
        if (!row) throw notFound();
        try {
          if (row.paused) await scheduler.unset(row.schedule_id);
          else await scheduler.set(row.schedule_id, Number(row.every_ms));
        } catch (err) {
          // The row says what it should be; worker processes set the schedulers from the rows at start.
          request.log.error({ err }, 'could not update the scheduler');
          throw schedulerDown();
        }
        return shown(row);
      },
    );
  }

  app.patch(
    '/api/schedules/:id',
    {
      schema: {
        summary:
          'Change how often a schedule runs: {"every": "1h"}. Its next run is one new interval after its last run (after now if it has not run yet), and never before now; pause and resume have their own routes',
        tags: ['schedules'],
        params: idParams,
        body: {
          type: 'object',
          required: ['every'],
          additionalProperties: false,
          properties: { every: everySchema },
        },
        response: { 200: scheduleSchema, 400: errorRef, 404: errorRef, 422: errorRef, 503: errorRef },
      },
    },
    async (request) => {
      const { every } = request.body;
      const everyMs = everyMsOf(every);
      await find(request.params.id);
      const row = await apiTransaction(db, (tx) => updateEvery(tx, request.params.id, every.trim().toLowerCase(), everyMs));
      if (!row) throw notFound();
      // A paused schedule keeps no scheduler: resuming it sets one at its new interval.
      if (!row.paused) {
        try {
          await scheduler.set(row.schedule_id, everyMs, row.next_run_at);
        } catch (err) {
          // Worker processes set the schedulers from the rows at start and every minute after.
          request.log.error({ err }, 'could not update the scheduler');
          throw schedulerDown();
        }
      }
      return shown(row);
    },
  );

  app.delete(
    '/api/schedules/:id',
    {
      schema: {
        summary: 'Delete a schedule (the jobs it made stay)',
        tags: ['schedules'],
        params: idParams,
        response: { 204: { type: 'null' }, 404: errorRef, 503: errorRef },
      },
    },
    async (request, reply) => {
      const row = await find(request.params.id);
      if (!(await apiTransaction(db, (tx) => deleteSchedule(tx, row.schedule_id)))) throw notFound();
      // A beat that still fires finds no row and does nothing.
      await scheduler
        .unset(row.schedule_id)
        .catch((err: unknown) => request.log.warn({ err }, 'could not remove the scheduler; a beat that fires finds no schedule'));
      return reply.code(204).send(null);
    },
  );
};
