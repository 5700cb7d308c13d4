import type { FastifyInstance } from 'fastify';
import type { StatusCache } from '../../live/status-cache.js';
import { requireToken } from '../auth.js';
import { PROBE_TIMEOUT_MS, type Metrics } from '../../runtime/metrics.js';
import { errorRef } from '../schemas.js';
import { within } from '../../core/within.js';
import type { Db } from '../../storage/db.js';

type Check = 'ok' | 'unreachable';

const checksSchema = {
  type: 'object',
  required: ['database'],
  properties: {
    database: { type: 'string', enum: ['ok', 'unreachable'] },
    redis: { type: 'string', enum: ['ok', 'unreachable'], description: 'Scale-out mode only' },
  },
} as const;

// Like every route: an unknown query parameter is a 422, never ignored.
const noParameters = { type: 'object', additionalProperties: false, properties: {} } as const;

/** `/healthz` (alive), `/readyz` (can serve: the database, and Redis when configured), `/metrics` (Prometheus). */
export async function healthRoutes(
  app: FastifyInstance,
  { db, cache, metrics, metricsTokens = [] }: { db: Db; cache?: StatusCache; metrics: Metrics; metricsTokens?: string[] },
): Promise<void> {
  app.get(
    '/healthz',
    {
      schema: {
        summary: 'Liveness: the process answers (touches nothing else)',
        tags: ['operations'],
        querystring: noParameters,
        response: {
          200: { type: 'object', required: ['status'], properties: { status: { type: 'string', enum: ['ok'] } } },
          422: errorRef,
        },
      },
    },
    async () => ({ status: 'ok' }),
  );

  async function check(name: string, probe: () => Promise<unknown>): Promise<Check> {
    try {
      await within(probe(), PROBE_TIMEOUT_MS, `${name} check`);
      return 'ok';
    } catch (err) {
      app.log.warn({ err: (err as Error).message }, `readiness: ${name} unreachable`);
      return 'unreachable';
    }
  }

  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: the database, and Redis in scale-out mode, answer within a second',
        tags: ['operations'],
        querystring: noParameters,
        response: {
          422: errorRef,
          200: {
            type: 'object',
            required: ['status', 'checks'],
            properties: { status: { type: 'string', enum: ['ready'] }, checks: checksSchema },
          },
          503: {
            description: 'Something Intake needs is not reachable: `detail` names it, `checks` says which',
            type: 'object',
            required: ['detail', 'code', 'checks'],
            properties: { detail: { type: 'string' }, code: { type: 'string', enum: ['not_ready'] }, checks: checksSchema },
          },
        },
      },
    },
    async (_request, reply) => {
      const [database, redis] = await Promise.all([
        check('database', () => db.query('SELECT 1')),
        cache?.kind === 'redis' && check('redis', () => cache.ping()),
      ]);
      const checks: Record<string, Check> = redis ? { database, redis } : { database };
      const down = Object.keys(checks).filter((name) => checks[name] !== 'ok');
      if (down.length === 0) return { status: 'ready', checks };
      // The one error shape ({detail, code}), with the checks so a probe's log shows which.
      return reply
        .code(503)
        .send({ detail: `not ready: ${down.map((name) => `${name} unreachable`).join(', ')}`, code: 'not_ready', checks });
    },
  );

  // Its own scope: with METRICS_TOKEN a scraper needs that token (API tokens do not open it).
  await app.register(async (scope) => {
    requireToken(scope, metricsTokens);
    scope.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
      reply.type(metrics.registry.contentType).header('cache-control', 'no-cache');
      return metrics.registry.metrics();
    });
  });
}

/**
 * Times every answer but /metrics' own, labelled by the route's pattern (`/api/job/:job_id`):
 * raw URLs would make a series per job id. Answers no route matched are `unmatched`.
 * Registered on the root app before the routes, so it applies to all of them.
 */
export function timeRequests(app: FastifyInstance, metrics: Metrics): void {
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    if (route === '/metrics') return;
    metrics.observeRequest(request.method, route, reply.statusCode, reply.elapsedTime / 1000);
  });
}
