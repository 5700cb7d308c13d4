import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts';
import type { Config } from '../config.js';
import { checkQuery, SqlRefused } from '../datasets/sql-guard.js';
import { AppError } from '../errors.js';
import { errorRef } from '../schemas/api.js';
import { listDatasetNames } from '../storage/datasets.js';
import type { Db } from '../storage/db.js';

export interface SqlRouteDeps {
  db: Db;
  datasetSchema: string;
  limits: Config['sql'];
}

// Queries at once per process: on PGlite each holds the one connection while it runs.
const MAX_QUERIES = 2;
// Characters of rows an answer holds at most: past them it is cut (truncated), like past maxRows.
const MAX_ANSWER_CHARS = 8 * 1024 ** 2;

const bodySchema = {
  type: 'object',
  required: ['sql'],
  additionalProperties: false,
  properties: { sql: { type: 'string', minLength: 1, maxLength: 100_000, description: 'One SELECT over the datasets' } },
} as const;

/**
 * POST /api/sql: a read-only query of the datasets, for embedded mode (where nothing outside
 * Intake can open its database) and the console. The query is checked on PostgreSQL's own
 * parse tree (datasets/sql-guard.ts: one SELECT, dataset tables only, side-effect-free
 * functions only), then runs in a READ ONLY transaction with the datasets' schema as its
 * search path, refused when the planner's cost is over SQL_MAX_COST (PGlite cannot interrupt a
 * query), stopped after SQL_TIMEOUT_MS (PostgreSQL), and answers at most SQL_MAX_ROWS rows.
 */
export const sqlRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: SqlRouteDeps }> = async (app, { db, datasetSchema, limits }) => {
  let running = 0;
  app.post(
    '/api/sql',
    {
      schema: {
        summary: 'Run one read-only SELECT over the datasets (time-limited, cost-limited, row-capped)',
        tags: ['datasets'],
        body: bodySchema,
        response: {
          200: { $ref: 'SqlResult#' },
          422: errorRef,
          429: errorRef,
          503: errorRef,
        },
      },
    },
    async (request, reply) => {
      if (running >= MAX_QUERIES) throw new AppError(429, 'too_many_queries', `${MAX_QUERIES} queries are running: try again when one has finished`);
      running++;
      try {
        const query = request.body.sql.replace(/[\s;]+$/, '');
        try {
          await checkQuery(query, datasetSchema, new Set(await listDatasetNames(db, datasetSchema)));
        } catch (err) {
          if (err instanceof SqlRefused) throw new AppError(422, 'sql_refused', err.message);
          throw err;
        }
        // On lines of its own: a comment at the end of the query cannot reach the wrapper.
        const wrapped = `SELECT row_to_json(q.*)::text FROM (\n${query}\n) q LIMIT ${limits.maxRows + 1}`;
        const rows = await db
          .transaction(async (tx) => {
            await tx.query('SET TRANSACTION READ ONLY');
            await tx.query(`SET LOCAL statement_timeout = ${limits.timeoutMs}`);
            await tx.query(`SET LOCAL search_path = "${datasetSchema}"`);
            await tx.query("SET LOCAL TimeZone = 'UTC'");
            const plan = await tx.query<{ 'QUERY PLAN': [{ Plan: { 'Total Cost': number } }] }>(`EXPLAIN (FORMAT JSON) ${wrapped}`);
            const cost = plan.rows[0]!['QUERY PLAN'][0].Plan['Total Cost'];
            if (cost > limits.maxCost) {
              throw new AppError(422, 'sql_too_costly', `the query would cost ${Math.round(cost)} by PostgreSQL's estimate, over SQL_MAX_COST (${limits.maxCost}): narrow it down`);
            }
            return tx.queryText(wrapped);
          })
          .catch((err: unknown) => {
            const code = (err as { code?: unknown }).code;
            if (code === '57014') throw new AppError(422, 'sql_timeout', `the query ran longer than SQL_TIMEOUT_MS (${limits.timeoutMs} ms)`);
            // The query's own mistakes (syntax, names, types, data): said as PostgreSQL says them.
            if (typeof code === 'string' && /^(22|42|0A|2B)/.test(code)) throw new AppError(422, 'sql_error', (err as Error).message);
            throw err;
          });
        let chars = 0;
        let kept = 0;
        while (kept < Math.min(rows.length, limits.maxRows) && chars + rows[kept]![0]!.length <= MAX_ANSWER_CHARS) chars += rows[kept++]![0]!.length;
        // Each row's JSON as PostgreSQL wrote it: parsed here, a long number would be rounded.
        return reply
          .type('application/json; charset=utf-8')
          .send(`{"rows":[${rows.slice(0, kept).map(([json]) => json).join(',')}],"truncated":${kept < rows.length}}`);
      } finally {
        running--;
      }
    },
  );
};
