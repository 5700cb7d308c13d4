import type { Config } from '../config.js';
import { checkQuery, SqlRefused } from '../datasets/sql-guard.js';
import { loadedType } from '../datasets/types.js';
import { EXPORT_APPLICATION_NAME, listDatasetNames } from './datasets.js';
import { DatabaseUnavailableError, type Db, type Queryable } from './db.js';
import { TEMP_FILE_LIMIT, type SqlRole } from './sql-role.js';

/**
 * A guarded query of the datasets, however its rows leave: answered (POST /api/sql), streamed
 * (POST /api/sql/export), or loaded into a dataset (a `sql_query` job). Two walls: the query is
 * checked on PostgreSQL's own parse tree (datasets/sql-guard.ts: one SELECT, dataset tables
 * only, side-effect-free functions only), and so is every statement wrapped around it; then it
 * runs as a role that can read the dataset schema and nothing else (storage/sql-role.ts), in a
 * READ ONLY transaction with the datasets' schema as its search path. Its limits: refused when
 * the planner's cost is over SQL_MAX_COST (and, in embedded mode, when its size cannot be known
 * before it runs, since PGlite cannot interrupt a query); each statement stopped after
 * SQL_TIMEOUT_MS, sorts and hashes spilled past WORK_MEM and stopped past TEMP_FILE_LIMIT
 * (PostgreSQL). Every statement is unnamed: each query is different, and named ones would stay
 * prepared on the connection.
 */
export interface SqlSettings {
  schema: string;
  role: SqlRole;
  limits: Config['sql'];
}

/** A column of a query's result: its name as the query gives it, its PostgreSQL type. */
export interface SqlColumn {
  name: string;
  type: string;
}

export type SqlProblemCode = 'sql_refused' | 'sql_error' | 'sql_timeout' | 'sql_too_large' | 'sql_too_costly' | 'too_many_queries';

/** The query cannot run, or stopped, because of what it is: its sender is told why. */
export class SqlProblem extends Error {
  constructor(
    readonly code: SqlProblemCode,
    message: string,
  ) {
    super(message);
  }

  /** Its HTTP status: 429 when the query only has to wait for a slot, else 422. */
  get status(): 422 | 429 {
    return this.code === 'too_many_queries' ? 429 : 422;
  }
}

// Queries asked for at once per process (POST /api/sql, and the reading of a query's columns
// when one is submitted as a job): on PGlite each holds the one connection while it runs, on
// PostgreSQL a connection of the pool.
const MAX_QUERIES = 2;
let running = 0;

/** Runs fn in one of the MAX_QUERIES slots; throws SqlProblem('too_many_queries') when none is free. */
export async function withQuerySlot<T>(fn: () => Promise<T>): Promise<T> {
  if (running >= MAX_QUERIES)
    throw new SqlProblem('too_many_queries', `${MAX_QUERIES} queries are running: try again when one has finished`);
  running++;
  try {
    return await fn();
  } finally {
    running--;
  }
}

// Memory a sort or hash of a query may use before it spills to disk, and the disk it may spill.
const WORK_MEM = '16MB';
// Characters of rows an answer holds at most: past them it is cut (truncated), like past maxRows.
const MAX_ANSWER_CHARS = 8 * 1024 ** 2;
// Rows a streamed read fetches per statement.
const FETCH_ROWS = 2000;

/** What a query's failure tells its sender, when the query caused it; undefined for anything else. */
function problemOf(err: unknown, limits: Config['sql']): SqlProblem | undefined {
  if (err instanceof SqlProblem) return err;
  if (err instanceof SqlRefused) return new SqlProblem('sql_refused', err.message);
  // A query that runs out of memory or temporary disk is reported as a database that is
  // unavailable (its connection is dropped); it was the query all the same.
  const cause = err instanceof DatabaseUnavailableError ? err.cause : err;
  const code = (cause as { code?: unknown } | null)?.code;
  const message = (cause as Error).message;
  if (typeof code !== 'string') return undefined;
  if (code === '57014') return new SqlProblem('sql_timeout', `the query ran longer than SQL_TIMEOUT_MS (${limits.timeoutMs} ms)`);
  if (code === '53200' || (code === 'XX000' && /^invalid memory alloc request size/.test(message)))
    return new SqlProblem('sql_too_large', `the query needs more memory than it may use (${message}): narrow it down`);
  if (code === '53400' && /temp_file_limit/.test(message))
    return new SqlProblem('sql_too_large', `the query needs more temporary disk than it may use (${TEMP_FILE_LIMIT}): narrow it down`);
  if (code.startsWith('54')) return new SqlProblem('sql_too_large', `the query is over a limit of PostgreSQL: ${message}`);
  // An internal error raised by a read-only query of the datasets is the query's doing
  // (PGlite's backend fails so on queries nested past its stack; PostgreSQL on a tsquery too deep).
  if (code === 'XX000' && !(err instanceof DatabaseUnavailableError))
    return new SqlProblem('sql_error', `PostgreSQL could not run the query (internal error: ${message}): simplify it`);
  // The server, not the query: connections, resources, shutdown, I/O.
  if (err instanceof DatabaseUnavailableError || /^(08|53|57P|58030)/.test(code)) return undefined;
  // Anything else a read-only query of the datasets raised is its own doing (syntax, names,
  // types, data, cardinality, what its role may read, what a function refused, a file a
  // function could not find): said as PostgreSQL says it.
  return new SqlProblem('sql_error', message);
}

