/**
 * POST /api/sql: regression tests for what an attack on the guard and the limits found
 * (each fails on the code it was written against). Small versions of each attack: the full
 * ones hang the embedded process or exhaust a PostgreSQL server's memory.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, createSandbox, startServer, waitForJob, type Sandbox, type TestServer, rowObjects } from './helpers.js';

describe.each(backends().filter((backend) => backend.name !== 'scale-out'))('POST /api/sql attacks ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  const embedded = backend.name === 'embedded';

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { SQL_TIMEOUT_MS: '2000', SQL_MAX_RESULT_BYTES: '200000' });
    const form = new FormData();
    form.append('file', new Blob(['id,name\n1,ann\n2,bob\n']), 'people.csv');
    const res = await fetch(`${server.url}/api/upload?dataset=people`, { method: 'POST', body: form });
    expect(res.status).toBe(202);
    await waitForJob(server.url, ((await res.json()) as { job_id: string }).job_id);
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  async function query(sql: string): Promise<{ status: number; body: any; ms: number }> {
    const started = Date.now();
    const res = await fetch(`${server.url}/api/sql`, {
      method: 'POST',
      body: JSON.stringify({ sql }),
      headers: { 'content-type': 'application/json' },
    });
    return { status: res.status, body: rowObjects(await res.json()), ms: Date.now() - started };
  }

  // The guard walks the parse tree recursively: a long chain of operators (10 KB of
  // `1+1+...`) overflows the JS stack in visit(), a RangeError that is not SqlRefused: 500.
  it('a deeply nested expression answers a 422, never a 500', async () => {
    const res = await query(`select 1${'+1'.repeat(5000)}`);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
  });

  // PGlite's stack ends long before PostgreSQL's own limit and says so with another protocol
  // message's error ("unnamed prepared statement does not exist" at 300 nested subqueries):
  // the guard bounds the depth first, and says it.
  it('a deeply nested query is refused saying so; one nested less deeply runs', async () => {
    const deep = await query(`select ${'(select '.repeat(300)}1${')'.repeat(300)} as n`);
    expect(deep.status, JSON.stringify(deep.body)).toBe(422);
    expect(deep.body).toMatchObject({ code: 'sql_refused', detail: expect.stringMatching(/nests deeper than/) });
    const chain = await query(`select 1${'+1'.repeat(150)} as n`);
    expect(chain.status, JSON.stringify(chain.body)).toBe(200);
    expect(chain.body.rows).toEqual([{ n: 151 }]);
    const nested = await query(`select ${'(select '.repeat(40)}1${')'.repeat(40)} as n`);
    expect(nested.status, JSON.stringify(nested.body)).toBe(200);
  });

  // BETWEEN is analysed as two comparisons each with its own copy of the value (SYMMETRIC:
  // four), and IN (list) as one per column: nested, the copies multiply (8 levels of BETWEEN
  // SYMMETRIC held a PostgreSQL backend 20 s and more before the plan existed).
  it.each([
    'select 1 where ((1 between symmetric (select 0) and (select 2))::int between symmetric (select 0) and (select 2))',
    'select id from people where ((id in (id, id))::int in (id, id))',
  ])('a value compared by BETWEEN or IN may not itself hold one: %s', async (sql) => {
    const res = await query(sql);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.code).toBe('sql_refused');
    expect((await query('select id from people where id between 1 and 2 and id in (1, 2) order by id')).body.rows).toEqual([
      { id: 1 },
      { id: 2 },
    ]);
  });

  it.each(["select xmlparse(document '<a/>') as x", 'select xmlelement(name a) as x', "select xmlserialize(content '<a/>' as text) as x"])(
    'XML syntax is refused like the XML functions: %s',
    async (sql) => {
      const res = await query(sql);
      expect(res.status, JSON.stringify(res.body)).toBe(422);
      expect(res.body.code).toBe('sql_refused');
    },
  );

  // XMLTABLE is syntax, not a function call, so the function list does not hold it back;
  // PostgreSQL 15 fails an XPath it cannot compile with XX000 ("could not create XPath
  // object"), which queryError does not take for the query's own mistake: a 500.
  it('an XPath that PostgreSQL cannot compile answers a 422, never a 500', async () => {
    const res = await query(`select * from xmltable('/a' passing '<a/>' columns y text path 'unknown-fn()')`);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
  });

  // Each NOT MATERIALIZED CTE is inlined at every reference, so n of them, each reading the
  // one before twice, make a query of 2^n relations: the planner works on it before the cost
  // check. At n = 24 (a 2 KB query) a PostgreSQL 15 backend planned for minutes past
  // statement_timeout and pg_terminate_backend, and grew past 20 GB; in embedded mode planning
  // holds Intake's thread until PGlite runs out of memory.
  it('CTEs inlined at every reference (NOT MATERIALIZED) cannot multiply the query', async () => {
    const n = 12;
    const ctes = ['a0 as not materialized (select 1 as x)'];
    for (let i = 1; i < n; i++) ctes.push(`a${i} as not materialized (select p.x from a${i - 1} p, a${i - 1} q where p.x = q.x)`);
    const res = await query(`with ${ctes.join(', ')} select count(*) from a${n - 1}`);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.code).toBe('sql_refused');
  });

  // Operators are checked only as A_Expr: ORDER BY ... USING and `x op ANY (subquery)` hold
  // theirs elsewhere (SortBy.useOp, SubLink.operName), so a schema-qualified operator outside
  // pg_catalog reaches PostgreSQL.
  it.each([
    'select id from people order by id using operator(public.<)',
    'select 1 from people where id operator(public.=) any (select 1)',
  ])('an operator outside pg_catalog is refused wherever it is written: %s', async (sql) => {
    const res = await query(sql);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.code).toBe('sql_refused');
  });

  // Embedded mode bounds time only by the planner's estimate, but unnest (and
  // jsonb_array_elements, regexp_split_to_table...) of a computed array is estimated at 10
  // (or 100) rows whatever it holds: three of 100,000 elements cost ~3,800 and would run
  // 10^15 rows, holding Intake's only thread forever. Here 3,000 x 3,000 (9 M rows, ~1 s).
  it.runIf(embedded)('set-returning functions over computed arrays cannot run past the cost bound (embedded)', async () => {
    const array = '(select array_agg(g) from generate_series(1, 3000) g)';
    const res = await query(`select count(*) from unnest(${array}) a, unnest(${array}) b`);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
  });

  // lpad, rpad and repeat may make at most 1,024 characters in embedded mode, but format's
  // width makes any length from constants: 50 rows of format('%100000000s', g) held the
  // embedded process 25 s at a cost near 0.
  it.runIf(embedded)('format cannot build long values from constants (embedded)', async () => {
    const res = await query(`select length(format('%20000000s', 'x')) as n`);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.code).toBe('sql_refused');
  });

  // Likewise replace(): each call multiplies the length (1,024 x 1,024 characters here).
  it.runIf(embedded)('replace cannot multiply a value past the 1,024 characters (embedded)', async () => {
    const res = await query(`select length(replace(repeat('a', 1024), 'a', repeat('b', 1024))) as n`);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.code).toBe('sql_refused');
  });

  // The other ways a value or a row count grows unseen by the planner, each refused in
  // embedded mode; and what stays sized is still answered.
  it
    .runIf(embedded)
    .each([
      'select count(*) from people p, jsonb_array_elements(to_jsonb(array[p.id, p.id])) e',
      'select count(*) from jsonb_array_elements((select jsonb_agg(g) from generate_series(1, 3000) g)) e',
      'select jsonb_array_elements_text(to_jsonb(array[id])) from people',
      "select regexp_matches(name, '', 'g') from people",
      "select jsonb_path_query_array('[[1]]', '$[0,0][0,0]') as n",
      "select '[1]'::jsonb @? '$[0,0]' as n",
      "select format('%*s', 100000000, 'x') as n",
      "select regexp_replace(repeat('a', 1024), '', 'bb', 'g') as n",
      "select regexp_replace(repeat('a', 1024), 'a', '\\&\\&') as n",
      "select replace(name, 'a', name) from people",
    ])('refused in embedded mode: %s', async (sql) => {
    const res = await query(sql);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.code).toBe('sql_refused');
  });

  it.runIf(embedded)('sized set-returning functions and shrinking replacements still run (embedded)', async () => {
    const res = await query(
      "select (select count(*) from unnest(array[1, 2, 3])) as u, (select count(*) from jsonb_array_elements('[1, 2]')) as j, " +
        "replace('abc', 'b', 'x') as r, regexp_replace('abc', '[ac]', '', 'g') as g, regexp_replace('abc', 'b', 'xyz') as x, format('%5s|%-3s|%%', 'a', 'b') as f",
    );
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.rows).toEqual([{ u: 3, j: 2, r: 'axc', g: 'b', x: 'axyzc', f: '    a|b  |%' }]);
  });

  // A chain of WITH queries each reading the one before has a flat parse tree but nests as
  // deep as nested subqueries where PostgreSQL analyses and plans it: 185 of them made PGlite
  // fail at COMMIT ("bad buffer ID: 0") and refuse every later statement until a restart;
  // 3,000 held a PostgreSQL backend planning for 13 minutes, deaf to statement_timeout.
  it('a long chain of WITH queries is refused saying so, and the next query is answered', async () => {
    const chain = (n: number) => {
      const ctes = ['c0 AS (SELECT 1 AS x)'];
      for (let i = 1; i < n; i++) ctes.push(`c${i} AS (SELECT x FROM c${i - 1})`);
      return `WITH ${ctes.join(', ')} SELECT * FROM c${n - 1}`;
    };
    for (const n of [185, 3000]) {
      const res = await query(chain(n));
      expect(res.status, JSON.stringify(res.body)).toBe(422);
      expect(res.body).toMatchObject({ code: 'sql_refused', detail: expect.stringMatching(/nests deeper than/) });
    }
    const short = await query(chain(20));
    expect(short.status, JSON.stringify(short.body)).toBe(200);
    expect(short.body.rows).toEqual([{ x: 1 }]);
  });

  // PostgreSQL reads `x.f`, when x is no table or alias there, as the call f(x) of any function:
  // sleeping, taking a session lock that outlives the query on a pooled connection, reading the catalogs.
  it.each([
    'select (0.01).pg_sleep',
    'select (424242::bigint).pg_advisory_lock',
    'select p.id.pg_advisory_lock from people p',
    'select id.pg_get_userbyid from people',
    "select 'pg_authid'::regclass",
    `select '${'!'.repeat(20000)}a'::tsquery`,
    "select generate_series(now(), 'infinity', '1 day'::interval)",
    // A function's alias in FROM is its value: g.f is the call f(g) of any function taking it
    // (ts_stat runs the SQL text it is given; set_config('role', …) inside it undid the role).
    'select g.pg_sleep from generate_series(1, 1) g',
    "select g.current_setting from unnest(array['port']) g",
    "select g.ts_stat from unnest(array['select array_to_tsvector(array[rolname::text]) from pg_roles']) g",
    'select u.pg_advisory_lock from unnest(array[424242]) as u(v)',
    // CAST(…) in FROM is an item PostgreSQL names float8, shadowing the outer alias float8.
    'select (select float8.pg_sleep from cast(3 as float8)) from people float8 limit 1',
    'select p.pg_typeof from people p',
  ])('refused, as a 422: %s', async (sql) => {
    const res = await query(sql);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.code).toBe('sql_refused');
    expect((await query('select 1 as ok')).body.rows).toEqual([{ ok: 1 }]);
  });

  // A whole result read (an export, a derived dataset) ends at SQL_MAX_RESULT_BYTES: a query
  // can yield rows for ever from bounds read from the data, which no estimate shows.
  it('a derived dataset past SQL_MAX_RESULT_BYTES fails saying so, and writes nothing', async () => {
    const res = await fetch(`${server.url}/api/sql`, {
      method: 'POST',
      body: JSON.stringify({ sql: 'select g as n from generate_series(1, 100000) g', into: 'too_big' }),
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(202);
    const job = await waitForJob(server.url, ((await res.json()) as { job_id: string }).job_id);
    expect(job.status).toBe('failed');
    expect(job.error).toMatch(/SQL_MAX_RESULT_BYTES/);
    expect((await fetch(`${server.url}/api/datasets/too_big`)).status).toBe(404);
  });
});
