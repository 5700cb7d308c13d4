import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts';
import type { Config } from '../../config.js';
import { checkQuery, SqlRefused } from '../../datasets/sql-guard.js';
import { AppError } from '../../core/errors.js';
import { errorRef } from '../schemas.js';
import { listDatasetNames } from '../../storage/datasets.js';
import { DatabaseUnavailableError, type Db } from '../../storage/db.js';
import type { SqlRole } from '../../storage/sql-role.js';

export interface SqlRouteDeps {
  db: Db;
  datasetSchema: string;
  limits: Config['sql'];
  /** The role queries run as (storage/sql-role.ts); without one, the connecting user. */
  role: SqlRole;
}

// Queries at once per process: on PGlite each holds the one connection while it runs.
const MAX_QUERIES = 2;
// Characters of rows an answer holds at most: past them it is cut (truncated), like past maxRows.
const MAX_ANSWER_CHARS = 8 * 1024 ** 2;
// Memory a sort or hash of a query may use before it spills to disk, and the disk it may spill.
const WORK_MEM = '16MB';
const TEMP_FILE_LIMIT = '1GB';

const bodySchema = {
  type: 'object',
  required: ['sql'],
  additionalProperties: false,
  properties: { sql: { type: 'string', minLength: 1, maxLength: 100_000, description: 'One SELECT over the datasets' } },
} as const;

/**
 * What a query's failure tells its sender: a 422 naming what was wrong or which limit it
 * reached, when the query caused it; undefined for anything else (a 5xx).
 */
function queryError(err: unknown, limits: Config['sql']): AppError | undefined {
  // A query that runs out of memory or temporary disk is reported as a database that is
  // unavailable (its connection is dropped); it was the query all the same.
  const cause = err instanceof DatabaseUnavailableError ? err.cause : err;
  const code = (cause as { code?: unknown }).code;
  const message = (cause as Error).message;
  if (typeof code !== 'string') return undefined;
  if (code === '57014') return new AppError(422, 'sql_timeout', `the query ran longer than SQL_TIMEOUT_MS (${limits.timeoutMs} ms)`);
  if (code === '53200' || (code === 'XX000' && /^invalid memory alloc request size/.test(message))) {
    return new AppError(422, 'sql_too_large', `the query needs more memory than it may use (${message}): narrow it down`);
  }
  if (code === '53400' && /temp_file_limit/.test(message))
    return new AppError(422, 'sql_too_large', `the query needs more temporary disk than it may use (${TEMP_FILE_LIMIT}): narrow it down`);
  if (code.startsWith('54')) return new AppError(422, 'sql_too_large', `the query is over a limit of PostgreSQL: ${message}`);
  if (err instanceof DatabaseUnavailableError) return undefined;
  // The query's own mistakes (syntax, names, types, data, cardinality, what its role may
  // read, what PostgreSQL cannot do, what a function refused): said as PostgreSQL says them.
  if (/^(2[0-9A-F]|3[89F]|42|44|0A|10)/.test(code)) return new AppError(422, 'sql_error', message);
  return undefined;
}

/**
 * POST /api/sql: a read-only query of the datasets, for embedded mode (where nothing outside
 * Intake can open its database) and the console. Two walls: the query is checked on
 * PostgreSQL's own parse tree (datasets/sql-guard.ts: one SELECT, dataset tables only,
 * side-effect-free functions only), then runs as a role that can read the dataset schema and
 * nothing else (storage/sql-role.ts), in a READ ONLY transaction with the datasets' schema as
 * its search path. Its limits: refused when the planner's cost is over SQL_MAX_COST (and, in
 * embedded mode, when its size cannot be known before it runs, since PGlite cannot interrupt
 * a query); stopped after SQL_TIMEOUT_MS, sorts and hashes spilled past WORK_MEM and stopped
 * past TEMP_FILE_LIMIT (PostgreSQL); at most SQL_MAX_ROWS rows and MAX_ANSWER_CHARS answered,
 * cut by the database, so no more reaches this process. Every statement is unnamed: each query
 * is different, and named ones would stay prepared on the connection.
 */
export const sqlRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: SqlRouteDeps }> = async (app, { db, datasetSchema, limits, role }) => {
  let running = 0;
  const embedded = db.kind === 'pglite';
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
      if (running >= MAX_QUERIES)
        throw new AppError(429, 'too_many_queries', `${MAX_QUERIES} queries are running: try again when one has finished`);
      running++;
      try {
        const query = request.body.sql.replace(/[\s;]+$/, '');
        // On lines of its own: a comment at the end of the query cannot reach the wrapper.
        // Each row's JSON, up to and with the row that passes MAX_ANSWER_CHARS (as NULL).
        const wrapped = `SELECT CASE WHEN s.chars <= ${MAX_ANSWER_CHARS} THEN s.j END AS j
FROM (SELECT r.j, sum(length(r.j)) OVER (ROWS UNBOUNDED PRECEDING) AS chars
FROM (SELECT row_to_json(q.*)::text AS j FROM (
${query}
) q LIMIT ${limits.maxRows + 1}) r) s WHERE s.chars - length(s.j) <= ${MAX_ANSWER_CHARS}`;
        try {
          const datasets = new Set(await listDatasetNames(db, datasetSchema));
          await checkQuery(query, datasetSchema, datasets, { embedded });
          // The statement as it will run: a query that reached out of its parentheses would show here.
          await checkQuery(wrapped, datasetSchema, datasets, { embedded });
        } catch (err) {
          if (err instanceof SqlRefused) throw new AppError(422, 'sql_refused', err.message);
          throw err;
        }
        const rows = await db
          .transaction(async (tx) => {
            // temp_file_limit is a superuser's setting: set before the switch to the role.
            await tx.exec(
              [
                'SET TRANSACTION READ ONLY',
                role.superuser ? `SET LOCAL temp_file_limit = '${TEMP_FILE_LIMIT}'` : '',
                role.role ? `SET LOCAL ROLE ${role.role}` : '',
                `SET LOCAL statement_timeout = ${limits.timeoutMs}`,
                `SET LOCAL work_mem = '${WORK_MEM}'`,
                `SET LOCAL search_path = "${datasetSchema}"`,
                "SET LOCAL TimeZone = 'UTC'",
              ]
                .filter(Boolean)
                .join('; '),
            );
            const plan = await tx.query<{ 'QUERY PLAN': [{ Plan: { 'Total Cost': number } }] }>(`EXPLAIN (FORMAT JSON) ${wrapped}`);
            const cost = plan.rows[0]!['QUERY PLAN'][0].Plan['Total Cost'];
            if (cost > limits.maxCost) {
              throw new AppError(
                422,
                'sql_too_costly',
                `the query would cost ${Math.round(cost)} by PostgreSQL's estimate, over SQL_MAX_COST (${limits.maxCost}): narrow it down`,
              );
            }
            // Without parameters: an unnamed statement (PostgreSQL: the simple protocol).
            return (await tx.query<{ j: string | null }>(wrapped)).rows;
          })
          .catch((err: unknown) => {
            throw queryError(err, limits) ?? err;
          });
        const cut = rows.length > 0 && rows.at(-1)!.j === null;
        const kept = rows.slice(0, Math.min(cut ? rows.length - 1 : rows.length, limits.maxRows));
        // Each row's JSON as PostgreSQL wrote it: parsed here, a long number would be rounded.
        return reply
          .type('application/json; charset=utf-8')
          .send(`{"rows":[${kept.map(({ j }) => j).join(',')}],"truncated":${kept.length < rows.length}}`);
      } finally {
        running--;
      }
    },
  );
};
