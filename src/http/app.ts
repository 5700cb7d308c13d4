import type { Server } from 'node:http';
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController, type FastifyHttpOptions, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import type { Dispatcher } from '../jobs/dispatcher.js';
import { registerCors, requireToken } from './auth.js';
import { limitSlowBodies } from './slow-bodies.js';
import { refuseNonFiniteNumbers } from './numeric-query.js';
import { registerErrorHandlers } from './errors.js';
import { scheduleRoutes } from './routes/schedules.js';
import type { Scheduler } from '../runtime/schedules.js';
import type { UploadStore } from '../sources/uploads.js';
import { jobRoutes } from './routes/jobs.js';
import { submitRoutes } from './routes/submit.js';
import { importRoutes, importSubmitter } from './routes/import.js';
import { importSettings } from '../sources/imports.js';
import { previewRoutes } from './routes/preview.js';
import { connectionRoutes } from './routes/connections.js';
import { datasetSchemas, errorPageSchema, errorSchema, jobListSchema, jobSchema, recordPageSchema, submittedJobSchema } from './schemas.js';
import { datasetRoutes } from './routes/datasets.js';
import { rowRoutes } from './routes/rows.js';
import { sqlRoutes } from './routes/sql.js';
import type { SqlRole } from '../storage/sql-role.js';
import type { Db } from '../storage/db.js';
import type { StatusCache } from '../live/status-cache.js';
import type { JobEvents } from '../live/job-events.js';
import type { Tracker } from '../jobs/tracking.js';
import { eventRoutes } from './routes/events.js';
import { consoleRoutes } from './routes/console.js';
import { createMetrics, type QueueCounts } from '../runtime/metrics.js';
import { healthRoutes, timeRequests } from './routes/health.js';

export interface AppDeps {
  config: Config;
  db: Db;
  dispatcher: Dispatcher;
  /** The one tracker of the process: every change to a job goes through it. */
  tracker: Tracker;
  events: JobEvents;
  cache?: StatusCache;
  /** Where uploads are kept (UPLOAD_DIR or UPLOAD_STORE). */
  uploads: UploadStore;
  /** What wakes schedules (in-process, or BullMQ's job schedulers). */
  scheduler: Scheduler;
  /** Scale-out: the BullMQ queue's counts for /metrics (otherwise counted in the database). */
  queueCounts?: QueueCounts;
  /** The built web console (default dist/console). */
  consoleDir?: string;
  /** The role POST /api/sql queries run as (storage/sql-role.ts). */
  sqlRole: SqlRole;
}

/**
 * Fastify's request log lines, with a request and its successful answer at debug: a status URL
 * polled thousands of times a second would otherwise spend a third of the process on its own
 * log at the default level. Client errors stay at info, server errors at error.
 */
class AnswerLog extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    request.log.debug({ req: request }, 'incoming request');
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (error || reply.statusCode >= 400) return super.requestCompleted(error, request, reply);
    reply.log.debug({ res: reply, responseTime: reply.elapsedTime }, 'request completed');
  }
}

