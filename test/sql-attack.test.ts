/**
 * POST /api/sql: regression tests for what an attack on the guard and the limits found
 * (each fails on the code it was written against). Small versions of each attack: the full
 * ones hang the embedded process or exhaust a PostgreSQL server's memory.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, createSandbox, startServer, waitForJob, type Sandbox, type TestServer } from './helpers.js';

describe.each(backends().filter((backend) => backend.name !== 'scale-out'))('POST /api/sql attacks ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  const embedded = backend.name === 'embedded';

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { SQL_TIMEOUT_MS: '2000' });
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
    const res = await fetch(`${server.url}/api/sql`, { method: 'POST', body: JSON.stringify({ sql }), headers: { 'content-type': 'application/json' } });
    return { status: res.status, body: await res.json(), ms: Date.now() - started };
  }

  // The guard walks the parse tree recursively: a long chain of operators (10 KB of
  // `1+1+...`) overflows the JS stack in visit(), a RangeError that is not SqlRefused: 500.
  it('a deeply nested expression answers a 422, never a 500', async () => {
    const res = await query(`select 1${'+1'.repeat(5000)}`);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
  });

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
  it.each(['select id from people order by id using operator(public.<)', 'select 1 from people where id operator(public.=) any (select 1)'])(
    'an operator outside pg_catalog is refused wherever it is written: %s',
    async (sql) => {
      const res = await query(sql);
      expect(res.status, JSON.stringify(res.body)).toBe(422);
      expect(res.body.code).toBe('sql_refused');
    },
  );

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
});