/** Throws what the query caused as a SqlProblem, anything else as it is. */
function rethrow(err: unknown, limits: Config['sql']): never {
  throw problemOf(err, limits) ?? err;
}

/** The query as sent, without the semicolons and spaces that may end it. */
export const queryText = (sql: string) => sql.replace(/[\s;]+$/, '');

/** Checks the query and each statement made from it against the guard; throws SqlProblem('sql_refused'). */
async function guard(db: Db, s: SqlSettings, statements: string[]): Promise<void> {
  const datasets = new Set(await listDatasetNames(db, s.schema));
  try {
    for (const statement of statements) await checkQuery(statement, s.schema, datasets, { embedded: db.kind === 'pglite' });
  } catch (err) {
    rethrow(err, s.limits);
  }
}

/** Where a guarded query runs: logged in as the SQL role when it could be (PostgreSQL), else on Intake's own connections. */
const runsOn = (db: Db, s: SqlSettings): Db => s.role.session ?? db;

/**
 * Sets the query's transaction up: read only, as the role (logged in as it, or switched to), within
 * its limits, the datasets' schema as its path.
 */
async function restrict(tx: Queryable, s: SqlSettings): Promise<void> {
  const loggedIn = s.role.session !== undefined;
  // temp_file_limit is a superuser's setting: set on the login role, or before the switch to the role.
  await tx.exec(
    [
      'SET TRANSACTION READ ONLY',
      !loggedIn && s.role.superuser ? `SET LOCAL temp_file_limit = '${TEMP_FILE_LIMIT}'` : '',
      !loggedIn && s.role.role ? `SET LOCAL ROLE ${s.role.role}` : '',
      `SET LOCAL statement_timeout = ${s.limits.timeoutMs}`,
      `SET LOCAL work_mem = '${WORK_MEM}'`,
      `SET LOCAL search_path = "${s.schema}"`,
      "SET LOCAL TimeZone = 'UTC'",
    ]
      .filter(Boolean)
      .join('; '),
  );
}

/**
 * What a query could leave on its session past its transaction (a session-level lock taken
 * by a function the guard did not foresee, which would stop Intake's own locks of that key) is
 * cleared before its connection serves anything else (PostgreSQL).
 */
const GUARDED = { untrusted: true };

/** Refuses a statement whose planned cost is over SQL_MAX_COST. */
async function checkCost(tx: Queryable, s: SqlSettings, statement: string): Promise<void> {
  const plan = await tx.query<{ 'QUERY PLAN': [{ Plan: { 'Total Cost': number } }] }>(`EXPLAIN (FORMAT JSON) ${statement}`);
  const cost = plan.rows[0]!['QUERY PLAN'][0].Plan['Total Cost'];
  if (cost > s.limits.maxCost)
    throw new SqlProblem(
      'sql_too_costly',
      `the query would cost ${Math.round(cost)} by PostgreSQL's estimate, over SQL_MAX_COST (${s.limits.maxCost}): narrow it down`,
    );
}

// The query on lines of its own: a comment at its end cannot reach the wrapper.
const inner = (query: string, columns: number) => `(
${query}
) q${columns > 0 ? `(${Array.from({ length: columns }, (_, i) => `"${i + 1}"`).join(', ')})` : ''}`;

/** The columns of the query's result, in its order, duplicate names as they are. */
export async function describeQuery(db: Db, s: SqlSettings, query: string): Promise<SqlColumn[]> {
  const statement = `SELECT * FROM ${inner(query, 0)} LIMIT 0`;
  await guard(db, s, [query, statement]);
  const described = await runsOn(db, s)
    .transaction(async (tx) => {
      await restrict(tx, s);
      return (await tx.query(statement)).fields ?? [];
    }, GUARDED)
    .catch((err: unknown) => rethrow(err, s.limits));
  if (described.length === 0) return [];
  const { rows } = await db.query<{ oid: number; type: string }>(
    'SELECT oid::int AS oid, format_type(oid, NULL) AS type FROM pg_type WHERE oid = ANY($1::oid[])',
    [[...new Set(described.map((f) => f.typeId))]],
  );
  const types = new Map(rows.map((row) => [row.oid, row.type]));
  return described.map((f) => ({ name: f.name, type: types.get(f.typeId) ?? 'unknown' }));
}

