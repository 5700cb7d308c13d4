/**
 * Datasets end to end, in every mode: a job's rows land in a typed table, inferred over the
 * whole input or as declared; append, replace and merge; nothing of a failed or canceled job
 * is ever seen; evolution; reading back (API, export, SQL); the API's refusals.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobPayload } from '../src/core/job.js';
import { xlsxOf } from './files.js';
import {
  FAST,
  backends,
  createSandbox,
  getJson,
  recordsOf,
  startServer,
  waitForJob,
  type Sandbox,
  type TestServer,
  rowObjects,
} from './helpers.js';

interface Column {
  name: string;
  type: string;
  original_name: string;
}

describe.each(backends())('datasets ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { BATCH_SIZE: '1000', WORKER_CONCURRENCY: '2' });
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  /** Uploads `content` as `file` with the query given; answers the submit's status and body. */
  async function submit(file: string, content: string, query: Record<string, string> = {}, fields: Record<string, string> = {}) {
    const form = new FormData();
    for (const [key, value] of Object.entries(fields)) form.append(key, value);
    form.append('file', new Blob([content]), file);
    const res = await fetch(`${server.url}/api/upload?${new URLSearchParams(query)}`, { method: 'POST', body: form });
    return { status: res.status, body: await res.json() };
  }

  /** Uploads and waits for the job to end. */
  async function load(file: string, content: string, query: Record<string, string> = {}): Promise<JobPayload> {
    const res = await submit(file, content, query);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return waitForJob(server.url, res.body.job_id, 120_000);
  }

  const sql = async <R = Record<string, unknown>>(text: string, params: unknown[] = []) =>
    (await server.intake.db.query<R>(text, params)).rows;
  const columnsOf = async (name: string): Promise<Column[]> => (await getJson(`${server.url}/api/datasets/${name}`)).body.columns;
  const typesOf = async (name: string) => Object.fromEntries((await columnsOf(name)).map((c) => [c.name, c.type]));
  async function rowsOf(name: string): Promise<Record<string, unknown>[]> {
    const out: Record<string, unknown>[] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: any } = await getJson(
        `${server.url}/api/datasets/${name}/rows?limit=1000${cursor === null ? '' : `&cursor=${cursor}`}`,
      );
      expect(page.status).toBe(200);
      out.push(...page.body.results);
      cursor = page.body.next_cursor;
    } while (cursor !== null);
    return out;
  }

  it('infers every type over the whole CSV, names columns by the rule and keeps their names as written', async () => {
    const csv = [
      'ID,Unit Price,Qty,Paid,Day,At,Note,Zip,select,',
      '1,9.90,3,true,2026-01-31,2026-01-31T09:30:00Z,hello,007,x,',
      '2,12,,FALSE,2024-02-29,2026-01-31 10:00,"with, comma",010,y,',
      '-3,123456789012345678901234567890.5,7,True,2026-12-01,2026-02-01T00:00:00+02:00,,123,z,',
    ].join('\n');
    const job = await load('Sales Report (2026).csv', csv);
    expect(job).toMatchObject({ status: 'completed', dataset: 'sales_report_2026', mode: 'append', rows_inserted: 3, rows_updated: 0 });
    expect(await columnsOf('sales_report_2026')).toEqual([
      { name: 'id', type: 'bigint', original_name: 'ID' },
      { name: 'unit_price', type: 'numeric', original_name: 'Unit Price' },
      { name: 'qty', type: 'bigint', original_name: 'Qty' },
      { name: 'paid', type: 'boolean', original_name: 'Paid' },
      { name: 'day', type: 'date', original_name: 'Day' },
      { name: 'at', type: 'timestamptz', original_name: 'At' },
      { name: 'note', type: 'text', original_name: 'Note' },
      { name: 'zip', type: 'text', original_name: 'Zip' },
      { name: 'select_', type: 'text', original_name: 'select' },
      { name: 'column_10', type: 'text', original_name: 'column_10' },
    ]);
    // Plain SQL on the typed table; a time without a zone was read as UTC.
    const [sums] = await sql<{ qty: string; price: string; first: string }>(
      `SELECT sum(qty)::text AS qty, sum(unit_price)::text AS price, min(at AT TIME ZONE 'UTC')::text AS first FROM datasets.sales_report_2026`,
    );
    expect(sums).toEqual({ qty: '10', price: '123456789012345678901234567912.40', first: '2026-01-31 09:30:00' });
    const rows = await rowsOf('sales_report_2026');
    expect(rows[1]).toMatchObject({ id: 2, qty: null, paid: false, day: '2024-02-29', zip: '010', note: 'with, comma' });
    expect(rows[2]).toMatchObject({ id: -3, note: null });
    // The 30-digit number comes back with every digit, in the rows and in the job's records.
    const text = await (await fetch(`${server.url}/api/datasets/sales_report_2026/rows`)).text();
    expect(text).toContain('"unit_price":123456789012345678901234567890.5');
    expect((await recordsOf(server.url, job.job_id))[0]!.data).toMatchObject({ ID: 1, 'Unit Price': 9.9, Zip: '007' });
  });

  it.skipIf(FAST)(
    'never samples: a column integer for 999,999 rows and decimal on the last is numeric (CSV and NDJSON)',
    async () => {
      const n = 1_000_000;
      let csv = 'id,v\n';
      const lines: string[] = [];
      for (let i = 0; i < n - 1; i++) {
        csv += `${i},${i % 1000}\n`;
        lines.push(`{"id":${i},"v":${i % 1000}}`);
      }
      csv += `${n - 1},0.5\n`;
      lines.push(`{"id":${n - 1},"v":0.5}`);
      const job = await load('wide.csv', csv, { dataset: 'never_sampled' });
      expect(job).toMatchObject({ status: 'completed', rows_inserted: n });
      expect(await typesOf('never_sampled')).toEqual({ id: 'bigint', v: 'numeric' });
      expect(await sql(`SELECT v::text FROM datasets.never_sampled WHERE id = $1`, [n - 1])).toEqual([{ v: '0.5' }]);
      const ndjson = await load('wide.ndjson', lines.join('\n'), { dataset: 'never_sampled_json' });
      expect(ndjson).toMatchObject({ status: 'completed', rows_inserted: n });
      expect(await typesOf('never_sampled_json')).toEqual({ id: 'bigint', v: 'numeric' });
    },
    360_000,
  );

  it('infers JSON types: numbers exactly, strings as text unless dates or times, nested values as jsonb, a missing key as NULL', async () => {
    const records = [
      {
        n: 1,
        big: Number('123456789012345678901234567890'),
        ok: true,
        on: '2026-01-31',
        at: '2026-01-31T09:30:00Z',
        code: '123',
        nested: { a: [1, 2] },
        list: [1],
      },
      { n: 2, big: 1.5, ok: false, on: '2026-02-01', at: '2026-02-01', code: 'x', nested: null, mixed: 'a' },
      { n: 3, big: 7, ok: null, code: '', list: ['x'], mixed: 4 },
    ];
    // Written by hand: the 30-digit number as text (JSON.stringify would round it).
    const text = JSON.stringify(records).replace('1.2345678901234568e+29', '123456789012345678901234567890');
    const job = await load('typed.json', text, { dataset: 'json_types' });
    expect(job).toMatchObject({ status: 'completed', rows_inserted: 3 });
    expect(await typesOf('json_types')).toEqual({
      n: 'bigint',
      big: 'numeric',
      ok: 'boolean',
      on_: 'date', // on is a word PostgreSQL reserves
      at: 'timestamptz',
      code: 'text',
      nested: 'jsonb',
      list: 'jsonb',
      mixed: 'text',
    });
    const body = await (await fetch(`${server.url}/api/datasets/json_types/rows`)).text();
    expect(body).toContain('"big":123456789012345678901234567890,');
    const rows = await rowsOf('json_types');
    expect(rows.map((r) => r.code)).toEqual(['123', 'x', '']);
    expect(rows.map((r) => r.mixed)).toEqual([null, 'a', '4']);
    expect(rows[0]!.nested).toEqual({ a: [1, 2] });
    expect(rows[2]!.on_).toBeNull();
    const [posted] = await sql<{ n: number }>('SELECT count(*)::int AS n FROM datasets.json_types WHERE list @> \'["x"]\'');
    expect(posted!.n).toBe(1);
  });

  it('takes a declared schema over inference; values that do not fit are row errors, counted against max_errors', async () => {
    // (31/01/2026 would load: a declared date reads day-first dates too; no order reads 31/31/2026)
    const csv = 'id,qty,zip,Day\n1,3,01234,2026-01-01\n2,three,02345,2026-01-02\n3,4,03456,31/31/2026\n4,5,04567,2026-01-04\n';
    const schema = JSON.stringify({ qty: 'numeric', zip: 'text', Day: 'date' });
    const failed = await load('declared.csv', csv, { dataset: 'declared', schema });
    expect(failed).toMatchObject({ status: 'failed', records_failed: 1 });
    expect(failed.error).toBe('record 1 (line 3): column "qty" is numeric and cannot hold "three"');
    expect((await getJson(`${server.url}/api/datasets/declared`)).status).toBe(404); // nothing was published
    const job = await load('declared.csv', csv, { dataset: 'declared', schema, max_errors: '2' });
    expect(job).toMatchObject({ status: 'completed', records_processed: 2, records_failed: 2, rows_inserted: 2 });
    expect(await typesOf('declared')).toEqual({ id: 'bigint', qty: 'numeric', zip: 'text', day: 'date' });
    const errors = (await getJson(`${server.url}/api/job/${job.job_id}/errors`)).body.results;
    expect(errors.map((e: { line: number; message: string }) => [e.line, e.message])).toEqual([
      [3, 'record 1 (line 3): column "qty" is numeric and cannot hold "three"'],
      [4, 'record 2 (line 4): column "day" is date and cannot hold "31/31/2026"'],
    ]);
    expect(await sql('SELECT zip FROM datasets.declared ORDER BY id')).toEqual([{ zip: '01234' }, { zip: '04567' }]);
  });

  it('appends, replaces, and merges on a key: counts, updated values, the last of an in-file duplicate wins', async () => {
    const first = await load('people.csv', 'id,name,age\n1,ada,36\n2,grace,45\n', { dataset: 'people' });
    expect(first).toMatchObject({ status: 'completed', mode: 'append', rows_inserted: 2, rows_updated: 0 });
    const again = await load('people.csv', 'id,name,age\n3,linus,21\n', { dataset: 'people', mode: 'append' });
    expect(again.rows_inserted).toBe(1);
    expect(await sql('SELECT id FROM datasets.people ORDER BY _intake_id')).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);

    const merge = await load('people.csv', 'id,name,age\n2,grace hopper,46\n4,margaret,33\n2,grace b. hopper,47\n', {
      dataset: 'people',
      mode: 'merge',
      key: 'id',
    });
    expect(merge).toMatchObject({ status: 'completed', mode: 'merge', key: ['id'], rows_inserted: 1, rows_updated: 1 });
    expect(await sql('SELECT id, name, age FROM datasets.people ORDER BY id')).toEqual([
      { id: 1, name: 'ada', age: 36 },
      { id: 2, name: 'grace b. hopper', age: 47 },
      { id: 3, name: 'linus', age: 21 },
      { id: 4, name: 'margaret', age: 33 },
    ]);
    expect((await getJson(`${server.url}/api/datasets/people`)).body).toMatchObject({ row_count: 4, last_job_id: merge.job_id });

    // A row without its key is a row error; a key column the file lacks fails the job.
    const noKey = await load('people.csv', 'id,name,age\n,nobody,1\n5,eve,29\n', {
      dataset: 'people',
      mode: 'merge',
      key: 'id',
      max_errors: '1',
    });
    expect(noKey).toMatchObject({ status: 'completed', records_failed: 1, rows_inserted: 1 });
    expect((await getJson(`${server.url}/api/job/${noKey.job_id}/errors`)).body.results[0].message).toBe(
      'record 0 (line 2) has no value for the key column "id"',
    );
    const wrongKey = await load('people.csv', 'id,name,age\n6,x,1\n', { dataset: 'people', mode: 'merge', key: 'email' });
    expect(wrongKey.status).toBe('failed');
    expect(wrongKey.error).toBe('the key column "email" is not in the file\'s header (its columns: id, name, age)');

    const replace = await load('people.csv', 'id,name\n10,only\n', { dataset: 'people', mode: 'replace' });
    expect(replace).toMatchObject({ status: 'completed', mode: 'replace', rows_inserted: 1 });
    expect(await sql('SELECT * FROM datasets.people')).toEqual([expect.objectContaining({ id: 10, name: 'only' })]);
    expect(await typesOf('people')).toEqual({ id: 'bigint', name: 'text' });
    expect((await getJson(`${server.url}/api/datasets/people`)).body.row_count).toBe(1);
  });

  it('evolves: new columns are added (NULL for older rows), missing ones are NULL; a wider value is a row error unless schema_update=widen', async () => {
    await load('evolve.csv', 'id,qty\n1,5\n', { dataset: 'evolve' });
    const more = await load('evolve.csv', 'id,note\n2,new column\n', { dataset: 'evolve' });
    expect(more.status).toBe('completed');
    expect(await sql('SELECT id, qty, note FROM datasets.evolve ORDER BY id')).toEqual([
      { id: 1, qty: 5, note: null },
      { id: 2, qty: null, note: 'new column' },
    ]);
    const narrow = await load('evolve.csv', 'id,qty\n3,2.5\n', { dataset: 'evolve' });
    expect(narrow).toMatchObject({ status: 'failed', error: 'record 0 (line 2): column "qty" is bigint and cannot hold "2.5"' });
    const widened = await load('evolve.csv', 'id,qty\n3,2.5\n', { dataset: 'evolve', schema_update: 'widen' });
    expect(widened).toMatchObject({ status: 'completed', rows_inserted: 1 });
    expect(await typesOf('evolve')).toEqual({ id: 'bigint', qty: 'numeric', note: 'text' });
    expect(await sql('SELECT qty::text FROM datasets.evolve ORDER BY id')).toEqual([{ qty: '5' }, { qty: null }, { qty: '2.5' }]);
    const toText = await load('evolve.csv', 'id,qty\n4,n/a\n', { dataset: 'evolve', schema_update: 'widen' });
    expect(toText.status).toBe('completed');
    expect(await typesOf('evolve')).toMatchObject({ qty: 'text' });
    expect(await sql('SELECT qty FROM datasets.evolve ORDER BY id')).toEqual([{ qty: '5' }, { qty: null }, { qty: '2.5' }, { qty: 'n/a' }]);
  });

  it('a job failing at row 500,000 and a job canceled mid-way leave the dataset exactly as it was, read with SQL while they run', async () => {
    await load('atomic.csv', 'id,v\n-1,seed\n', { dataset: 'atomic' });
    const snapshot = async () =>
      sql<{ n: number; ids: string }>("SELECT count(*)::int AS n, string_agg(id::text, ',' ORDER BY id) AS ids FROM datasets.atomic");
    const before = await snapshot();
    let csv = 'id,v\n';
    for (let i = 0; i < 500_000; i++) csv += `${i},value ${i}\n`;
    // The row before the last has one field (a bad last row would be a note after the table).
    const failing = await submit('atomic.csv', `${csv}500000\n500001,last\n`, { dataset: 'atomic' });
    const seen: { n: number }[] = [];
    for (;;) {
      seen.push(...(await snapshot()));
      const job = (await getJson<JobPayload>(`${server.url}/api/job/${failing.body.job_id}`)).body;
      if (job.status === 'failed') {
        expect(job.error).toBe('CSV error on line 500002: expected 2 fields as in the header, found 1');
        expect(job.records_processed).toBe(500_000);
        break;
      }
      await sleep(20);
    }
    expect(seen.length).toBeGreaterThan(1);
    expect(new Set(seen.map((s) => s.n))).toEqual(new Set([1]));
    expect(await snapshot()).toEqual(before);

    const canceled = await submit('atomic.csv', csv, { dataset: 'atomic' });
    for (;;) {
      const job = (await getJson<JobPayload>(`${server.url}/api/job/${canceled.body.job_id}`)).body;
      if (job.records_processed > 0) break;
      expect(job.status === 'queued' || job.status === 'running').toBe(true);
      await sleep(10);
    }
    expect(await snapshot()).toEqual(before);
    expect((await fetch(`${server.url}/api/job/${canceled.body.job_id}/cancel`, { method: 'POST' })).status).toBe(200);
    // The worker lets go at its next batch; the next job into the dataset runs after it.
    const after = await load('atomic.csv', 'id,v\n-2,after\n', { dataset: 'atomic' });
    expect(after.status).toBe('completed');
    expect(await sql('SELECT count(*)::int AS n FROM datasets.atomic')).toEqual([{ n: 2 }]);
    expect((await getJson(`${server.url}/api/job/${canceled.body.job_id}/records`)).body.results).toEqual([]);
  }, 240_000);

  it('two appends at once and an append racing a merge on one dataset: no row lost, none twice', async () => {
    await load('race.csv', 'id,v\n0,seed\n', { dataset: 'race' });
    const rows = (from: number, n: number) => {
      let csv = 'id,v\n';
      for (let i = from; i < from + n; i++) csv += `${i},v${i}\n`;
      return csv;
    };
    const jobs = await Promise.all([
      submit('race.csv', rows(1, 20_000), { dataset: 'race' }),
      submit('race.csv', rows(20_001, 20_000), { dataset: 'race' }),
      submit('race.csv', rows(40_001, 5000), { dataset: 'race', mode: 'merge', key: 'id' }),
      submit('race.csv', rows(45_001, 5000), { dataset: 'race' }),
    ]);
    for (const res of jobs) expect((await waitForJob(server.url, res.body.job_id, 120_000)).status).toBe('completed');
    expect(
      await sql('SELECT count(*)::int AS n, count(DISTINCT id)::int AS d, min(id)::int AS lo, max(id)::int AS hi FROM datasets.race'),
    ).toEqual([{ n: 50_001, d: 50_001, lo: 0, hi: 50_000 }]);
    expect((await getJson(`${server.url}/api/datasets/race`)).body.row_count).toBe(50_001);
  }, 180_000);

  it('exports CSV and NDJSON; a CSV exported and loaded again gives the same rows and types', async () => {
    const csv =
      'id,price,ok,day,at,name,doc\n1,9.50,true,2026-01-31,2026-01-31T09:30:00.123456Z,"a, ""b""","{""k"": [1]}"\n2,,false,,,,\n3,-0.25,TRUE,2024-02-29,2026-03-01T00:00:00+01:00, padded ,[1]\n';
    expect((await load('source.csv', csv, { dataset: 'round_src' })).status).toBe('completed');
    const types = await typesOf('round_src');
    expect(types).toEqual({ id: 'bigint', price: 'numeric', ok: 'boolean', day: 'date', at: 'timestamptz', name: 'text', doc: 'jsonb' });
    const exported = await fetch(`${server.url}/api/datasets/round_src/export?format=csv`);
    expect(exported.status).toBe(200);
    expect(exported.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    const text = await exported.text();
    expect(text.split('\r\n')[0]).toBe('id,price,ok,day,at,name,doc');
    expect((await load('round.csv', text, { dataset: 'round_back' })).status).toBe('completed');
    expect(await typesOf('round_back')).toEqual(types);
    expect(await rowsOf('round_back')).toEqual(await rowsOf('round_src'));

    const ndjson = await (await fetch(`${server.url}/api/datasets/round_src/export?format=ndjson`)).text();
    const lines = ndjson
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines).toEqual(await rowsOf('round_src'));
  });

  it('exports CSV safe for a spreadsheet with excel_safe=true: formulas made text, control characters escaped', async () => {
    const values = [
      '=HYPERLINK("http://evil.example","click")',
      "+cmd|' /C calc'!A0",
      '-2+3',
      '@SUM(A1:A2)',
      '\tx',
      '\r=1',
      '-5',
      '+1.5e3',
      'plain',
      'red \x1b[31mhi\x07',
    ];
    const csv = `n,v\n${values.map((v, i) => `${i},"${v.replaceAll('"', '""')}"`).join('\n')}\n`;
    expect((await load('formulas.csv', csv, { dataset: 'formulas', schema: JSON.stringify({ v: 'text' }) })).status).toBe('completed');
    const read = async (query: string) => {
      const res = await fetch(`${server.url}/api/datasets/formulas/export?${query}`);
      expect(res.status).toBe(200);
      const back = await load('back.csv', await res.text(), {
        dataset: `formulas_${query.length}`,
        mode: 'replace',
        schema: JSON.stringify({ v: 'text' }),
      });
      expect(back.status).toBe('completed');
      return (await rowsOf(`formulas_${query.length}`)).map((row) => row.v);
    };
    expect(await read('format=csv')).toEqual(values);
    expect(await read('format=csv&excel_safe=true')).toEqual([
      `'=HYPERLINK("http://evil.example","click")`,
      `'+cmd|' /C calc'!A0`,
      `'-2+3`,
      `'@SUM(A1:A2)`,
      `'\tx`,
      `'\r=1`,
      '-5',
      '+1.5e3',
      'plain',
      'red \\u{1b}[31mhi\\u{7}',
    ]);
    expect((await fetch(`${server.url}/api/datasets/formulas/export?excel_safe=maybe`)).status).toBe(422);
  });

  it('loads an Excel sheet with its types: numbers as numbers, dates as dates, times as timestamps, booleans', async () => {
    const day = (iso: string) => (Date.parse(iso) - Date.UTC(1899, 11, 30)) / 86_400_000;
    const book = xlsxOf({
      Orders: [
        ['Order', 'Qty', 'Price', 'Ordered', 'Shipped at', 'Paid', 'Customer'],
        [1001, 3, 9.99, { date: day('2026-01-31T00:00:00Z') }, { datetime: day('2026-02-02T14:05:00Z') }, true, 'Ada'],
        [1002, 12, 0.5, { date: day('2024-02-29T00:00:00Z') }, null, false, { inline: 'Grace' }],
      ],
    });
    const form = new FormData();
    form.append('file', new Blob([book]), 'Orders 2026.xlsx');
    const res = await fetch(`${server.url}/api/upload`, { method: 'POST', body: form });
    expect(res.status).toBe(202);
    const job = await waitForJob(server.url, ((await res.json()) as JobPayload).job_id, 60_000);
    expect(job).toMatchObject({ status: 'completed', source_type: 'xlsx_upload', dataset: 'orders_2026', records_processed: 2 });
    expect(await typesOf('orders_2026')).toEqual({
      order_: 'bigint',
      qty: 'bigint',
      price: 'numeric',
      ordered: 'date',
      shipped_at: 'timestamptz',
      paid: 'boolean',
      customer: 'text',
    });
    expect(
      await sql(
        "SELECT sum(qty * price)::text AS total, min(ordered)::text AS first, to_char(max(shipped_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS shipped FROM datasets.orders_2026",
      ),
    ).toEqual([{ total: '35.97', first: '2024-02-29', shipped: '2026-02-02 14:05' }]);
  });

  it('reads back columns named like the aliases its own queries use (r, t, q)', async () => {
    const job = await load('aliases.json', '[{"r": {"x": 1}, "t": "tee", "q": 3}]', { dataset: 'aliases' });
    expect(job.status).toBe('completed');
    const row = { r: { x: 1 }, t: 'tee', q: 3 };
    expect((await getJson(`${server.url}/api/job/${job.job_id}/records`)).body.results.map((result: any) => result.data)).toEqual([row]);
    expect(await rowsOf('aliases')).toEqual([row]);
    expect(JSON.parse(await (await fetch(`${server.url}/api/datasets/aliases/export?format=ndjson`)).text())).toEqual(row);
    const res = await fetch(`${server.url}/api/sql`, {
      method: 'POST',
      body: '{"sql": "SELECT q, r, 1 AS q2 FROM aliases"}',
      headers: { 'content-type': 'application/json' },
    });
    expect(rowObjects(await res.json())).toEqual({ rows: [{ q: 3, r: { x: 1 }, q2: 1 }], truncated: false });
  });

  it('answers 404, 409 and 422 as it should', async () => {
    expect((await getJson(`${server.url}/api/datasets/nope`)).body).toEqual({
      detail: 'No dataset named "nope"',
      code: 'dataset_not_found',
    });
    for (const path of ['/api/datasets/Nope', '/api/datasets/nope/rows', '/api/datasets/nope/export'])
      expect((await fetch(server.url + path)).status).toBe(404);
    expect((await fetch(`${server.url}/api/datasets/nope`, { method: 'DELETE' })).status).toBe(404);

    const bad = async (query: Record<string, string>, fields: Record<string, string> = {}) => {
      const res = await submit('x.csv', 'a\n1\n', query, fields);
      expect(res.status, JSON.stringify(res.body)).toBe(422);
      return res.body.detail.map((d: { loc: string[]; msg: string }) => `${d.loc.join('.')}: ${d.msg}`);
    };
    expect(await bad({ dataset: 'Orders' })).toEqual([
      'query.dataset: a dataset name is lower-case letters, digits and _, starting with a letter, at most 63 characters: "Orders" is not',
    ]);
    expect(await bad({ dataset: 'select' })).toEqual([
      'query.dataset: "select" is a word PostgreSQL reserves: choose another dataset name',
    ]);
    expect(await bad({ dataset: 'a'.repeat(64) })).toHaveLength(1);
    expect(await bad({ mode: 'upsert' })).toEqual(['query.mode: mode is one of append, replace, merge (got "upsert")']);
    expect(await bad({ mode: 'merge' })).toEqual([
      'query.key: mode=merge needs key: the column (or comma-separated columns) rows are matched on',
    ]);
    expect(await bad({ key: 'id' })).toEqual(['query.key: key is used only with mode=merge']);
    expect(await bad({ schema: '{"a": "integer"}' })).toEqual([
      'query.schema: the type of "a" is one of bigint, numeric, boolean, date, timestamptz, text, jsonb (got "integer")',
    ]);
    expect(await bad({ schema: '[1]' })).toHaveLength(1);
    expect(await bad({ schema_update: 'yes' })).toHaveLength(1);
    expect(await bad({}, { dataset: 'Bad Name' })).toEqual([
      'body.dataset: a dataset name is lower-case letters, digits and _, starting with a letter, at most 63 characters: "Bad Name" is not',
    ]);
    // A form field before the file names the dataset; the query string wins over it.
    const byField = await submit('x.csv', 'a\n1\n', {}, { dataset: 'from_field' });
    expect(byField.body.dataset).toBe('from_field');
    const byQuery = await submit('x.csv', 'a\n1\n', { dataset: 'from_query' }, { dataset: 'from_field' });
    expect(byQuery.body.dataset).toBe('from_query');
    const posted = await fetch(`${server.url}/api/ingest/json?dataset=posted&mode=merge&key=id`, {
      method: 'POST',
      body: '[{"id": 1}]',
      headers: { 'content-type': 'application/json' },
    });
    expect(await posted.json()).toMatchObject({ dataset: 'posted', mode: 'merge', key: ['id'] });
    const unnamed = await fetch(`${server.url}/api/ingest/json`, {
      method: 'POST',
      body: '[{"id": 1}]',
      headers: { 'content-type': 'application/json' },
    });
    expect(await unnamed.json()).toMatchObject({ dataset: 'records', mode: 'append', key: null });
    for (const res of [byField, byQuery]) await waitForJob(server.url, res.body.job_id);

    // Deleting a dataset: 409 while a job that writes it is queued or running, then 204.
    let big = 'id\n';
    for (let i = 0; i < 200_000; i++) big += `${i}\n`;
    await load('busy.csv', 'id\n-1\n', { dataset: 'busy' });
    const busy = await submit('busy.csv', big, { dataset: 'busy' });
    const refused = await fetch(`${server.url}/api/datasets/busy`, { method: 'DELETE' });
    expect(await refused.json()).toEqual({
      detail: 'A job that writes dataset "busy" is queued or running: cancel it or wait for it to end',
      code: 'dataset_busy',
    });
    expect((await waitForJob(server.url, busy.body.job_id, 120_000)).status).toBe('completed');
    expect((await fetch(`${server.url}/api/datasets/busy`, { method: 'DELETE' })).status).toBe(204);
    expect(await (await fetch(`${server.url}/api/datasets/from_field`, { method: 'DELETE' })).text()).toBe('');
    expect((await getJson(`${server.url}/api/datasets/from_field`)).status).toBe(404);
    expect(await sql(`SELECT to_regclass('datasets.from_field') AS t`)).toEqual([{ t: null }]);
  }, 120_000);

  it('lists datasets by name, paged, and the jobs that wrote one', async () => {
    const first = await getJson(`${server.url}/api/datasets?limit=2`);
    expect(first.status).toBe(200);
    expect(first.body.results).toHaveLength(2);
    const second = await getJson(`${server.url}/api/datasets?limit=2&cursor=${first.body.next_cursor}`);
    expect(second.body.results[0].name > first.body.results[1].name).toBe(true);
    const jobs = await getJson(`${server.url}/api/jobs?dataset=people`);
    expect(jobs.body.results.length).toBeGreaterThanOrEqual(5);
    expect(jobs.body.results.every((j: JobPayload) => j.dataset === 'people')).toBe(true);
  });

  it('answers read-only SQL over the datasets (POST /api/sql), and refuses anything else', async () => {
    const query = async (text: string) => {
      const res = await fetch(`${server.url}/api/sql`, {
        method: 'POST',
        body: JSON.stringify({ sql: text }),
        headers: { 'content-type': 'application/json' },
      });
      return { status: res.status, body: rowObjects(await res.json()) };
    };
    expect(await query('SELECT id, name FROM people; ')).toEqual({
      status: 200,
      body: { rows: [{ id: 10, name: 'only' }], truncated: false },
    });
    // never_sampled (a million rows) is loaded in the full run only; race (50,001 rows) is there in both.
    if (!FAST) {
      expect((await query('SELECT sum(v) AS total, count(*) AS n FROM datasets.never_sampled -- a comment')).body.rows).toEqual([
        { total: 499_499_001.5, n: 1_000_000 },
      ]);
    }
    const many = FAST ? 'race' : 'never_sampled';
    expect((await query('SELECT big FROM json_types WHERE n = 1')).body).toEqual({
      rows: [{ big: Number('123456789012345678901234567890') }],
      truncated: false,
    });
    const text = await (
      await fetch(`${server.url}/api/sql`, {
        method: 'POST',
        body: '{"sql": "SELECT big FROM json_types WHERE n = 1"}',
        headers: { 'content-type': 'application/json' },
      })
    ).text();
    expect(text).toBe('{"columns":[{"name":"big","type":"numeric"}],"rows":[[123456789012345678901234567890]],"truncated":false}');
    expect((await query(`SELECT id FROM ${many}`)).body.truncated).toBe(true);
    expect((await query(`SELECT id FROM ${many}`)).body.rows).toHaveLength(1000);

    const refused = async (text: string) => {
      const res = await query(text);
      expect(res.status, text).toBe(422);
      return `${res.body.code}: ${res.body.detail}`;
    };
    expect(await refused('SELECT * FROM public.ingest_jobs')).toBe(
      'sql_refused: "public.ingest_jobs" is not a dataset: a query reads the tables of schema datasets only',
    );
    expect(await refused('SELECT * FROM ingest_jobs')).toBe(
      'sql_refused: "ingest_jobs" is not a dataset: a query reads the tables of schema datasets only',
    );
    expect(await refused('SELECT * FROM pg_catalog.pg_authid')).toMatch(/^sql_refused: "pg_catalog.pg_authid" is not a dataset/);
    expect(await refused("SELECT pg_read_file('/etc/passwd')")).toBe(
      'sql_refused: the function pg_read_file may not be called here (functions that compute on values only)',
    );
    expect(await refused("SELECT set_config('role', 'postgres', true), count(*) FROM people")).toMatch(
      /^sql_refused: the function set_config/,
    );
    expect(await refused("SELECT query_to_xml('select 1', true, true, '')")).toMatch(/^sql_refused: the function query_to_xml/);
    expect(await refused('SELECT pg_sleep(10)')).toMatch(/^sql_refused: the function pg_sleep/);
    expect(await refused('DELETE FROM people')).toBe('sql_refused: only SELECT queries run here (got DeleteStmt)');
    expect(await refused('WITH gone AS (DELETE FROM people RETURNING *) SELECT * FROM gone')).toBe('sql_refused: a query may not write');
    expect(await refused('SELECT 1; DROP TABLE people')).toBe('sql_refused: send one statement at a time');
    expect(await refused('SELECT * INTO copy FROM people')).toBe('sql_refused: SELECT INTO creates a table');
    expect(await refused('SELECT * FROM people FOR UPDATE')).toBe('sql_refused: FOR UPDATE and FOR SHARE lock rows');
    expect(await refused('SELEC 1')).toMatch(/^sql_refused: the query is not valid SQL: syntax error at or near "SELEC"/);
    expect(await refused('SELECT nope FROM people')).toBe('sql_error: column "nope" does not exist');
    expect(await refused('SELECT 1 / 0')).toBe('sql_error: division by zero');
    // Three ways, so that the estimate is over the bound on race too (50,001² rows cost less than it).
    expect(await refused(`SELECT count(*) FROM ${many} a, ${many} b, ${many} c`)).toMatch(
      /^sql_too_costly: the query would cost \d+ by PostgreSQL's estimate, over SQL_MAX_COST \((10000000|100000)\)/,
    );
    expect((await query('')).status).toBe(422);
    expect(await sql('SELECT count(*)::int AS n FROM datasets.people')).toEqual([{ n: 1 }]); // nothing was written
  });

  it('never answered 5xx', () => {
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
  });
});
