/**
 * Issue 25 through the API: the CSV dialect options (checked, honoured, kept), the dialect a
 * job shows, a header-only file, a schema that names a column the file does not have, and
 * POST /api/preview (what a load would make of the start of a file, with nothing stored).
 */
import { existsSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobPayload } from '../src/core/job.js';
import { zipOf } from './files.js';
import { backends, createSandbox, getJson, postJson, startServer, waitForJob, type Sandbox, type TestServer } from './helpers.js';

async function uploadWith(baseUrl: string, name: string, content: BlobPart, query = '', fields: Record<string, string> = {}) {
  const form = new FormData();
  for (const [field, value] of Object.entries(fields)) form.append(field, value);
  form.append('file', new Blob([content]), name);
  const res = await fetch(`${baseUrl}/api/upload${query && `?${query}`}`, { method: 'POST', body: form });
  return { status: res.status, body: await res.json() };
}

async function preview(baseUrl: string, name: string, content: BlobPart, query = '') {
  const form = new FormData();
  form.append('file', new Blob([content]), name);
  const res = await fetch(`${baseUrl}/api/preview${query && `?${query}`}`, { method: 'POST', body: form });
  return { status: res.status, body: await res.json() };
}

/** Files served to imports. */
function startFiles(files: Record<string, string>): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const body = files[req.url!.split('?')[0]!];
    if (body === undefined) res.writeHead(404).end();
    else res.writeHead(200, { 'content-type': 'text/csv' }).end(body);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })),
  );
}

const SEMICOLONS = 'id;name;amount\n1;anna;10\n2;bo;20\n3;cy;30\n';

