/**
 * What a dataset holds is what the input said, in every mode (issue 23): each column keeps its
 * own values whatever its name; a value PostgreSQL cannot hold is a row error, not a failed
 * job; a bad first row does not hide a CSV's header; a row error shows its line as written;
 * the objects of two datasets never share a name, also with datasets an older Intake made.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobPayload } from '../src/core/job.js';
import { toName } from '../src/datasets/names.js';
import { xlsxOf } from './files.js';
import {
  backends,
  createSandbox,
  getJson,
  postRecords,
  recordsOf,
  startServer,
  waitForJob,
  type Sandbox,
  type TestServer,
} from './helpers.js';

describe.each(backends())('dataset integrity ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { WORKER_CONCURRENCY: '2' });
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  async function load(file: string, content: string | Uint8Array<ArrayBuffer>, query: Record<string, string> = {}): Promise<JobPayload> {
    const form = new FormData();
    form.append('file', new Blob([content]), file);
    const res = await fetch(`${server.url}/api/upload?${new URLSearchParams(query)}`, { method: 'POST', body: form });
    const body = await res.json();
    expect(res.status, JSON.stringify(body)).toBe(202);
    return waitForJob(server.url, body.job_id, 60_000);
  }

  const sql = async <R = Record<string, unknown>>(text: string, params: unknown[] = []) =>
    (await server.intake.db.query<R>(text, params)).rows;
  const columnsOf = async (name: string): Promise<{ name: string; type: string; original_name: string }[]> =>
    (await getJson(`${server.url}/api/datasets/${name}`)).body.columns;
  const rowErrors = async (jobId: string): Promise<{ line: number; message: string; excerpt: string }[]> =>
    (await getJson(`${server.url}/api/job/${jobId}/errors`)).body.results;
  /** The dataset's user columns as [name, original name, value as text] per row, in table order. */
  async function cells(dataset: string): Promise<string[][][]> {
    const columns = await columnsOf(dataset);
    const rows = await sql<Record<string, string | null>>(
      `SELECT ${columns.map((c) => `${c.name}::text`).join(', ')} FROM datasets.${dataset} ORDER BY _intake_record_no`,
    );
    return rows.map((row) => columns.map((c) => [c.name, c.original_name, row[c.name] ?? 'NULL']));
  }

  it('keeps each column with its own values, whatever its name: digits, __proto__, repeated, empty (item 0)', async () => {
    const csv = await load('digits.csv', 'a,2,b\nx,y,z\n');
    expect(csv).toMatchObject({ status: 'completed', rows_inserted: 1 });
    expect(await cells('digits')).toEqual([
      [
        ['a', 'a', 'x'],
        ['c_2', '2', 'y'],
        ['b', 'b', 'z'],
      ],
    ]);
    expect((await recordsOf(server.url, csv.job_id))[0]!.data).toEqual({ a: 'x', 2: 'y', b: 'z' });

    const header = 'b,10,1,__proto__,,a,a,constructor';
    const expected = [
      ['b', 'b', 'v1'],
      ['c_10', '10', 'v2'],
      ['c_1', '1', 'v3'],
      ['proto', '__proto__', 'v4'],
      ['column_5', 'column_5', 'v5'],
      ['a', 'a', 'v6'],
      ['a_2', 'a_2', 'v7'],
      ['constructor', 'constructor', 'v8'],
    ];
    expect(await load('names.csv', `${header}\nv1,v2,v3,v4,v5,v6,v7,v8\n`)).toMatchObject({ status: 'completed', rows_inserted: 1 });
    expect(await cells('names')).toEqual([expected]);
    const sheet = xlsxOf({ S: [header.split(','), ['v1', 'v2', 'v3', 'v4', 'v5', 'v6', 'v7', 'v8']] });
    expect(await load('names_sheet.xlsx', sheet)).toMatchObject({ status: 'completed', rows_inserted: 1 });
    expect(await cells('names_sheet')).toEqual([expected]);

    // JSON keeps a key's last value, as JSON.parse does, in the order the keys were written.
    const json = '{"b":"v1","10":"v2","1":"v3","__proto__":"v4","":"v5","a":"v6","constructor":"v8"}';
    const jsonColumns = [expected[0], expected[1], expected[2], expected[3], ['column_5', '', 'v5'], expected[5], expected[7]];
    expect(await load('names_ndjson.ndjson', `${json}\n`)).toMatchObject({ status: 'completed', rows_inserted: 1 });
    expect(await cells('names_ndjson')).toEqual([jsonColumns]);
    expect(await load('names_json.json', `[${json}]`)).toMatchObject({ status: 'completed', rows_inserted: 1 });
    expect(await cells('names_json')).toEqual([jsonColumns]);
  });

  it('checks a merge key against the header when the first row is bad (item 3)', async () => {
    const job = await load('first_bad.csv', 'id,v\n1\n2,b\n', { key: 'id', mode: 'merge', max_errors: '5' });
    expect(job).toMatchObject({ status: 'completed', rows_inserted: 1, records_failed: 1 });
    expect(await cells('first_bad')).toEqual([
      [
        ['id', 'id', '2'],
        ['v', 'v', 'b'],
      ],
    ]);
    // A sheet the same: its first row has a value beyond the header's columns.
    const sheet = xlsxOf({
      S: [
        ['id', 'v'],
        [1, 'a', 'x'],
        [2, 'b'],
      ],
    });
    expect(await load('first_bad_sheet.xlsx', sheet, { key: 'id', mode: 'merge', max_errors: '5' })).toMatchObject({
      status: 'completed',
      rows_inserted: 1,
      records_failed: 1,
    });
    // A key the header does not have is still refused, saying which columns it has.
    const missing = await load('first_bad_missing.csv', 'id,v\n1\n2,b\n', { key: 'code', mode: 'merge', max_errors: '5' });
    expect(missing).toMatchObject({ status: 'failed', error: 'the key column "code" is not in the file\'s header (its columns: id, v)' });
  });

  it('shows a bad row as the file wrote it, with its own delimiter (item 9)', async () => {
    const job = await load('semicolons.csv', 'a;b;c\n1;8,493;25\n2;9,5\n3;x;"q;r"\n', {
      max_errors: '5',
      schema: '{"a":"bigint","c":"bigint"}',
    });
    expect(job).toMatchObject({ status: 'completed', rows_inserted: 1, records_failed: 2 });
    expect((await rowErrors(job.job_id)).map((e) => [e.line, e.excerpt])).toEqual([
      [3, '2;9,5'],
      [4, '3;x;"q;r"'],
    ]);
    const tabs = await load('tabs.tsv', 'a\tb\n1\t2\t3\n', { max_errors: '5' });
    expect((await rowErrors(tabs.job_id)).map((e) => e.excerpt)).toEqual(['1\t2\t3']);
  });

  it('makes a number PostgreSQL cannot hold a row error, for every type (item 22)', async () => {
    const ndjson = await load('huge.ndjson', '{"n":1e200000}\n{"n":1}\n{"n":1e-20000}\n{"n":9.9e131071}\n', { max_errors: '5' });
    expect(ndjson).toMatchObject({ status: 'completed', rows_inserted: 2, records_failed: 2 });
    expect((await rowErrors(ndjson.job_id)).map((e) => [e.line, e.excerpt])).toEqual([
      [1, '{"n":1e200000}'],
      [3, '{"n":1e-20000}'],
    ]);
    expect((await columnsOf('huge'))[0]).toMatchObject({ name: 'n', type: 'numeric' });

    // Inside a nested value (jsonb), posted, and into declared types.
    const posted = await postRecords(
      server.url,
      '[{"j":{"a":[1,2e200000]}},{"j":{"a":1}}]',
      'application/json',
      'dataset=huge_nested&max_errors=5',
    );
    expect(posted.status).toBe(202);
    const nested = await waitForJob(server.url, posted.body.job_id);
    expect(nested).toMatchObject({ status: 'completed', rows_inserted: 1, records_failed: 1 });
    const declared = await load(
      'huge_declared.ndjson',
      '{"n":1e200000,"i":1}\n{"n":2,"i":9223372036854775808}\n{"n":3,"i":3,"j":[1e999999]}\n{"n":4,"i":4}\n',
      {
        max_errors: '5',
        schema: '{"n":"numeric","i":"bigint","j":"jsonb"}',
      },
    );
    expect(declared).toMatchObject({ status: 'completed', rows_inserted: 1, records_failed: 3 });
    // A CSV: past numeric's range a value is text (inferred), or a row error (declared).
    const csv = await load('huge_csv.csv', 'n,j\n1e200000,"[1e200000]"\n1,"[1]"\n', { max_errors: '5' });
    expect(csv).toMatchObject({ status: 'completed', rows_inserted: 2 });
    expect(Object.fromEntries((await columnsOf('huge_csv')).map((c) => [c.name, c.type]))).toEqual({ n: 'text', j: 'text' });
    const csvDeclared = await load('huge_csv_declared.csv', 'n,j\n1e200000,[1]\n1,"[1e200000]"\n2,[2]\n', {
      max_errors: '5',
      schema: '{"n":"numeric","j":"jsonb"}',
    });
    expect(csvDeclared).toMatchObject({ status: 'completed', rows_inserted: 1, records_failed: 2 });
  });

  it('refuses a time whose UTC year is past 9999 or before 1 (item 28)', async () => {
    const outside = ['9999-12-31T23:59:59-15:00', '9999-12-31T23:59:59.9999995Z', '0001-01-01T00:00:00+00:01', '9999-12-31 12:00-12:00'];
    const inside = ['9999-12-31T23:59:59.999999Z', '9999-12-31T23:59:59+15:00', '0001-01-01T00:00:00-15:00', '9999-12-31T08:59:59-15:00'];
    for (const at of outside) {
      // Inferred, the column is text (the value kept as written); declared, the value is a row error.
      const csv = await load('late.csv', `at\n2026-01-31T09:30:00Z\n${at}\n`, { mode: 'replace' });
      expect(csv, at).toMatchObject({ status: 'completed', rows_inserted: 2 });
      expect((await columnsOf('late'))[0]!.type, at).toBe('text');
      expect((await sql('SELECT at FROM datasets.late ORDER BY _intake_record_no'))[1]).toEqual({ at });
      const json = await load('late_json.ndjson', `{"at":"2026-01-31T09:30:00Z"}\n{"at":"${at}"}\n`, { mode: 'replace' });
      expect(json, at).toMatchObject({ status: 'completed', rows_inserted: 2 });
      expect((await columnsOf('late_json'))[0]!.type, at).toBe('text');
      for (const [file, content] of [
        ['late_declared.csv', `at\n${at}\n2026-01-31T09:30:00Z\n`],
        ['late_declared.ndjson', `{"at":"${at}"}\n{"at":"2026-01-31T09:30:00Z"}\n`],
      ] as const) {
        const declared = await load(file, content, { schema: '{"at":"timestamptz"}', max_errors: '5', dataset: 'late_declared' });
        expect(declared, `${file}: ${at}`).toMatchObject({ status: 'completed', rows_inserted: 1, records_failed: 1 });
        expect((await rowErrors(declared.job_id))[0]!.message).toMatch(/column "at" is timestamptz and cannot hold/);
      }
    }
    const csv = await load('edge_times.csv', `at\n${inside.join('\n')}\n`);
    expect(csv).toMatchObject({ status: 'completed', rows_inserted: inside.length });
    expect((await columnsOf('edge_times'))[0]!.type).toBe('timestamptz');
    const rows = (await getJson(`${server.url}/api/datasets/edge_times/rows`)).body.results as { at: string }[];
    // Every time comes back as ISO 8601: a four-digit year, no BC.
    for (const row of rows) expect(row.at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$/);
    expect(rows.map((r) => r.at)).toEqual([
      '9999-12-31T23:59:59.999999+00:00',
      '9999-12-31T08:59:59+00:00',
      '0001-01-01T15:00:00+00:00',
      '9999-12-31T23:59:59+00:00',
    ]);
  });

  it("gives two datasets objects of different names, however alike the datasets' names (item 1)", async () => {
    const long = 'monthly_sales_report_region_north_america_2024_';
    for (const name of [
      `${long}01`,
      `${long}02`,
      'sales',
      'sales_intake_job',
      'sales_pkey',
      'sales__intake_id_seq',
      `${'s'.repeat(63)}`,
      `${'s'.repeat(62)}t`,
    ]) {
      for (const mode of ['append', 'merge'] as const) {
        const job = await load(`${name}.csv`, 'id,v\n1,a\n2,b\n', { dataset: name, mode, ...(mode === 'merge' ? { key: 'id' } : {}) });
        expect(job, `${name} ${mode}: ${job.error}`).toMatchObject({ status: 'completed' });
      }
      expect(await sql(`SELECT count(*)::text AS n FROM datasets.${name}`), name).toEqual([{ n: '2' }]);
    }
    // Every object but the tables is Intake's own name, never a dataset's.
    const others = await sql<{ relname: string }>(
      `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'datasets' AND c.relkind NOT IN ('r', 'p')`,
    );
    expect(others.length).toBeGreaterThan(0);
    for (const { relname } of others) expect(relname).toMatch(/^_intake_(pk|seq|job|key)_[0-9a-f]{32}$/);
  });
});

