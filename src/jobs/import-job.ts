/**
 * What an import request (POST /api/import, or a schedule's import) asks for, checked into the
 * job it makes: a URL read by the worker, or a Jira pull through a saved connection. Anything
 * wrong is a 422 naming the field.
 */
import { loadOptions } from '../datasets/options.js';
import { AppError, validationError } from '../core/errors.js';
import { IngestError } from '../core/errors.js';
import { AddressRefused, checkImportHost, isPublicAddress } from '../net/fetch.js';
import { importSource, type ImportSettings } from '../sources/imports.js';
import { formatOfName } from '../formats/parse.js';
import type { Format } from '../core/job.js';
import { isUuid } from '../core/ids.js';
import type { Db, Queryable } from '../storage/db.js';
import { describeQuery, queryText, SqlProblem, withQuerySlot } from '../storage/sql-query.js';
import { loadedType } from '../datasets/types.js';
import { findConnection } from '../storage/connections.js';
import type { NewJob } from '../storage/jobs.js';

/** An import request's body, as the schema of POST /api/import lets it through. */
export type ImportRequest = Record<string, unknown> & {
  source?: 'url' | 'jira' | 'sql';
  url?: string;
  format?: Format;
  max_errors?: number;
  schema?: string | Record<string, unknown>;
  header?: string | boolean;
};

export async function prepareImport(deps: { db: Db; settings: ImportSettings }, body: ImportRequest): Promise<Omit<NewJob, 'jobId'>> {
  const { settings } = deps;
  if (body.source === 'jira') return jiraJob(deps.db, body);
  if (body.source === 'sql') return sqlJob(deps.db, settings, body);
  if (body.sql !== undefined) throw validationError([{ loc: ['body', 'sql'], msg: 'sql is for source=sql', type: 'value_error' }]);
  if (body.url === undefined)
    throw validationError([
      { loc: ['body', 'url'], msg: 'url is required (or source=jira with connection and jql, or source=sql with sql)', type: 'missing' },
    ]);
  for (const field of ['connection', 'jql'] as const) {
    if (body[field] !== undefined)
      throw validationError([{ loc: ['body', field], msg: `${field} is for source=jira`, type: 'value_error' }]);
  }
  let source;
  try {
    source = importSource(body.url, settings);
    if (source.sourceType === 'url_import' && !settings.allowPrivate) await checkImportHost(source.url, { allowed: isPublicAddress });
  } catch (err) {
    if (err instanceof AddressRefused) throw new AppError(422, 'import_refused', err.message);
    if (err instanceof IngestError) throw validationError([{ loc: ['body', 'url'], msg: err.message, type: 'value_error' }]);
    throw err;
  }
  const format: Format = body.format ?? formatOfName(source.baseName) ?? 'csv';
  const raw = { ...body, schema: typeof body.schema === 'object' ? JSON.stringify(body.schema) : body.schema };
  const load = loadOptions(raw, source.baseName || source.url.hostname, format, 'body');
  return {
    sourceType: source.sourceType,
    fileName: source.fileName,
    format,
    maxErrors: body.max_errors ?? 0,
    bytesTotal: null,
    load,
    sourceUrl: body.url,
  };
}

// What only a file has: how its bytes are read.
const FILE_OPTIONS = ['delimiter', 'header', 'quote', 'escape', 'header_row', 'skip_lines', 'ragged', 'encoding', 'sheet'];

/**
 * A derived dataset: a guarded SELECT over the datasets whose whole result the job writes into
 * `dataset`. The query is checked and its columns read now (a refused or broken query is a 422);
 * each run reads it again. The columns keep the query's types (declared), so nothing is inferred.
 */
async function sqlJob(db: Db, settings: ImportSettings, body: ImportRequest): Promise<Omit<NewJob, 'jobId'>> {
  const issue = (field: string, msg: string) => validationError([{ loc: ['body', field], msg, type: 'value_error' }]);
  for (const field of ['url', 'connection', 'jql', 'format', ...FILE_OPTIONS, 'schema', 'locale', 'date_order', 'null_values']) {
    if (body[field] !== undefined)
      throw issue(field, `${field} does not apply to source=sql (the query's columns keep their types: cast them in the query)`);
  }
  const query = typeof body.sql === 'string' ? queryText(body.sql) : '';
  if (query === '')
    throw issue('sql', 'sql is the SELECT whose whole result is saved, e.g. SELECT region, sum(total) FROM orders GROUP BY region');
  if (typeof body.dataset !== 'string' || body.dataset === '') throw issue('dataset', 'dataset names the dataset the result is saved as');
  let columns;
  try {
    columns = await withQuerySlot(() => describeQuery(db, settings.sql, query));
  } catch (err) {
    if (err instanceof SqlProblem) throw new AppError(err.status, err.code, err.message);
    throw err;
  }
  if (columns.length === 0) throw issue('sql', 'the query gives no columns: a dataset needs at least one');
  const seen = new Set<string>();
  for (const { name } of columns) {
    if (seen.has(name)) throw issue('sql', `the query gives two columns named "${name}": name them apart with AS`);
    seen.add(name);
  }
  const schema = Object.fromEntries(columns.map((c) => [c.name, loadedType(c.type)]));
  const load = loadOptions(
    {
      dataset: body.dataset,
      mode: body.mode as string | undefined,
      key: body.key as string | undefined,
      callback_url: body.callback_url as string | undefined,
      schema_update: body.schema_update as string | undefined,
      schema: JSON.stringify(schema),
    },
    null,
    'ndjson',
    'body',
  );
  return {
    sourceType: 'sql_query',
    fileName: query.replace(/\s+/g, ' ').slice(0, 255),
    format: 'ndjson',
    maxErrors: body.max_errors ?? 0,
    bytesTotal: null,
    load,
    source: { sql: { query } },
  };
}

/** A Jira pull: its connection must exist; rows merge on the issue id into the dataset named (default jira_issues). */
async function jiraJob(db: Queryable, body: ImportRequest): Promise<Omit<NewJob, 'jobId'>> {
  const issue = (field: string, msg: string) => validationError([{ loc: ['body', field], msg, type: 'value_error' }]);
  for (const field of ['url', 'sql', 'format', 'mode', 'key', ...FILE_OPTIONS, 'schema_update']) {
    if (body[field] !== undefined) throw issue(field, `${field} does not apply to source=jira (issues are merged on their id)`);
  }
  const connection = typeof body.connection === 'string' && isUuid(body.connection) ? await findConnection(db, body.connection) : undefined;
  if (!connection) throw issue('connection', 'connection is the id of a saved connection (POST /api/connections)');
  const jql = typeof body.jql === 'string' ? body.jql.trim() : '';
  if (jql === '') throw issue('jql', 'jql selects the issues to pull, e.g. project = ABC');
  if (/\border\s+by\b/i.test(jql)) throw issue('jql', 'jql may not have ORDER BY: Intake pulls in order of updated, to sync incrementally');
  const load = loadOptions(
    {
      dataset: (body.dataset as string | undefined) ?? 'jira_issues',
      mode: 'merge',
      key: 'id',
      callback_url: body.callback_url as string | undefined,
      schema: typeof body.schema === 'object' ? JSON.stringify(body.schema) : body.schema,
    },
    null,
    'ndjson',
    'body',
  );
  return {
    sourceType: 'jira_ingest',
    fileName: `${connection.name}: ${jql}`.slice(0, 255),
    format: 'ndjson',
    maxErrors: body.max_errors ?? 0,
    bytesTotal: null,
    load,
    source: { jira: { connection: connection.id, jql } },
  };
}