describe.each(backends())('messy files through the API ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  let files: { server: Server; url: string };

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { IMPORT_ALLOW_PRIVATE: 'true' });
    files = await startFiles({ '/orders.csv': 'id,name\n1,a\n2,b\n', '/semi.csv': SEMICOLONS });
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
    await new Promise((resolve) => files?.server.close(resolve));
  });

  const loaded = async (res: { status: number; body: { job_id: string } }): Promise<JobPayload> => {
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return waitForJob(server.url, res.body.job_id, 60_000);
  };
  const rowsOf = async (dataset: string) => (await getJson(`${server.url}/api/datasets/${dataset}/rows?limit=100`)).body.results;

  it('refuses wrong dialect options with 422 naming each, on uploads (query and form) and imports', async () => {
    const cases: [string, string][] = [
      ['delimiter=%23', 'delimiter'],
      ['quote=backtick', 'quote'],
      ['escape=slash', 'escape'],
      ['header_row=0', 'header_row'],
      ['header_row=x', 'header_row'],
      ['skip_lines=-1', 'skip_lines'],
      ['ragged=drop', 'ragged'],
      ['header_row=2&skip_lines=1', 'skip_lines'],
    ];
    for (const [query, field] of cases) {
      const res = await uploadWith(server.url, 'a.csv', 'a,b\n1,2\n', query);
      expect(res.status, query).toBe(422);
      expect(res.body.code).toBe('validation_error');
      expect(res.body.detail.map((d: { loc: string[] }) => d.loc)).toContainEqual(['query', field]);
    }
    const form = await uploadWith(server.url, 'a.csv', 'a,b\n1,2\n', '', { ragged: 'sometimes' });
    expect(form.status).toBe(422);
    expect(form.body.detail[0].loc).toEqual(['body', 'ragged']);
    // CSV-only options are refused for other formats.
    const json = await uploadWith(server.url, 'a.json', '[{"a":1}]', 'quote=single&ragged=pad');
    expect(json.status).toBe(422);
    expect(json.body.detail.map((d: { msg: string }) => d.msg)).toEqual([
      'quote applies to CSV files only',
      'ragged applies to CSV files only',
    ]);
    const imported = await postJson(`${server.url}/api/import`, { url: `${files.url}/orders.csv`, header_row: 0, escape: 'x' });
    expect(imported.status).toBe(422);
    expect(imported.body.detail.map((d: { loc: string[] }) => d.loc)).toEqual([
      ['body', 'escape'],
      ['body', 'header_row'],
    ]);
    const schedule = await postJson(`${server.url}/api/schedules`, {
      import: { url: `${files.url}/orders.csv`, ragged: 'x' },
      every: '15m',
    });
    expect(schedule.status).toBe(422);
    expect(schedule.body.detail[0].loc).toEqual(['body', 'ragged']);
    expect((await getJson(`${server.url}/api/jobs`)).body.results).toEqual([]);
  });

  it('accepts every delimiter by its character or name, and honours one given', async () => {
    for (const delimiter of [',', ';', '\t', '|', ' ', ', ', 'comma', 'semicolon', 'tab', 'pipe', 'space', 'comma_space']) {
      const res = await uploadWith(server.url, 'd.csv', 'a\n1\n', `delimiter=${encodeURIComponent(delimiter)}&dataset=delims`);
      expect(res.status, delimiter).toBe(202);
      await waitForJob(server.url, res.body.job_id);
    }
    // The file would be read as ;-separated: delimiter=pipe says otherwise.
    const job = await loaded(await uploadWith(server.url, 'p.csv', 'a;b|c\n1;2|3\n', 'delimiter=pipe&dataset=piped'));
    expect(job.status).toBe('completed');
    expect(await rowsOf('piped')).toEqual([{ a_b: '1;2', c: 3 }]);
  });

  it('shows the dialect a ;-delimited upload was read with on its job, and where the whole file types a column otherwise than its start', async () => {
    const job = await loaded(await uploadWith(server.url, 'semi.csv', SEMICOLONS));
    expect(job).toMatchObject({ status: 'completed', records_processed: 3, warnings: null });
    expect(job.dialect).toMatchObject({
      delimiter: ';',
      quote: '"',
      escape: 'double',
      line_ending: 'LF',
      header_row: 1,
      header_rows: 1,
      columns: ['id', 'name', 'amount'],
      skipped: [],
      skipped_lines: 0,
    });
    // The job answers the same from the cache and from the database (the payload PostgreSQL writes).
    const listed = (await getJson(`${server.url}/api/jobs?dataset=semi`)).body.results[0];
    expect(listed).toEqual(job);
    // Where the whole file types a column otherwise than its first 2,000 records (what a preview shows), the job says so.
    const late = await loaded(
      await uploadWith(
        server.url,
        'late.csv',
        `id,amount\n${Array.from({ length: 2500 }, (_, i) => `${i},${i === 2400 ? '1.5' : i}`).join('\n')}\n`,
      ),
    );
    expect(late).toMatchObject({
      status: 'completed',
      warnings: ['column "amount": the first 2,000 rows read as bigint, the whole file as numeric'],
    });
    expect((await getJson(`${server.url}/api/jobs?dataset=late`)).body.results[0]).toEqual(late);
    const json = await loaded(await uploadWith(server.url, 'r.json', '[{"a":1}]'));
    expect(json).toMatchObject({ status: 'completed', dialect: null });
  });

  it('makes a dataset with the columns of a header-only file and 0 rows, in every mode', async () => {
    for (const mode of ['append', 'replace', 'merge']) {
      const dataset = `header_only_${mode}`;
      const job = await loaded(
        await uploadWith(
          server.url,
          'h.csv',
          'id,name,Unit Price\n',
          `dataset=${dataset}&mode=${mode}${mode === 'merge' ? '&key=id' : ''}`,
        ),
      );
      expect(job, JSON.stringify(job)).toMatchObject({ status: 'completed', records_processed: 0, rows_inserted: 0 });
      const { body } = await getJson(`${server.url}/api/datasets/${dataset}`);
      expect(body.columns.map((c: { name: string; original_name: string }) => [c.name, c.original_name])).toEqual([
        ['id', 'id'],
        ['name', 'name'],
        ['unit_price', 'Unit Price'],
      ]);
      expect(body.row_count).toBe(0);
      // Loaded again, into the dataset it made: still no rows, nothing to widen.
      expect(
        (
          await loaded(
            await uploadWith(
              server.url,
              'h.csv',
              'id,name,Unit Price\n',
              `dataset=${dataset}&mode=${mode}${mode === 'merge' ? '&key=id' : ''}`,
            ),
          )
        ).status,
      ).toBe('completed');
    }
  });

  it('refuses an upload whose schema names a column the file does not have (422 naming it and the columns); an import fails so', async () => {
    const res = await uploadWith(
      server.url,
      'customers.csv',
      'customer_id,Name\n1,a\n',
      `schema=${encodeURIComponent('{"custmer_id":"text","name":"text"}')}`,
    );
    expect(res.status).toBe(422);
    expect(res.body.detail).toEqual([
      {
        loc: ['query', 'schema'],
        msg: 'schema names a column the file does not have: "custmer_id" (its columns: customer_id, Name)',
        type: 'value_error',
      },
    ]);
    // As a form field too; the name as written matches as well as the column's name.
    const form = await uploadWith(server.url, 'customers.csv', 'customer_id,Name\n1,a\n', '', { schema: '{"Name":"text","x":"bigint"}' });
    expect(form.status).toBe(422);
    expect(form.body.detail[0]).toMatchObject({ loc: ['body', 'schema'], msg: expect.stringContaining('"x"') });
    expect((await getJson(`${server.url}/api/jobs`)).body.results.filter((j: JobPayload) => j.file_name === 'customers.csv')).toEqual([]);
    expect(readdirSync(server.config.uploadDir).filter((f) => !f.startsWith('.'))).toEqual(
      expect.not.arrayContaining([expect.stringMatching(/part|spool/)]),
    );
    const job = await loaded(
      await postJson(`${server.url}/api/import`, { url: `${files.url}/orders.csv`, dataset: 'typo', schema: { idd: 'bigint' } }),
    );
    expect(job).toMatchObject({ status: 'failed', error: 'schema names a column the file does not have: "idd" (its columns: id, name)' });
    expect((await getJson(`${server.url}/api/datasets/typo`)).status).toBe(404);
  });

  it('previews a file: its dialect, columns and first rows as they would load; nothing is stored', async () => {
    const jobsBefore = (await getJson(`${server.url}/api/jobs?limit=100`)).body.results.length;
    const { status, body } = await preview(server.url, 'people.csv', 'id;name;note\n1;anna;\n3;cy\n2;bo;x\n');
    expect(status, JSON.stringify(body)).toBe(200);
    expect(body).toMatchObject({ format: 'csv', encoding: 'utf-8', truncated: false, warnings: [] });
    expect(body.dialect).toMatchObject({ delimiter: ';', header_row: 1, columns: ['id', 'name', 'note'] });
    expect(body.columns.map((c: { name: string; type: string }) => [c.name, c.type])).toEqual([
      ['id', 'bigint'],
      ['name', 'text'],
      ['note', 'text'],
    ]);
    expect(body.columns[0]).toMatchObject({ original: 'id', reading: null, evidence: expect.any(Array) });
    expect(body.rows).toEqual([
      ['1', 'anna', null],
      ['2', 'bo', 'x'],
    ]);
    expect(body.row_errors).toEqual([{ line: 3, error: expect.stringContaining('line 3'), excerpt: '3;cy' }]);
    // The same as the raw body, with options in the query.
    const raw = await fetch(`${server.url}/api/preview?delimiter=pipe`, {
      method: 'POST',
      body: 'a|b\n1|2\n',
      headers: { 'content-type': 'text/csv' },
    });
    expect(raw.status).toBe(200);
    expect(await raw.json()).toMatchObject({ rows: [['1', '2']], columns: [{ name: 'a' }, { name: 'b' }] });
    // An import, read by the server itself.
    const imported = await postJson(`${server.url}/api/preview`, { url: `${files.url}/semi.csv` });
    expect(imported.status).toBe(200);
    expect(imported.body.rows).toEqual([
      ['1', 'anna', '10'],
      ['2', 'bo', '20'],
      ['3', 'cy', '30'],
    ]);
    // Compressed or zipped: read from the decompressed text; the spooled zip is removed.
    for (const [name, bytes] of [
      ['semi.csv.gz', gzipSync(SEMICOLONS)],
      ['semi.zip', zipOf({ 'semi.csv': SEMICOLONS })],
    ] as const) {
      const packed = await preview(server.url, name, bytes);
      expect(packed.status, name).toBe(200);
      expect(packed.body.rows, name).toEqual(imported.body.rows);
    }
    // The encoding each text format was read in: found from the bytes, not only for CSV.
    const latin = Buffer.from('{"name": "M\u00fcller", "city": "K\u00f6ln"}\n', 'latin1');
    const utf16 = Buffer.from('[{"name": "Ada"}]', 'utf16le');
    for (const [name, bytes, encoding] of [
      ['people.ndjson', latin, 'windows-1252'],
      ['people.json', utf16, 'utf-16le'],
      ['people.csv', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('a,b\n1,2\n')]), 'utf-8'],
    ] as const) {
      const read = await preview(server.url, name, bytes);
      expect(read.status, name).toBe(200);
      expect(read.body.encoding, name).toBe(encoding);
    }
    expect((await preview(server.url, 'people.ndjson', latin)).body.rows).toEqual([['Müller', 'Köln']]);
    // A schema typo is a warning here (a load refuses it).
    const typo = await preview(server.url, 'p.csv', 'a,b\n1,2\n', `schema=${encodeURIComponent('{"c":"text"}')}`);
    expect(typo.body.warnings).toEqual([expect.stringContaining('"c" (its columns: a, b)')]);
    expect((await getJson(`${server.url}/api/jobs?limit=100`)).body.results.length).toBe(jobsBefore);
    expect((await getJson(`${server.url}/api/datasets/people`)).status).toBe(404);
    expect(existsSync(server.config.uploadDir) ? readdirSync(server.config.uploadDir).filter((f) => /spool|part/.test(f)) : []).toEqual([]);
  });

  it('answers a file it cannot read with 4xx {detail, code}, never a 500', async () => {
    const bad = await preview(server.url, 'bad.csv', Buffer.from([0x61, 0x0a, 0xff, 0x01, 0x0a])); // not UTF-8, and not text
    expect(bad.status).toBe(422);
    expect(bad.body).toMatchObject({ code: 'unreadable_file', detail: expect.stringContaining('UTF-8') });
    const missing = await postJson(`${server.url}/api/preview`, { url: `${files.url}/nothing.csv` });
    expect(missing.status).toBe(422);
    const empty = await preview(server.url, 'empty.csv', '');
    expect(empty).toMatchObject({ status: 422, body: { code: 'empty_file' } });
    const unsupported = await preview(server.url, 'notes.txt', 'hello\n');
    expect(unsupported.status).toBe(415);
    const options = await preview(server.url, 'a.csv', 'a\n1\n', 'ragged=maybe');
    expect(options.status).toBe(422);
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
  });

  it('reads at most the preview bounds of a 50 MiB body, answers, and stores nothing', async () => {
    const row = 'abcdefghij,1234567890,some text of a row\n';
    const big = `name,number,text\n${row.repeat(Math.ceil((50 * 1024 ** 2) / row.length))}`;
    const started = performance.now();
    const multipart = await preview(server.url, 'big.csv', big);
    expect(multipart.status).toBe(200);
    expect(multipart.body).toMatchObject({ truncated: true, row_errors: [] });
    expect(multipart.body.rows).toHaveLength(50);
    expect(multipart.body.warnings[0]).toMatch(/only the start of the input was read \(2,000 records\)/);
    const raw = await fetch(`${server.url}/api/preview`, { method: 'POST', body: big, headers: { 'content-type': 'text/csv' } });
    expect(raw.status).toBe(200);
    expect(await raw.json()).toMatchObject({ truncated: true, columns: [{ type: 'text' }, { type: 'bigint' }, { type: 'text' }] });
    // Few records of a large size: cut by bytes, the last (perhaps cut) record left out.
    const wide = `a,b\n${`${'x'.repeat(1024 * 1024)},1\n`.repeat(8)}`;
    const cut = await preview(server.url, 'wide.csv', wide);
    expect(cut.status).toBe(200);
    expect(cut.body).toMatchObject({ truncated: true, row_errors: [] });
    expect(cut.body.rows.length).toBeLessThanOrEqual(4);
    expect(performance.now() - started).toBeLessThan(30_000);
    expect(existsSync(server.config.uploadDir) ? readdirSync(server.config.uploadDir).filter((f) => /spool|part/.test(f)) : []).toEqual([]);
    expect((await getJson(`${server.url}/api/datasets/big`)).status).toBe(404);
  });
});