describe.each(backends().filter((b) => b.name !== 'scale-out'))('datasets an older Intake made ($name)', (backend) => {
  let sandbox: Sandbox;
  afterAll(async () => {
    await sandbox?.dispose();
  });

  it('renames their indexes, key and sequence at start, and they keep loading and merging (item 1)', async () => {
    sandbox = await createSandbox(backend);
    let server = await startServer(sandbox);
    const load = async (name: string, csv: string, query: Record<string, string>) => {
      const form = new FormData();
      form.append('file', new Blob([csv]), `${name}.csv`);
      const res = await fetch(`${server.url}/api/upload?${new URLSearchParams({ dataset: name, ...query })}`, {
        method: 'POST',
        body: form,
      });
      return waitForJob(server.url, ((await res.json()) as { job_id: string }).job_id);
    };
    const sql = async (text: string) => (await server.intake.db.query<Record<string, unknown>>(text)).rows;
    try {
      expect(await load('sales', 'id,v\n1,a\n2,b\n', { mode: 'merge', key: 'id' })).toMatchObject({
        status: 'completed',
        rows_inserted: 2,
      });
      // The names af9e390 gave: PostgreSQL's own for the key and the sequence, the name cut to 40 and a suffix for the indexes.
      const named = async (kind: string) =>
        (
          await sql(
            `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'datasets' AND c.relname LIKE '_intake_${kind}_%'`,
          )
        )[0]!.name as string;
      const [pk, seq, job, key] = [await named('pk'), await named('seq'), await named('job'), await named('key')];
      await sql(`ALTER TABLE datasets.sales RENAME CONSTRAINT ${pk} TO sales_pkey`);
      await sql(`ALTER SEQUENCE datasets.${seq} RENAME TO sales__intake_id_seq`);
      await sql(`ALTER INDEX datasets.${job} RENAME TO sales_intake_job`);
      await sql(`ALTER INDEX datasets.${key} RENAME TO sales_intake_key_0123abcd`);
    } finally {
      await server.close();
    }

    server = await startServer(sandbox);
    try {
      for (const name of ['sales_pkey', 'sales__intake_id_seq', 'sales_intake_job', 'sales_intake_key_0123abcd']) {
        expect(await load(name, 'id,v\n1,a\n', {}), name).toMatchObject({ status: 'completed', rows_inserted: 1 });
      }
      // The merge finds the key's unique index by its columns: no second one is made.
      expect(await load('sales', 'id,v\n2,B\n3,c\n', { mode: 'merge', key: 'id' })).toMatchObject({
        status: 'completed',
        rows_inserted: 1,
        rows_updated: 1,
      });
      expect(await sql(`SELECT id::text, v, _intake_id::text FROM datasets.sales ORDER BY id`)).toEqual([
        { id: '1', v: 'a', _intake_id: '1' },
        { id: '2', v: 'B', _intake_id: '2' },
        { id: '3', v: 'c', _intake_id: expect.any(String) },
      ]);
      const indexes = await sql(`SELECT indexname FROM pg_indexes WHERE schemaname = 'datasets' AND tablename = 'sales' ORDER BY 1`);
      expect(indexes).toHaveLength(3);
      for (const { indexname } of indexes) expect(indexname).toMatch(/^_intake_(pk|job|key)_[0-9a-f]{32}$/);
    } finally {
      await server.close();
    }
  });
});

