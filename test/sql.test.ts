/**
 * POST /api/sql under attack, in every mode: the guard's scopes (a WITH name is not visible in
 * its own body), the role that is the second wall (attacked with the guard out of the way),
 * the limits of time, memory and answer size (a 422 naming the limit, never a 500), the SQL
 * errors a query can cause, and that no query stays prepared on a connection; and a dataset
 * rows cursor past what PostgreSQL holds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { doctor } from '../src/cli/doctor.js';
import { openPostgres } from '../src/storage/postgres.js';
import { ensureSqlRole, SQL_ROLE, sqlLoginRole } from '../src/storage/sql-role.js';
import { backends, createSandbox, startServer, waitForJob, type Sandbox, type TestServer, rowObjects } from './helpers.js';

const SECRET = 'sekrit-idempotency-0123456789';

describe.each(backends())('POST /api/sql ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  const embedded = backend.name === 'embedded';

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    // One connection: the statements it keeps prepared are the pool's.
    server = await startServer(sandbox, { PG_POOL_SIZE: '1', SQL_TIMEOUT_MS: '1000' });
    const form = new FormData();
    form.append('file', new Blob(['id,name\n1,ann\n2,bob\n']), 'people.csv');
    const res = await fetch(`${server.url}/api/upload?dataset=people`, {
      method: 'POST',
      body: form,
      headers: { 'idempotency-key': SECRET },
    });
    expect(res.status).toBe(202);
    await waitForJob(server.url, ((await res.json()) as { job_id: string }).job_id);
    // pg_stats then holds sample values of ingest_jobs, the idempotency key among them.
    await server.intake.db.exec('ANALYZE');
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
    expect(server.statuses.filter((status) => status >= 500)).toEqual([]);
  });

  async function query(sql: string): Promise<{ status: number; body: any }> {
    const res = await fetch(`${server.url}/api/sql`, {
      method: 'POST',
      body: JSON.stringify({ sql }),
      headers: { 'content-type': 'application/json' },
    });
    return { status: res.status, body: rowObjects(await res.json()) };
  }

  /** What a refused query answers: `code: detail`. */
  async function refused(sql: string): Promise<string> {
    const res = await query(sql);
    expect(res.status, `${sql}: ${JSON.stringify(res.body)}`).toBe(422);
    expect(JSON.stringify(res.body)).not.toContain(SECRET);
    return `${res.body.code}: ${res.body.detail}`;
  }

  // Catalogs and Intake's own tables, in the spellings PostgreSQL takes for them.
  const forbidden = [
    'pg_authid',
    'PG_AUTHID',
    '"pg_authid"',
    'pg_catalog.pg_authid',
    '"pg_catalog"."pg_authid"',
    'pg_shadow',
    'pg_stat_activity',
    'pg_file_settings',
    'pg_hba_file_rules',
    'pg_stats',
    'pg_settings',
    'ingest_jobs',
    'public.ingest_jobs',
    'intake_stage.anything',
    'information_schema.tables',
  ];

  it('refuses a WITH name used inside its own body, at every nesting level: there it is the catalog', async () => {
    for (const table of forbidden) {
      const name = table.split('.').at(-1)!;
      const attacks = [
        `with ${name} as (select * from ${table}) select * from ${name}`,
        `WITH ${name} AS (TABLE ${table}) TABLE ${name}`,
        `with a as (select 1), ${name} as (select * from ${table}) select * from ${name}`,
        // a later sibling is not visible to an earlier one
        `with a as (select * from ${name}), ${name} as (select 1) select * from a`,
        // nested WITH: the inner name is still the catalog inside its own body
        `with a as (select 1) select * from (with ${name} as (select * from ${table}) select * from ${name}) s`,
        `select (with ${name} as (select * from ${table}) select count(*) from ${name})`,
        `select * from people p, lateral (with ${name} as (select * from ${table}) select * from ${name}) s`,
        `select * from people where exists (with ${name} as (select * from ${table}) select 1 from ${name})`,
        // a WITH of one side of a UNION is not the other side's
        `(with ${name} as (select 1) select * from ${name}) union all select * from ${table}`,
        `with x as (with ${name} as (select * from ${table}) select * from ${name}) select * from x`,
        `select * from people join ${table} on true`,
      ];
      for (const attack of attacks) expect(await refused(attack), attack).toMatch(/^sql_refused: ".*" is not a dataset/);
    }
  });

  it('lets a WITH name be used where PostgreSQL resolves it to the WITH query', async () => {
    const rows = async (sql: string) => {
      const res = await query(sql);
      expect(res.status, `${sql}: ${JSON.stringify(res.body)}`).toBe(200);
      return res.body.rows;
    };
    expect(await rows('with people as (select * from people where id = 1) select name from people')).toEqual([{ name: 'ann' }]);
    expect(await rows('with pg_authid as (select 1 as n) select * from pg_authid')).toEqual([{ n: 1 }]);
    // the outer WITH is visible inside the inner one's body
    expect(
      await rows('with pg_authid as (select 1 as n) select * from (with pg_authid as (select * from pg_authid) select * from pg_authid) s'),
    ).toEqual([{ n: 1 }]);
    expect(await rows('with a as (select 1 as n), pg_stats as (select n from a) select * from (select * from pg_stats) s')).toEqual([
      { n: 1 },
    ]);
    expect(
      await rows(
        'with pg_authid as (select 2 as n) select (select n from pg_authid) as a, (with y as (select * from pg_authid) select n from y) as b',
      ),
    ).toEqual([{ a: 2, b: 2 }]);
    if (!embedded)
      expect(await rows('with recursive t(n) as (select 1 union all select n + 1 from t where n < 3) select sum(n) as s from t')).toEqual([
        { s: 6 },
      ]);
  });

  it('refuses functions that read files, settings or catalogs, change the role, or run other SQL', async () => {
    const attacks = [
      "select pg_read_file('/etc/passwd')",
      "select * from pg_catalog.pg_ls_dir('.')",
      "select current_setting('data_directory')",
      "select set_config('role', 'postgres', true)",
      "select query_to_xml('select * from pg_authid', true, true, '')",
      "select lo_import('/etc/passwd')",
      "select * from dblink('dbname=postgres', 'select 1') as t(n int)",
      'select pg_sleep(5)',
      "select pg_stat_file('postgresql.conf')",
      'select * from people where name = (select rolpassword from pg_authid limit 1)',
      "select to_regclass('pg_authid')",
      "select * from xmltable('/a' passing (select query_to_xml('select 1', true, true, '')) columns x text)",
    ];
    for (const attack of attacks) expect(await refused(attack), attack).toMatch(/^sql_refused: /);
    for (const statement of [
      'set role postgres',
      'reset role',
      'set session authorization postgres',
      'select 1; reset role',
      'show data_directory',
    ]) {
      expect(await refused(statement), statement).toMatch(/^sql_refused: (only SELECT queries run here|send one statement at a time)/);
    }
  });

  it(`runs as the role ${SQL_ROLE}, which reads the datasets and nothing else whatever the parser lets through`, async () => {
    // PostgreSQL: logged in as the database's own member of the role (see below).
    const who = backend.name === 'embedded' ? SQL_ROLE : sqlLoginRole(new URL(sandbox.env.DATABASE_URL!).pathname.slice(1));
    expect((await query('select current_user as who')).body.rows).toEqual([{ who }]);
    // The second wall alone: each attack run as the route runs a query, with no guard.
    const asRole = (sql: string) =>
      server.intake.db.transaction(async (tx) => {
        await tx.exec(`SET LOCAL ROLE ${SQL_ROLE}`);
        return (await tx.query<Record<string, unknown>>(sql)).rows;
      });
    const denied = async (sql: string) => {
      const err = await asRole(sql).then(
        (rows) => new Error(`${sql} answered ${JSON.stringify(rows).slice(0, 200)}`),
        (e: { code?: string }) => e,
      );
      expect((err as { code?: string }).code, `${sql}: ${(err as Error).message}`).toBe('42501');
    };
    for (const sql of [
      'with pg_authid as (select * from pg_authid) select rolname, rolpassword from pg_authid',
      'select * from pg_file_settings',
      'select * from pg_hba_file_rules',
      'select * from public.ingest_jobs',
      'select * from ingest_jobs',
      'select * from intake_migrations',
      "select pg_read_file('/etc/passwd')",
      "select pg_ls_dir('.')",
      "select current_setting('data_directory')",
      "select lo_import('/etc/passwd')",
      "select query_to_xml('select * from public.ingest_jobs', true, true, '')",
      'create table datasets.x (n int)',
    ]) {
      await denied(sql);
    }
    // Catalog views show the role what they show any role without rights: nothing of Intake's.
    expect(await asRole("select * from pg_stats where tablename = 'ingest_jobs'")).toEqual([]);
    expect(JSON.stringify(await asRole('select * from pg_stats'))).not.toContain(SECRET);
    const activity = await asRole('select query from pg_stat_activity where pid <> pg_backend_pid()');
    expect(activity.filter((row) => row.query && row.query !== '<insufficient privilege>')).toEqual([]);
    expect(await asRole('select count(*)::int as n from datasets.people')).toEqual([{ n: 2 }]);
  });

  it('grants the role the datasets made after the start (and a replaced one)', async () => {
    for (const [name, mode] of [
      ['later', 'append'],
      ['later', 'replace'],
    ]) {
      const form = new FormData();
      form.append('file', new Blob(['v\n7\n']), 'later.csv');
      const res = await fetch(`${server.url}/api/upload?dataset=${name}&mode=${mode}`, { method: 'POST', body: form });
      expect(res.status).toBe(202);
      await waitForJob(server.url, ((await res.json()) as { job_id: string }).job_id);
      expect(await query('select v from later')).toEqual({ status: 200, body: { rows: [{ v: 7 }], truncated: false } });
    }
  });

  it('prepares no query by name: many different queries leave no statement on the connection', async () => {
    for (let i = 0; i < 1100; i++) expect((await query(`select ${i} as n, name from people where id = 1`)).status).toBe(200);
    const prepared = await server.intake.db.query<{ statement: string }>('SELECT statement FROM pg_prepared_statements');
    expect(prepared.rows.filter((row) => /concat\(|\) q LIMIT 0/.test(row.statement)).map((row) => row.statement)).toEqual([]);
  });

  it('answers each limit with a 422 naming it, never a 500', async () => {
    // The spellings that froze the embedded server: a set-returning function sized at run time, an endless recursion.
    const unbounded = [
      'select count(*) from generate_series(1, (select 30000000))',
      'select count(*) from people, generate_series(1, people.id * 100000000)',
      'with recursive r(n) as (select 1 union all select n + 1 from r) select count(*) from r',
    ];
    for (const sql of unbounded) {
      expect(await refused(sql), sql).toMatch(
        embedded
          ? /^sql_refused: .*in embedded mode \(which cannot stop a running query\)/
          : /^sql_timeout: the query ran longer than SQL_TIMEOUT_MS \(1000 ms\)/,
      );
    }
    // A value too large: PostgreSQL refuses it before making it, or runs out of room making it.
    expect(await refused("select lpad('x', 2147483647)")).toMatch(
      embedded
        ? /^sql_refused: lpad takes a constant length making at most 1024 characters/
        : /^sql_too_large: the query is over a limit of PostgreSQL: requested length too large/,
    );
    if (embedded) expect(await refused("select repeat('xy', 5000000)")).toMatch(/^sql_refused: repeat takes a constant text and count/);
    else expect(await query("select repeat('xy', 5000000)")).toEqual({ status: 200, body: { rows: [], truncated: true } });
    expect(await refused('select count(*) from generate_series(1, 3000000000)')).toMatch(/^sql_too_costly: /);
    if (embedded) {
      // 600 MB gathered into one value: PostgreSQL could hold it, the embedded database's memory (EMBEDDED_MAX_MEMORY_MB) cannot.
      expect(await refused("select length(string_agg(repeat('x', 1000), '')) as n from generate_series(1, 600000)")).toBe(
        'sql_too_large: the query needs more memory than it may use (out of memory): narrow it down',
      );
    } else {
      expect(await refused("select repeat(repeat('x', 1000000), 2000)")).toMatch(
        /^sql_too_large: the query is over a limit of PostgreSQL: requested length too large/,
      );
    }
    // What PostgreSQL says of the query's own mistakes, as it says it.
    expect(await refused('select (select 1 union select 2)')).toBe(
      'sql_error: more than one row returned by a subquery used as an expression',
    );
    expect(await refused("select 'x'::int")).toBe('sql_error: invalid input syntax for type integer: "x"');
    expect(await refused('select 1 / 0')).toBe('sql_error: division by zero');
    // The server is free afterwards.
    expect((await query('select count(*)::int as n from people')).body).toEqual({ rows: [{ n: 2 }], truncated: false });
  });

  it('cuts a large answer in the database: at most SQL_MAX_ROWS rows and 8 MiB reach the process', async () => {
    const rows = await query('select g from generate_series(1, 5000) g');
    expect(rows.body.rows).toHaveLength(1000);
    expect(rows.body.truncated).toBe(true);
    // 20 rows of 1,000,000 characters each (32 × 31,250)
    const wide = await query(
      "select g, (select string_agg(md5(h::text), '') from generate_series(1, 31250) h) as x from generate_series(1, 20) g",
    );
    expect(wide.status).toBe(200);
    expect(wide.body.truncated).toBe(true);
    expect(wide.body.rows.map((row: { g: number }) => row.g)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('answers 422 to a rows cursor past BIGINT, and pages by the largest one', async () => {
    for (const cursor of ['9223372036854775808', '9999999999999999999']) {
      const res = await fetch(`${server.url}/api/datasets/people/rows?cursor=${cursor}`);
      expect(res.status, cursor).toBe(422);
      expect(await res.json()).toMatchObject({
        code: 'validation_error',
        detail: [{ loc: ['query', 'cursor'], msg: 'cursor is not one this API gave out: use next_cursor as it is' }],
      });
    }
    const last = await fetch(`${server.url}/api/datasets/people/rows?cursor=9223372036854775807`);
    expect(await last.json()).toEqual({ results: [], next_cursor: null });
  });
});

// A connecting user that is no superuser and may not create roles (a managed database's usual
// application user): Intake still starts and answers queries, as that user, and says so.
// The second wall, independent of the guard: on PostgreSQL a query's connection logs in as a
// role of its own that is a member of intake_sql only. Switched to on Intake's connections (a
// superuser's), the role could be switched back from by set_config('role', …), which a query
// that got past the guard (t.ts_stat running any SQL) did.
describe.skipIf(!process.env.DATABASE_URL)('POST /api/sql logs in as a role of its own (PostgreSQL)', () => {
  it('a query runs as that role, which can switch to no other role and read nothing but the datasets', async () => {
    const sandbox = await createSandbox({ name: 'postgres' });
    const server = await startServer(sandbox);
    const db = openPostgres(sandbox.env.DATABASE_URL!, 2, () => {});
    try {
      const form = new FormData();
      form.append('file', new Blob(['id,name\n1,ann\n2,bob\n']), 'people.csv');
      const loaded = await fetch(`${server.url}/api/upload?dataset=people`, { method: 'POST', body: form });
      expect((await waitForJob(server.url, ((await loaded.json()) as { job_id: string }).job_id)).status).toBe('completed');
      const res = await fetch(`${server.url}/api/sql`, {
        method: 'POST',
        body: '{"sql": "select session_user::text as s, current_user::text as c"}',
        headers: { 'content-type': 'application/json' },
      });
      const { rows } = rowObjects(await res.json()) as { rows: { s: string; c: string }[] };
      const login = sqlLoginRole(new URL(sandbox.env.DATABASE_URL!).pathname.slice(1));
      expect(rows).toEqual([{ s: login, c: login }]);

      // What a query past the guard would try, on the same connections, without the guard.
      const role = await ensureSqlRole(db, 'datasets', { databaseUrl: sandbox.env.DATABASE_URL!, onError: () => {} });
      expect(role.sessionReason).toBeUndefined();
      const session = role.session!;
      try {
        for (const sql of [
          "SELECT set_config('role', 'postgres', true)",
          'SET ROLE postgres',
          "SELECT set_config('session_authorization', 'postgres', true)",
          'SELECT count(*) FROM public.ingest_jobs',
          'SELECT count(*) FROM public.intake_sql_login',
          'SELECT rolname FROM pg_authid',
          "SELECT pg_read_file('/etc/hostname')",
        ]) {
          await expect(
            session.transaction((tx) => tx.query(sql)),
            sql,
          ).rejects.toMatchObject({ code: '42501' });
        }
        expect((await session.query<{ n: number }>('SELECT count(*)::int AS n FROM datasets.people')).rows).toEqual([{ n: 2 }]);
      } finally {
        await session.close();
      }
    } finally {
      await db.close();
      await server.close();
      await sandbox.dispose();
    }
  });
});

describe.skipIf(!process.env.DATABASE_URL)('POST /api/sql when the role cannot be made', () => {
  const suffix = `${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const user = `intake_plain_${suffix}`;
  const database = `intake_plain_db_${suffix}`;
  let admin: pg.Client;
  let url: string;

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    await admin.query(`CREATE ROLE ${user} LOGIN NOSUPERUSER NOCREATEROLE`);
    await admin.query(`CREATE DATABASE ${database} OWNER ${user}`);
    const where = new URL(process.env.DATABASE_URL!);
    where.username = user;
    where.pathname = `/${database}`;
    url = where.toString();
  });
  afterAll(async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.query(`DROP ROLE IF EXISTS ${user}`);
    await admin.end();
  });

  it('runs queries as the connecting user, says why at start and in intake doctor', async () => {
    const db = openPostgres(url, 2, () => {});
    try {
      const found = await ensureSqlRole(db, 'datasets');
      expect(found.role).toBeUndefined();
      expect(found).toMatchObject({
        reason: expect.stringMatching(/permission denied to create role|must have admin option on role/),
        superuser: false,
      });
    } finally {
      await db.close();
    }
    const sandbox: Sandbox = {
      backend: { name: 'postgres' },
      env: { DATABASE_URL: url, DATA_DIR: mkdtempSync(join(tmpdir(), 'intake-plain-')), LOG_LEVEL: 'silent' },
      dataDir: '',
      dispose: async () => {},
    };
    const server = await startServer(sandbox);
    try {
      const res = await fetch(`${server.url}/api/sql`, {
        method: 'POST',
        body: '{"sql": "select current_user as who"}',
        headers: { 'content-type': 'application/json' },
      });
      expect(rowObjects(await res.json())).toEqual({ rows: [{ who: user }], truncated: false });
      expect(await refused(server.url, 'with pg_authid as (select * from pg_authid) select * from pg_authid')).toMatch(
        /^sql_refused: "pg_authid" is not a dataset/,
      );
    } finally {
      await server.close();
      rmSync(sandbox.env.DATA_DIR!, { recursive: true, force: true });
    }
    let printed = '';
    const out = new Writable({ write: (chunk, _encoding, done) => ((printed += String(chunk)), done()) });
    await doctor({ DATABASE_URL: url, DATA_DIR: tmpdir() }, out);
    expect(printed).toMatch(
      new RegExp(
        `^warn  POST /api/sql: ${user} cannot create the role ${SQL_ROLE} nor switch to it, so queries run as ${user} and the SQL guard is their only wall`,
        'm',
      ),
    );
    printed = '';
    await doctor({ DATABASE_URL: process.env.DATABASE_URL, DATA_DIR: tmpdir() }, out);
    expect(printed).toMatch(new RegExp(`^ok    POST /api/sql: queries run as the role ${SQL_ROLE}, which reads only the datasets$`, 'm'));
  });
});

async function refused(url: string, sql: string): Promise<string> {
  const res = await fetch(`${url}/api/sql`, {
    method: 'POST',
    body: JSON.stringify({ sql }),
    headers: { 'content-type': 'application/json' },
  });
  expect(res.status).toBe(422);
  const body = (await res.json()) as { code: string; detail: string };
  return `${body.code}: ${body.detail}`;
}