/** Builds the HTTP app; the process concerns (listen, signals) live in server.ts. */
export async function buildApp(deps: AppDeps, options: FastifyHttpOptions<Server> = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logController: new AnswerLog(),
    ...options,
    ajv: {
      // An unknown query parameter is an error (a typo such as ?stauts= must not silently
      // list everything), so additional properties are rejected, not stripped. strictTypes
      // off: the upload's form schema has no `type`, since a streamed body is not parsed.
      customOptions: { removeAdditional: false, allowUnionTypes: true, strictTypes: false },
    },
  });

  for (const schema of [errorSchema, jobSchema, submittedJobSchema, jobListSchema, recordPageSchema, errorPageSchema, ...datasetSchemas])
    app.addSchema(schema);
  registerErrorHandlers(app);
  describeOperations(app);
  await registerCors(app, deps.config.corsOrigins);
  const metrics = createMetrics({ db: deps.db, events: deps.events, cache: deps.cache, queueCounts: deps.queueCounts, log: app.log });
  app.addHook('onClose', async () => metrics.close());
  timeRequests(app, metrics);

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'Intake',
        version: '0.1.0',
        description: 'Durable CSV/JSON ingestion jobs. Submit a file or records; follow the job at its status URL.',
        license: { name: 'MIT', url: 'https://opensource.org/licenses/MIT' },
      },
      servers: [
        {
          url: deps.config.publicUrl ?? '/',
          description: deps.config.publicUrl ? 'This Intake' : 'This Intake (PUBLIC_URL unset: relative)',
        },
      ],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'One of API_TOKENS; not needed when API_TOKENS is unset' },
        },
      },
      security: [{ bearerAuth: [] }],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (json.$id as string) ?? `def-${i}` },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(multipart, { throwFileSizeLimit: true });
  // Every /api route is registered in this scope, and only here: its token check is theirs.
  await app.register(async (api) => {
    requireToken(api, deps.config.apiTokens);
    refuseNonFiniteNumbers(api);
    limitSlowBodies(api, {
      windowMs: deps.config.bodyIdleTimeoutMs,
      minBytesPerSecond: deps.config.bodyMinBytesPerSecond,
      minAverageBytesPerSecond: deps.config.bodyMinAverageBytesPerSecond,
    });
    await api.register(jobRoutes, deps);
    await api.register(eventRoutes, { db: deps.db, events: deps.events, maxStreams: deps.config.maxEventStreams });
    await api.register(rowRoutes, { db: deps.db, datasetSchema: deps.config.datasetSchema });
    const imports = importSettings(deps.config, deps.sqlRole);
    await api.register(submitRoutes, deps);
    await api.register(importRoutes, { ...deps, imports });
    await api.register(previewRoutes, { db: deps.db, config: deps.config, imports });
    await api.register(connectionRoutes, { db: deps.db, config: deps.config });
    await api.register(scheduleRoutes, { db: deps.db, config: deps.config, scheduler: deps.scheduler, imports });
    await api.register(datasetRoutes, {
      db: deps.db,
      datasetSchema: deps.config.datasetSchema,
      exportIdleTimeoutMs: deps.config.exportIdleTimeoutMs,
    });
    const submitImport = importSubmitter({ ...deps, imports });
    await api.register(sqlRoutes, {
      db: deps.db,
      sql: imports.sql,
      exportIdleTimeoutMs: deps.config.exportIdleTimeoutMs,
      submitInto: (request, reply, { into, ...body }) => submitImport(request, reply, { source: 'sql', dataset: into, ...body }),
    });
  });
  await app.register(consoleRoutes, { root: deps.consoleDir });
  await app.register(healthRoutes, { db: deps.db, cache: deps.cache, metrics, metricsTokens: deps.config.metricsTokens });
  return app;
}

/**
 * The OpenAPI document as tools want it: every operation has an operationId (from its method
 * and path unless it names one), every /api operation says it takes the bearer token and may
 * answer 401, and the others say they need nothing.
 */
function describeOperations(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    const schema = route.schema as
      { hide?: boolean; operationId?: string; security?: unknown; response?: Record<string, unknown> } | undefined;
    if (!schema || schema.hide) return;
    const method = (Array.isArray(route.method) ? route.method[0]! : route.method).toLowerCase();
    schema.operationId ??= operationId(method, route.url);
    if (route.url.startsWith('/api/')) {
      schema.security = [{ bearerAuth: [] }];
      if (schema.response && !schema.response[401]) schema.response = { ...schema.response, 401: { $ref: 'Error#' } };
    } else schema.security = [];
  });
}

/** GET /api/job/:job_id/events → getJobByJobIdEvents. */
function operationId(method: string, url: string): string {
  const words = url
    .replace(/^\/api\//, '/')
    .split('/')
    .filter(Boolean)
    .map((part) => (part.startsWith(':') ? `by_${part.slice(1)}` : part))
    .flatMap((part) => part.split(/[_.-]/))
    .map((word) => word.charAt(0).toUpperCase() + word.slice(1));
  return method + words.join('');
}