describe.each(backends().filter((b) => b.name !== 'scale-out'))(
  'long column names an older Intake cut to 63 characters ($name)',
  (backend) => {
    let sandbox: Sandbox;
    afterAll(async () => {
      await sandbox?.dispose();
    });

    it('go on filling the cut column, found by the name as written, in appends and merges', async () => {
      sandbox = await createSandbox(backend);
      const server = await startServer(sandbox);
      const load = async (csv: string, query: Record<string, string> = {}) => {
        const form = new FormData();
        form.append('file', new Blob([csv]), 'orders.csv');
        const res = await fetch(`${server.url}/api/upload?${new URLSearchParams({ dataset: 'orders', ...query })}`, {
          method: 'POST',
          body: form,
        });
        return waitForJob(server.url, ((await res.json()) as { job_id: string }).job_id);
      };
      const sql = async (text: string) => (await server.intake.db.query<Record<string, unknown>>(text)).rows;
      const header = 'Quantity ordered by the customer in the first quarter of the year';
      const hashed = toName(header, 'x');
      const cut = 'quantity_ordered_by_the_customer_in_the_first_quarter_of_the_ye';
      try {
        expect(await load(`id,${header}\n1,5\n`)).toMatchObject({ status: 'completed', rows_inserted: 1 });
        // As an older Intake named it.
        await sql(`ALTER TABLE datasets.orders RENAME COLUMN ${hashed} TO ${cut}`);
        await sql(`UPDATE intake_dataset_columns SET name = '${cut}' WHERE dataset = 'orders' AND name = '${hashed}'`);
        expect(await load(`id,${header}\n2,7\n`)).toMatchObject({ status: 'completed', rows_inserted: 1 });
        expect(await load(`id,${header}\n2,8\n3,9\n`, { mode: 'merge', key: 'id' })).toMatchObject({
          status: 'completed',
          rows_inserted: 1,
          rows_updated: 1,
        });
        expect(await sql(`SELECT id::text, ${cut}::text AS q FROM datasets.orders ORDER BY id`)).toEqual([
          { id: '1', q: '5' },
          { id: '2', q: '8' },
          { id: '3', q: '9' },
        ]);
        const columns = await sql(
          `SELECT column_name FROM information_schema.columns WHERE table_schema = 'datasets' AND table_name = 'orders' AND column_name NOT LIKE '\\_intake\\_%' ORDER BY ordinal_position`,
        );
        expect(columns).toEqual([{ column_name: 'id' }, { column_name: cut }]);
      } finally {
        await server.close();
      }
    });
  },
);