/**
 * Each column's value as JSON, in a row's array: a text expression (no function with more than
 * 100 arguments: concat's of at most 50 columns each, joined by one more).
 */
function jsonArray(columns: number): string {
  const values = Array.from({ length: columns }, (_, i) => `coalesce(to_json(q."${i + 1}")::text, 'null')`);
  const groups: string[] = [];
  for (let i = 0; i < values.length; i += 50) groups.push(`concat(${values.slice(i, i + 50).join(", ',', ")})`);
  return `'[' || ${groups.length > 1 ? `concat(${groups.join(", ',', ")})` : (groups[0] ?? "''")} || ']'`;
}

/** POST /api/sql's answer: each row as a JSON array, as PostgreSQL wrote it, at most SQL_MAX_ROWS rows and MAX_ANSWER_CHARS. */
export interface SqlAnswer {
  columns: SqlColumn[];
  /** Each row's JSON text: numbers with every digit, which a parse in Node would round. */
  rows: string[];
  truncated: boolean;
}

export async function answerQuery(db: Db, s: SqlSettings, sql: string): Promise<SqlAnswer> {
  const query = queryText(sql);
  const columns = await describeQuery(db, s, query);
  // Each row's JSON, up to and with the row that passes MAX_ANSWER_CHARS (as NULL).
  const wrapped = `SELECT CASE WHEN s.chars <= ${MAX_ANSWER_CHARS} THEN s.j END AS j
FROM (SELECT r.j, sum(length(r.j)) OVER (ROWS UNBOUNDED PRECEDING) AS chars
FROM (SELECT ${jsonArray(columns.length)} AS j FROM ${inner(query, columns.length)} LIMIT ${s.limits.maxRows + 1}) r) s
WHERE s.chars - length(s.j) <= ${MAX_ANSWER_CHARS}`;
  // The statement as it will run: a query that reached out of its parentheses would show here.
  await guard(db, s, [wrapped]);
  const rows = await runsOn(db, s)
    .transaction(async (tx) => {
      await restrict(tx, s);
      await checkCost(tx, s, wrapped);
      return (await tx.query<{ j: string | null }>(wrapped)).rows;
    }, GUARDED)
    .catch((err: unknown) => rethrow(err, s.limits));
  const cut = rows.length > 0 && rows.at(-1)!.j === null;
  const kept = rows.slice(0, Math.min(cut ? rows.length - 1 : rows.length, s.limits.maxRows));
  return { columns, rows: kept.map(({ j }) => j!), truncated: kept.length < rows.length };
}

/** How a streamed read gives each row: its columns' text (CSV), its JSON object (NDJSON), or an object of its columns typed for a load. */
export type RowForm = 'text' | 'json' | 'load';

/** A column's value as text for a file: times in ISO 8601 UTC, everything else as PostgreSQL writes it. */
function textExpression(column: SqlColumn, i: number): string {
  const c = `q."${i + 1}"`;
  const as = `AS "${i + 1}"`; // the row object's keys are the columns' positions, in order
  if (column.type === 'timestamp with time zone') return `to_char(${c}, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') ${as}`;
  if (column.type === 'date') return `to_char(${c}, 'YYYY-MM-DD') ${as}`;
  return `${c}::text ${as}`;
}

function selectFor(form: RowForm, query: string, columns: SqlColumn[]): string {
  if (form === 'text') return `SELECT ${columns.map(textExpression).join(', ') || 'NULL'} FROM ${inner(query, columns.length)}`;
  if (form === 'json') return `SELECT row_to_json(q.*)::text AS j FROM ${inner(query, 0)}`;
  // A column of a type Intake has is written as to_json writes it, which the loader reads as that type; any other as its text.
  const named = columns.map((c, i) => `q."${i + 1}"${loadedType(c.type) === 'text' ? '::text' : ''} AS "${c.name.replaceAll('"', '""')}"`);
  return `SELECT row_to_json(r.*)::text AS j FROM (SELECT ${named.join(', ')} FROM ${inner(query, columns.length)}) r`;
}

/**
 * Every row of the query's result, FETCH_ROWS at a time: a whole result, with no row cap. On
 * PostgreSQL a cursor in the query's transaction, on a connection of its own for as long as
 * the caller reads (named as an export, so a load that must drop or alter a table it reads
 * ends it rather than wait, and ended by PostgreSQL too when left idle for `idleMs`). PGlite
 * has one connection, which a long transaction would hold from everything else: the cursor is
 * held past its transaction (WITH HOLD: PostgreSQL computes the rest of the result at COMMIT,
 * still as the role) and fetched a statement at a time.
 */
