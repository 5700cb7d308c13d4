// The SQL guard on its own (no server, no database): what POST /api/sql may run, decided on
// PostgreSQL's parse tree. The routes' tests (sql, sql-attack) run the same through the API,
// where the role the query runs as is the second wall.
import { describe, expect, it } from 'vitest';
import { checkQuery, SqlRefused } from '../src/datasets/sql-guard.js';

const SCHEMA = 'datasets';
const DATASETS = new Set(['orders', 'people']);

const allowed = (sql: string, embedded = false) => checkQuery(sql, SCHEMA, DATASETS, { embedded });
async function refusal(sql: string, embedded = false): Promise<string> {
  try {
    await checkQuery(sql, SCHEMA, DATASETS, { embedded });
  } catch (err) {
    if (err instanceof SqlRefused) return err.message;
    throw err;
  }
  throw new Error(`allowed: ${sql}`);
}

describe('the SQL guard', () => {
  it('lets a read of the datasets through: joins, aggregates, windows, WITH, VALUES, qualified names', async () => {
    for (const sql of [
      'SELECT * FROM orders',
      'select o.id, p.name from orders o join people p on p.id = o.person_id where o.total > 10 order by 1 limit 5',
      'SELECT person_id, sum(total), count(*) FROM datasets.orders GROUP BY person_id HAVING count(*) > 1',
      'SELECT id, row_number() OVER (PARTITION BY person_id ORDER BY total DESC) FROM orders',
      'WITH big AS (SELECT * FROM orders WHERE total > 100) SELECT count(*) FROM big',
      'VALUES (1, 2), (3, 4)',
      "SELECT lower(name), coalesce(nullif(name, ''), 'none'), date_trunc('day', now()) FROM people",
      'SELECT 1 UNION ALL SELECT 2',
    ]) {
      await expect(allowed(sql), sql).resolves.toBeUndefined();
    }
  });

  it('refuses writes, locks, DDL, settings and more than one statement', async () => {
    for (const sql of [
      'INSERT INTO orders VALUES (1)',
      'UPDATE orders SET total = 0',
      'DELETE FROM orders',
      'DROP TABLE orders',
      'SELECT * FROM orders FOR UPDATE',
      'SELECT * INTO copy FROM orders',
      'SET ROLE postgres',
      'SELECT 1; SELECT 2',
      'WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone',
    ]) {
      expect(await refusal(sql), sql).not.toBe('');
    }
  });

  it('refuses what is not a dataset: the catalogs, other schemas, a table by a WITH name out of scope', async () => {
    expect(await refusal('SELECT * FROM pg_authid')).toMatch(/"pg_authid" is not a dataset/);
    expect(await refusal('SELECT * FROM pg_catalog.pg_stat_activity')).toMatch(/is not a dataset/);
    expect(await refusal('SELECT * FROM public.orders')).toMatch(/is not a dataset/);
    expect(await refusal('SELECT * FROM information_schema.tables')).toMatch(/is not a dataset/);
    // A WITH name is seen only inside the query that defines it.
    expect(await refusal('SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) a, x')).toMatch(/"x" is not a dataset/);
  });

  it('refuses functions off the list: sleeping, reading files, settings, another role', async () => {
    for (const sql of [
      'SELECT pg_sleep(10)',
      "SELECT pg_read_file('/etc/passwd')",
      "SELECT set_config('role', 'postgres', false)",
      "SELECT current_setting('data_directory')",
      "SELECT dblink('host=x', 'select 1')",
      'SELECT pg_catalog.pg_sleep(1)',
    ]) {
      expect(await refusal(sql), sql).not.toBe('');
    }
  });

  it('refuses a query nested past what the walk and PGlite hold, and answers a shallower one', async () => {
    expect(await refusal(`SELECT ${'(SELECT '.repeat(300)}1${')'.repeat(300)}`)).toMatch(/nests deeper than/);
    await expect(allowed(`SELECT ${'(SELECT '.repeat(40)}1${')'.repeat(40)}`)).resolves.toBeUndefined();
    await expect(allowed(`SELECT 1${'+1'.repeat(150)}`)).resolves.toBeUndefined();
  });

  it('refuses in embedded mode what could run PGlite out of time or memory, and allows it on PostgreSQL', async () => {
    const recursive = 'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r';
    await expect(allowed(recursive)).resolves.toBeUndefined();
    expect(await refusal(recursive, true)).not.toBe('');
  });

  it('counts a WITH query as deep as its body at each reference: a long chain is refused, a short one runs', async () => {
    const chain = (n: number) => {
      const ctes = ['c0 AS (SELECT 1 AS x)'];
      for (let i = 1; i < n; i++) ctes.push(`c${i} AS (SELECT x FROM c${i - 1})`);
      return `WITH ${ctes.join(', ')} SELECT * FROM c${n - 1}`;
    };
    expect(await refusal(chain(185))).toMatch(/nests deeper than/);
    expect(await refusal(chain(3000))).toMatch(/nests deeper than/);
    await expect(allowed(chain(20))).resolves.toBeUndefined();
    // Side by side, each reading the first, they do not nest.
    const wide = Array.from({ length: 200 }, (_, i) => `w${i + 1} AS (SELECT x FROM w0)`);
    await expect(allowed(`WITH w0 AS (SELECT 1 AS x), ${wide.join(', ')} SELECT * FROM w200`)).resolves.toBeUndefined();
  });

  it('refuses a field of a value, which PostgreSQL may read as a call of any function', async () => {
    for (const sql of [
      'SELECT (0.01).pg_sleep',
      'SELECT (42::bigint).pg_advisory_lock',
      'SELECT o.total.pg_sleep FROM orders o',
      'SELECT total.pg_advisory_lock FROM orders',
      'SELECT datasets.orders.total FROM datasets.orders',
      // An alias of another query level's FROM, or of a sibling PostgreSQL does not let it see.
      'SELECT x.pg_get_userbyid FROM orders WHERE EXISTS (SELECT 1 FROM people x)',
      'SELECT 1 FROM orders x, (SELECT x.pg_sleep FROM people) s',
      'SELECT 1 FROM orders a JOIN people b ON c.pg_sleep > 0 JOIN people c ON true',
      // A function's alias is its value, no row: g.f is f(g) of any function taking it.
      'SELECT g.pg_sleep FROM generate_series(1, 1) g',
      'SELECT u.pg_sleep FROM unnest(ARRAY[1]) AS u(v)',
      "SELECT g.current_setting FROM unnest(ARRAY['port']) g",
      "SELECT g.ts_stat FROM unnest(ARRAY['select 1']) g",
      'SELECT generate_series.pg_sleep FROM generate_series(1, 1)',
      "SELECT e.pg_typeof FROM jsonb_each('{}') e",
      // Special syntax in FROM is named by PostgreSQL after it, shadowing an outer alias of that name.
      'SELECT (SELECT float8.pg_sleep FROM CAST(3 AS float8)) FROM people float8',
      'SELECT (SELECT "coalesce".pg_sleep FROM coalesce(3::float8)) FROM people "coalesce"',
      'SELECT (SELECT "current_user".pg_typeof FROM current_user) FROM people "current_user"',
      // A row's functions, and unnest's columns when it has several arrays.
      'SELECT p.pg_typeof, p.pg_column_size FROM people p',
      'SELECT u.u FROM unnest(ARRAY[1], ARRAY[2]) u',
      // Items only PostgreSQL names (ROWS FROM after its first function, JOIN … USING … AS j)
      // would let an outer function alias whose column is named like a function stand for them.
      'SELECT (SELECT generate_series.pg_typeof FROM ROWS FROM (generate_series(1, 2), generate_series(3, 4)) LIMIT 1) FROM generate_series(1, 2) AS generate_series(pg_typeof)',
      'SELECT (SELECT j.pg_column_size FROM people a JOIN people b USING (id) AS j LIMIT 1) FROM generate_series(1, 2) AS j(pg_column_size)',
      'SELECT (SELECT people.pg_typeof FROM people TABLESAMPLE system (10) LIMIT 1) FROM generate_series(1, 2) AS people(pg_typeof)',
    ]) {
      expect(await refusal(sql), sql).toMatch(/function/);
    }
    for (const sql of [
      'SELECT o.id, p.name FROM orders o JOIN people p ON p.id = o.person_id',
      'SELECT orders.total FROM orders WHERE EXISTS (SELECT 1 FROM people WHERE people.id = orders.person_id)',
      'SELECT s.n FROM orders o, LATERAL (SELECT o.total AS n) s',
      'SELECT g.g FROM generate_series(1, 3) g',
      'SELECT generate_series.generate_series FROM generate_series(1, 3)',
      'SELECT u.v FROM unnest(ARRAY[1]) AS u(v)',
      'SELECT u.unnest FROM unnest(ARRAY[1], ARRAY[2]) u',
      'SELECT j.id FROM people a JOIN people b USING (id) AS j',
      'SELECT p.name FROM people p TABLESAMPLE system (10)',
      "SELECT e.key, e.value FROM jsonb_each('{}') e",
      "SELECT x.value FROM jsonb_array_elements('[1]') x",
      'SELECT g.g, g.ordinality FROM generate_series(1, 2) WITH ORDINALITY g',
      'SELECT j.a FROM (orders JOIN people USING (id)) j(a)',
      'WITH b AS (SELECT * FROM orders) SELECT b.total FROM b',
      'SELECT o.* FROM orders o',
    ]) {
      await expect(allowed(sql), sql).resolves.toBeUndefined();
    }
  });

  it('names the types of values only: no catalog lookups, no xml or text search input', async () => {
    for (const sql of ["SELECT 'pg_authid'::regclass", "SELECT '<a/>'::xml", "SELECT 'a & b'::tsquery", "SELECT CAST('x' AS regrole)"]) {
      expect(await refusal(sql), sql).toMatch(/type/);
    }
    await expect(
      allowed(
        "SELECT total::numeric(10, 2), id::text, '2024-01-01'::date, DATE '2024-01-01', CAST(id AS bigint), '1 day'::interval, '{}'::jsonb, total::double precision, name::varchar(3), ARRAY[1]::int[] FROM orders, people",
      ),
    ).resolves.toBeUndefined();
  });

  it('refuses a series to infinity anywhere, and in embedded mode a series it cannot count or a pattern it cannot bound', async () => {
    expect(await refusal("SELECT generate_series(now(), 'infinity', '1 day'::interval)")).toMatch(/finite/);
    expect(await refusal("SELECT generate_series(1, 'Infinity'::float8)")).toMatch(/finite/);
    await expect(allowed("SELECT generate_series('2024-01-01'::date, '2024-12-31', '1 day')")).resolves.toBeUndefined();
    for (const sql of [
      "SELECT generate_series('2000-01-01'::timestamp, '3000-01-01', '1 second')",
      'SELECT generate_series(1, 1e100)',
      `SELECT regexp_like('a', '${'('.repeat(5000)}a${')'.repeat(5000)}')`,
      'SELECT name ~ name FROM people',
      "SELECT regexp_replace(name, name, '') FROM people",
      "SELECT JSON_QUERY('{}', '$')",
      "SELECT * FROM JSON_TABLE('[]', '$[*]' COLUMNS (a int PATH '$')) j",
    ]) {
      expect(await refusal(sql, true), sql).not.toBe('');
    }
    for (const sql of [
      "SELECT name ~ '^a(b|c)+$', substring(name, 2, 3), substring(name, 'a.c'), regexp_replace(name, '[0-9]+', '') FROM people",
      'SELECT generate_series(1, 1000000)',
      "SELECT date '2024-01-01' + generate_series(0, 365)",
    ]) {
      await expect(allowed(sql, true), sql).resolves.toBeUndefined();
    }
  });

  it('refuses text that is not SQL with the parser’s own words, as a refusal (never another error)', async () => {
    expect(await refusal('SELEC 1')).toMatch(/syntax error/i);
  });
});
