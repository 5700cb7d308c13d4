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

  it('refuses text that is not SQL with the parser’s own words, as a refusal (never another error)', async () => {
    expect(await refusal('SELEC 1')).toMatch(/syntax error/i);
  });
});