export async function* streamQuery(
  db: Db,
  s: SqlSettings,
  sql: string,
  form: RowForm,
  { idleMs, signal }: { idleMs: number; signal?: AbortSignal },
): AsyncGenerator<{ columns: SqlColumn[] } | { rows: (string | null)[][] }> {
  const query = queryText(sql);
  const columns = await describeQuery(db, s, query);
  const statement = selectFor(form, query, columns);
  await guard(db, s, [statement]);
  yield { columns };
  const width = form === 'text' ? Math.max(columns.length, 1) : 1;
  let chars = 0;
  const arrays = (rows: Record<string, string | null>[]) => {
    const values = rows.map((row) => Object.values(row).slice(0, width));
    for (const row of values) for (const value of row) chars += value?.length ?? 0;
    if (chars > s.limits.maxResultBytes)
      throw new SqlProblem(
        'sql_too_large',
        `the query's result is larger than SQL_MAX_RESULT_BYTES (${s.limits.maxResultBytes}): narrow it down`,
      );
    return values;
  };
  try {
    if (db.kind === 'postgres') {
      yield* withinTransaction(
        runsOn(db, s),
        async function* (tx) {
          await restrict(tx, s);
          await tx.query(`SELECT set_config('application_name', $1, true), set_config('idle_in_transaction_session_timeout', $2, true)`, [
            EXPORT_APPLICATION_NAME,
            String(idleMs),
          ]);
          await checkCost(tx, s, statement);
          await tx.exec(`DECLARE intake_query NO SCROLL CURSOR FOR ${statement}`);
          for (;;) {
            const { rows } = await tx.query<Record<string, string | null>>(`FETCH ${FETCH_ROWS} FROM intake_query`);
            if (rows.length === 0) return;
            yield { rows: arrays(rows) };
          }
        },
        signal,
      );
      return;
    }
    yield* heldCursor(db, s, statement, arrays, signal);
  } catch (err) {
    rethrow(err, s.limits);
  }
}

/** PGlite: the cursor held past its transaction, fetched a statement at a time. */
async function* heldCursor(
  db: Db,
  s: SqlSettings,
  statement: string,
  arrays: (rows: Record<string, string | null>[]) => (string | null)[][],
  signal?: AbortSignal,
): AsyncGenerator<{ rows: (string | null)[][] }> {
  const cursor = `intake_query_${Math.random().toString(36).slice(2)}`;
  await db.transaction(async (tx) => {
    await restrict(tx, s);
    await checkCost(tx, s, statement);
    await tx.exec(`DECLARE ${cursor} NO SCROLL CURSOR WITH HOLD FOR ${statement}`);
  });
  try {
    while (!signal?.aborted) {
      const { rows } = await db.query<Record<string, string | null>>(`FETCH ${FETCH_ROWS} FROM ${cursor}`);
      if (rows.length === 0) return;
      yield { rows: arrays(rows) };
    }
  } finally {
    await db.exec(`CLOSE ${cursor}`).catch(() => {});
  }
}

/**
 * The values `produce` yields inside a transaction, handed one at a time to the caller's loop:
 * the transaction stays open while the caller works on each, and commits when `produce` ends or
 * the caller stops early. Its error is thrown to the caller.
 */
async function* withinTransaction<T>(db: Db, produce: (tx: Queryable) => AsyncGenerator<T>, signal?: AbortSignal): AsyncGenerator<T> {
  let resume: ((go: boolean) => void) | undefined;
  let aborted = false;
  let deliver!: (value: IteratorResult<T, undefined>) => void;
  let delivered = new Promise<IteratorResult<T, undefined>>((resolve) => (deliver = resolve));
  const run = db.transaction(async (tx) => {
    for await (const value of produce(tx)) {
      const go = new Promise<boolean>((resolve) => (resume = resolve));
      deliver({ value, done: false });
      if (!(await go) || aborted) return;
    }
  }, GUARDED);
  const end = () => deliver({ value: undefined, done: true });
  run.then(end, end);
  // A reader that is abandoned (its job canceled or stopped) would hold the transaction forever.
  const abort = () => {
    aborted = true;
    resume?.(false);
  };
  signal?.addEventListener('abort', abort, { once: true });
  let finished = false;
  try {
    for (;;) {
      const next = await delivered;
      if (next.done) break;
      delivered = new Promise((resolve) => (deliver = resolve));
      yield next.value;
      resume!(true);
    }
    finished = true;
    await run;
  } finally {
    signal?.removeEventListener('abort', abort);
    if (!finished) {
      resume?.(false);
      await run.catch(() => {});
    }
  }
}
