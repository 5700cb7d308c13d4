import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobPayload } from '../src/core/job.js';
import {
  backends,
  createSandbox,
  getJson,
  postRecords,
  startServer,
  upload,
  waitForJob,
  type Sandbox,
  type TestServer,
} from './helpers.js';

/** Every page of /records or /errors, following next_cursor. */
async function allPages(url: string, limit = 7): Promise<any[]> {
  const out: any[] = [];
  let cursor: string | null = null;
  do {
    const page: { status: number; body: any } = await getJson(`${url}?limit=${limit}${cursor === null ? '' : `&cursor=${cursor}`}`);
    expect(page.status).toBe(200);
    out.push(...page.body.results);
    cursor = page.body.next_cursor;
  } while (cursor !== null);
  return out;
}

describe.each(backends())('row errors, max_errors, records and byte progress ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { BATCH_SIZE: '3' });
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  const CSV = 'id,name\n1,ada\n2\n3,grace\n4,linus,extra\n5,"multi\nline"\n';

  it('fails at the first bad row by default, keeping the rows before it counted, and publishing none', async () => {
    const res = await upload(server.url, 'bad.csv', CSV);
    const job = await waitForJob(server.url, res.body.job_id);
    expect(job).toMatchObject({ status: 'failed', records_processed: 1, records_failed: 1, max_errors: 0 });
    expect(job.error).toBe('CSV error on line 3: expected 2 fields as in the header, found 1');
    const records = await allPages(`${server.url}/api/job/${job.job_id}/records`);
    expect(records).toEqual([]); // a failed job leaves its dataset as it was
    const errors = await allPages(`${server.url}/api/job/${job.job_id}/errors`);
    expect(errors).toEqual([{ line: 3, record_no: 1, message: job.error, excerpt: '2' }]);
  });

  it('skips and reports up to max_errors bad rows (query parameter), and completes', async () => {
    const res = await fetch(`${server.url}/api/upload?max_errors=2`, { method: 'POST', body: form('skip.csv', CSV) });
    expect(res.status).toBe(202);
    const job = await waitForJob(server.url, ((await res.json()) as JobPayload).job_id);
    expect(job).toMatchObject({ status: 'completed', records_processed: 3, records_failed: 2, max_errors: 2, error: null });
    expect(job.bytes_processed).toBe(job.bytes_total);
    expect(job.bytes_total).toBe(Buffer.byteLength(CSV));
    const records = await allPages(`${server.url}/api/job/${job.job_id}/records`, 1);
    expect(records).toEqual([
      { record_no: 0, data: { id: 1, name: 'ada' } },
      { record_no: 2, data: { id: 3, name: 'grace' } },
      { record_no: 4, data: { id: 5, name: 'multi\nline' } },
    ]);
    const errors = await allPages(`${server.url}/api/job/${job.job_id}/errors`, 1);
    expect(errors).toEqual([
      { line: 3, record_no: 1, message: 'CSV error on line 3: expected 2 fields as in the header, found 1', excerpt: '2' },
      { line: 5, record_no: 3, message: 'CSV error on line 5: expected 2 fields as in the header, found 3', excerpt: '4,linus,extra' },
    ]);
  });

  it('fails when the bad rows are more than max_errors (form field), naming the limit', async () => {
    const body = form('many.csv', CSV, { max_errors: '1' });
    const res = await fetch(`${server.url}/api/upload`, { method: 'POST', body });
    const job = await waitForJob(server.url, ((await res.json()) as JobPayload).job_id);
    expect(job).toMatchObject({ status: 'failed', records_failed: 2, records_processed: 2, max_errors: 1 });
    expect(job.error).toBe('CSV error on line 5: expected 2 fields as in the header, found 3 (more than max_errors=1 bad rows)');
  });

  it('reports bad NDJSON lines and non-object JSON records with their line and record number', async () => {
    const nd = await upload(server.url, 'x.ndjson', '{"a":1}\nnot json\n\n[1,2]\n{"a":2}\n');
    const ndJob = await waitForJob(server.url, nd.body.job_id);
    expect(ndJob).toMatchObject({ status: 'failed', records_processed: 1, records_failed: 1 });
    const ndRetry = await fetch(`${server.url}/api/upload?max_errors=5`, {
      method: 'POST',
      body: form('x.ndjson', '{"a":1}\nnot json\n\n[1,2]\n{"a":2}\n'),
    });
    const ndDone = await waitForJob(server.url, ((await ndRetry.json()) as JobPayload).job_id);
    expect(ndDone).toMatchObject({ status: 'completed', records_processed: 2, records_failed: 2 });
    const ndErrors = await allPages(`${server.url}/api/job/${ndDone.job_id}/errors`);
    expect(ndErrors.map((e) => [e.line, e.record_no, e.excerpt])).toEqual([
      [2, 1, 'not json'],
      [4, 2, '[1,2]'],
    ]);

    const posted = await postRecords(server.url, '[{"a":1}, 5, {"b":2}]');
    expect(posted.status).toBe(422); // max_errors=0: refused at once
    const allowed = await fetch(`${server.url}/api/ingest/json?max_errors=1`, {
      method: 'POST',
      body: '[{"a":1}, 5, {"b":2}]',
      headers: { 'content-type': 'application/json' },
    });
    expect(allowed.status).toBe(202);
    const job = await waitForJob(server.url, ((await allowed.json()) as JobPayload).job_id);
    expect(job).toMatchObject({ status: 'completed', records_processed: 2, records_failed: 1 });
    expect((await allPages(`${server.url}/api/job/${job.job_id}/errors`))[0]).toMatchObject({ record_no: 1, line: 1, excerpt: '5' }); // the body's own line
  });

  it('rejects bad max_errors, cursor and limit values with 422, and unknown jobs with 404', async () => {
    for (const query of ['max_errors=-1', 'max_errors=abc', 'max_errors=1.5', 'maxerrors=1']) {
      const res = await fetch(`${server.url}/api/upload?${query}`, { method: 'POST', body: form('a.csv', 'a\n1\n') });
      expect(res.status, query).toBe(422);
      const posted = await fetch(`${server.url}/api/ingest/json?${query}`, {
        method: 'POST',
        body: '[{}]',
        headers: { 'content-type': 'application/json' },
      });
      expect(posted.status, query).toBe(422);
    }
    const job = (await upload(server.url, 'a.csv', 'a\n1\n')).body as JobPayload;
    for (const query of ['limit=0', 'limit=1001', 'cursor=-1', 'cursor=abc', 'foo=1']) {
      expect((await getJson(`${server.url}/api/job/${job.job_id}/records?${query}`)).status, query).toBe(422);
      expect((await getJson(`${server.url}/api/job/${job.job_id}/errors?${query}`)).status, query).toBe(422);
    }
    for (const id of ['6f1c8a52-2f35-4d43-9b0e-2b9f1f0f4c11', 'nope']) {
      expect((await getJson(`${server.url}/api/job/${id}/records`)).body).toEqual({ detail: 'Job not found', code: 'job_not_found' });
      expect((await getJson(`${server.url}/api/job/${id}/errors`)).status).toBe(404);
    }
  });

  it('round-trips CSV, JSON and NDJSON: /records equals the input, field for field', async () => {
    const rows = [
      { id: '1', name: 'Zoë 🚀', note: 'a, b and "c"' },
      { id: '2', name: '', note: 'line one\nline two\r\nline three' },
      { id: '3', name: 'tab\there', note: 'back\\slash \\n not a newline' },
    ];
    const quote = (v: string) => `"${v.replaceAll('"', '""')}"`;
    const csv = 'id,name,note\r\n' + rows.map((r) => [r.id, r.name, r.note].map(quote).join(',')).join('\r\n') + '\r\n';
    const nested = rows.map((r, i) => ({ ...r, n: i, tags: ['x', { deep: [1, null, true] }], empty: {} }));
    // A CSV's values are typed (id: bigint) and its "" an empty string (as COPY reads it); JSON keeps its own types.
    const typed = rows.map((r) => ({ ...r, id: Number(r.id) }));
    for (const [name, content, expected] of [
      ['r.csv', csv, typed],
      ['r.json', JSON.stringify(nested), nested],
      ['r.ndjson', nested.map((r) => JSON.stringify(r)).join('\n'), nested],
    ] as const) {
      const res = await fetch(`${server.url}/api/upload?dataset=${name.replace('.', '_')}`, { method: 'POST', body: form(name, content) });
      const job = await waitForJob(server.url, ((await res.json()) as JobPayload).job_id);
      expect(job.status, name).toBe('completed');
      const records = await allPages(`${server.url}/api/job/${job.job_id}/records`, 2);
      expect(
        records.map((r) => r.data),
        name,
      ).toEqual(expected);
      expect(records.map((r) => r.record_no)).toEqual([0, 1, 2]);
    }
  });

  it('never answered 5xx', () => {
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
  });
});

function form(name: string, content: string, fields: Record<string, string> = {}): FormData {
  const body = new FormData();
  for (const [key, value] of Object.entries(fields)) body.append(key, value);
  body.append('file', new Blob([content]), name);
  return body;
}
