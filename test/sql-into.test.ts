/**
 * A query's result as columns and arrays (POST /api/sql), streamed whole (POST /api/sql/export),
 * and saved as a dataset (`into`: a sql_query job, atomic, refreshed by a schedule), in every mode.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, createSandbox, getJson, postJson, startServer, upload, waitForJob, type Sandbox, type TestServer } from './helpers.js';

describe.each(backends())('query results and derived datasets ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { BATCH_SIZE: '500' });
    const loads: [string, string][] = [
      ['customers', 'id,name\n1,Ann\n2,Bob\n'],
      ['orders', 'id,customer,note,total\n1,1,first,123456789012345678901234567890.5\n2,1,,7\n3,2,"",0.10\n'],
      ['numbers', `n\n${Array.from({ length: 5000 }, (_, i) => i + 1).join('\n')}\n`],
    ];
    for (const [name, csv] of loads) {
      const res = await upload(server.url, `${name}.csv`, csv);
      expect(res.status).toBe(202);
      expect(await waitForJob(server.url, res.body.job_id)).toMatchObject({ status: 'completed' });
    }
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
    expect(server.statuses.filter((status) => status >= 500)).toEqual([]);
  });

  const sql = (body: Record<string, unknown>) =>
    fetch(`${server.url}/api/sql`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  const exported = (text: string, format: string) =>
    fetch(`${server.url}/api/sql/export?format=${format}`, {
      method: 'POST',
      body: JSON.stringify({ sql: text }),
      headers: { 'content-type': 'application/json' },
    });
  const count = async (dataset: string) => (await (await sql({ sql: `SELECT count(*) FROM ${dataset}` })).json()).rows[0][0];

  it('answers columns in the query order, a name given twice twice, and rows as arrays with every digit', async () => {
    const res = await sql({
      sql: 'SELECT c.name, o.note AS name, 1 AS a, 2 AS a, o.total FROM orders o JOIN customers c ON c.id = o.customer ORDER BY o.id',
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(
      '{"columns":[{"name":"name","type":"text"},{"name":"name","type":"text"},{"name":"a","type":"integer"},{"name":"a","type":"integer"},{"name":"total","type":"numeric"}],' +
        '"rows":[["Ann","first",1,2,123456789012345678901234567890.5],["Ann",null,1,2,7],["Bob","",1,2,0.10]],"truncated":false}',
    );
    // No column at all, and more columns than a function may take arguments (100).
    expect(await (await sql({ sql: 'SELECT FROM customers' })).json()).toEqual({ columns: [], rows: [[], []], truncated: false });
    const wide = Array.from({ length: 150 }, (_, i) => `${i} AS c${i}`).join(', ');
    const answer = await (await sql({ sql: `SELECT ${wide}` })).json();
    expect(answer.columns).toHaveLength(150);
    expect(answer.rows).toEqual([Array.from({ length: 150 }, (_, i) => i)]);
    // mode and key belong to into.
    expect((await sql({ sql: 'SELECT 1', mode: 'replace' })).status).toBe(422);
  });

  it('streams a query whole as CSV or NDJSON, past SQL_MAX_ROWS, and refuses before the stream what the guard refuses', async () => {
    const csv = await exported('SELECT id, note, total FROM orders ORDER BY id', 'csv');
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    // NULL is an empty field, '' is "".
    expect(await csv.text()).toBe('id,note,total\r\n1,first,123456789012345678901234567890.5\r\n2,,7\r\n3,"",0.10\r\n');
    const ndjson = await exported('SELECT id, note FROM orders ORDER BY id', 'ndjson');
    expect(await ndjson.text()).toBe('{"id":1,"note":"first"}\n{"id":2,"note":null}\n{"id":3,"note":""}\n');
    const all = (await (await exported('SELECT n FROM numbers ORDER BY n', 'csv')).text()).trim().split('\r\n');
    expect(all).toHaveLength(5001);
    expect(all.at(-1)).toBe('5000');
    for (const refused of ['DELETE FROM orders', 'SELECT * FROM pg_authid', 'SELECT * FROM ingest_jobs']) {
      const res = await exported(refused, 'csv');
      expect(res.status, refused).toBe(422);
      expect((await res.json()).code).toBe('sql_refused');
    }
    const broken = await exported('SELECT nope FROM orders', 'ndjson');
    expect(await broken.json()).toEqual({ detail: 'column "nope" does not exist', code: 'sql_error' });
  });

  it('saves a query as a dataset with its types (replace, then append), as a job like any other', async () => {
    const res = await sql({
      sql: `SELECT o.id, c.name AS "Customer", o.total, o.total > 1 AS big, DATE '2026-01-02' + o.id::int AS day, ARRAY[o.id] AS ids
            FROM orders o JOIN customers c ON c.id = o.customer`,
      into: 'order_report',
      mode: 'replace',
    });
    expect(res.status).toBe(202);
    const submitted = await res.json();
    expect(submitted).toMatchObject({ source_type: 'sql_query', dataset: 'order_report', mode: 'replace', status: 'queued' });
    expect(await waitForJob(server.url, submitted.job_id)).toMatchObject({ status: 'completed', records_processed: 3, rows_inserted: 3 });
    const dataset = (await getJson(`${server.url}/api/datasets/order_report`)).body;
    expect(dataset.columns.map((c: { name: string; type: string }) => `${c.name} ${c.type}`)).toEqual([
      'id bigint',
      'customer text',
      'total numeric',
      'big boolean',
      'day date',
      'ids text',
    ]);
    const rows = await (await sql({ sql: 'SELECT id, customer, total, big, day, ids FROM order_report ORDER BY id' })).text();
    expect(rows).toContain('[1,"Ann",123456789012345678901234567890.5,true,"2026-01-03","{1}"]');
    const again = await sql({ sql: 'SELECT id, name AS customer FROM customers', into: 'order_report', mode: 'append' });
    expect(await waitForJob(server.url, (await again.json()).job_id)).toMatchObject({ status: 'completed', rows_inserted: 2 });
    expect(await count('order_report')).toBe(5);
  });

  it('refuses at once what the guard refuses or a dataset cannot hold, and makes no job', async () => {
    const before = (await getJson(`${server.url}/api/jobs?limit=100`)).body.results.length;
    const cases: [Record<string, unknown>, string][] = [
      [{ sql: 'SELECT * FROM pg_authid', into: 'stolen' }, 'sql_refused'],
      [{ sql: 'SELECT * FROM ingest_jobs', into: 'stolen' }, 'sql_refused'],
      [{ sql: 'DELETE FROM orders RETURNING *', into: 'stolen' }, 'sql_refused'],
      [{ sql: 'SELECT nope FROM orders', into: 'stolen' }, 'sql_error'],
      [{ sql: 'SELECT 1 AS a, 2 AS a', into: 'twice' }, 'validation_error'],
      [{ sql: 'SELECT FROM orders', into: 'nothing' }, 'validation_error'],
      [{ sql: 'SELECT 1 AS a', into: 'bad name!' }, 'validation_error'],
      [{ sql: 'SELECT 1 AS a', into: 'keyless', mode: 'merge' }, 'validation_error'],
    ];
    for (const [body, code] of cases) {
      const res = await sql(body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect((await res.json()).code, JSON.stringify(body)).toBe(code);
    }
    const imported = await postJson(`${server.url}/api/import`, { source: 'sql', sql: 'SELECT 1 AS a', dataset: 'x', delimiter: ';' });
    expect(imported.status).toBe(422);
    expect((await getJson(`${server.url}/api/jobs?limit=100`)).body.results.length).toBe(before);
    expect((await getJson(`${server.url}/api/datasets/stolen`)).status).toBe(404);
  });

  it('publishes nothing when the query fails part-way, and leaves the dataset as it was', async () => {
    const made = await sql({ sql: 'SELECT n FROM numbers WHERE n <= 10', into: 'fragile', mode: 'replace' });
    expect(await waitForJob(server.url, (await made.json()).job_id)).toMatchObject({ status: 'completed' });
    // Division by zero at n = 4000, after several batches were staged.
    const broken = await sql({ sql: 'SELECT n, 1 / (n - 4000) AS d FROM numbers ORDER BY n', into: 'fragile', mode: 'replace' });
    expect(broken.status).toBe(202);
    const job = await waitForJob(server.url, (await broken.json()).job_id);
    expect(job).toMatchObject({ status: 'failed', rows_inserted: null });
    expect(job.error).toMatch(/division by zero/);
    expect(await count('fragile')).toBe(10);
    expect((await getJson(`${server.url}/api/datasets/fragile`)).body.columns.map((c: { name: string }) => c.name)).toEqual(['n']);
  });

  it('is canceled like any other job: its read stops, nothing is published', async () => {
    const res = await sql({
      sql: 'SELECT n, g FROM numbers, generate_series(1, 20) g',
      into: 'canceled_report',
      mode: 'replace',
    });
    const jobId = (await res.json()).job_id;
    await expect
      .poll(
        async () => {
          const job = (await getJson(`${server.url}/api/job/${jobId}`)).body;
          return job.status === 'running' ? job.records_processed > 0 : `${job.status} ${job.error}`;
        },
        { timeout: 30_000, interval: 50 },
      )
      .toBe(true);
    expect((await fetch(`${server.url}/api/job/${jobId}/cancel`, { method: 'POST' })).status).toBe(200);
    expect(await waitForJob(server.url, jobId)).toMatchObject({ status: 'canceled', rows_inserted: null });
    expect((await getJson(`${server.url}/api/datasets/canceled_report`)).status).toBe(404);
  });

  it.skipIf(backend.name === 'embedded')('says it is publishing while its rows move into the dataset (phase)', async () => {
    // The publish waits on a lock held here: the job is seen in that phase, and only then completes.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const taken = new Promise<void>((resolve) => (locked = resolve));
    const holder = server.intake.db.transaction(async (tx) => {
      await tx.exec('LOCK TABLE datasets.customers IN ACCESS EXCLUSIVE MODE');
      locked();
      await held;
    });
    await taken;
    try {
      const res = await upload(server.url, 'customers.csv', 'id,name\n9,Zed\n');
      const jobId = res.body.job_id;
      await expect
        .poll(async () => (await getJson(`${server.url}/api/job/${jobId}`)).body.phase, { timeout: 30_000, interval: 50 })
        .toBe('publishing');
      expect((await getJson(`${server.url}/api/job/${jobId}`)).body.status).toBe('running');
      release();
      await holder;
      expect(await waitForJob(server.url, jobId)).toMatchObject({ status: 'completed', phase: null, rows_inserted: 1 });
    } finally {
      release();
      await holder.catch(() => {});
    }
  });

  it('refreshes a derived dataset on a schedule (source=sql)', async () => {
    const made = await postJson(`${server.url}/api/schedules`, {
      import: { source: 'sql', sql: 'SELECT count(*) AS customers FROM customers', dataset: 'customer_count', mode: 'replace' },
      every: '2s',
    });
    expect(made.status).toBe(201);
    const id = made.body.schedule_id;
    try {
      await expect.poll(() => count('customer_count').catch(() => 0), { timeout: 30_000, interval: 200 }).toBe(1);
      const value = async () => (await (await sql({ sql: 'SELECT customers FROM customer_count' })).json()).rows[0]?.[0];
      const customers = async () => (await (await sql({ sql: 'SELECT count(*) FROM customers' })).json()).rows[0][0];
      expect(await value()).toBe(await customers());
      const res = await upload(server.url, 'customers.csv', 'id,name\n3,Cyd\n');
      await waitForJob(server.url, res.body.job_id);
      const now = await customers();
      await expect.poll(value, { timeout: 30_000, interval: 200 }).toBe(now);
      const shown = (await getJson(`${server.url}/api/schedules/${id}`)).body;
      expect(shown.recent_runs.every((job: { source_type: string }) => job.source_type === 'sql_query')).toBe(true);
    } finally {
      await fetch(`${server.url}/api/schedules/${id}`, { method: 'DELETE' });
    }
  });
});
