import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobListSchema, jobSchema } from '../src/http/schemas.js';
import { TERMINAL_STATUSES, type JobPayload } from '../src/core/job.js';
import { findJob, findPayload, findPayloads, payloadJson } from '../src/storage/jobs.js';
import {
  backends,
  createSandbox,
  getJson,
  makeCsv,
  postRecords,
  recordsOf as recordsOfJob,
  upload,
  waitForJob,
  type Sandbox,
  type TestServer,
  startServer,
} from './helpers.js';

describe.each(backends())('API contract ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  let idle: TestServer; // no workers: jobs stay queued
  let idleSandbox: Sandbox;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { BATCH_SIZE: '100' });
    idleSandbox = await createSandbox(backend);
    idle = await startServer(idleSandbox, { WORKER_CONCURRENCY: '0' });
  });

  afterAll(async () => {
    await server?.close();
    await idle?.close();
    await sandbox?.dispose();
    await idleSandbox?.dispose();
  });

  const recordsOf = (jobId: string) => recordsOfJob(server.url, jobId);

  it('answers an upload at once with the queued job, visible at its status URL', async () => {
    const res = await upload(idle.url, 'people.csv', 'id,name\n1,ada\n');
    expect(res.status).toBe(202);
    const job = res.body;
    expect(job).toMatchObject({ status: 'queued', source_type: 'csv_upload', file_name: 'people.csv', records_processed: 0, error: null });
    expect(job.started_at).toBeNull();
    expect(job.completed_at).toBeNull();
    expect(res.headers.get('location')).toBe(`/api/job/${job.job_id}`);
    // Relative without PUBLIC_URL: never built from the Host header the client sent.
    expect(job.status_url).toBe(`/api/job/${job.job_id}`);

    const status = await getJson<JobPayload>(`${idle.url}${job.status_url}`);
    expect(status.status).toBe(200);
    const { status_url: _, ...payload } = job;
    expect(status.body).toEqual(payload);
    const list = await getJson(`${idle.url}/api/jobs?status=queued`);
    expect(list.body.results.map((j: JobPayload) => j.job_id)).toContain(job.job_id);
  });

  it('ingests a CSV upload to completed with the exact record count and every field', async () => {
    const rows = 1234;
    const res = await upload(server.url, 'notes.csv', '\uFEFF' + makeCsv(rows));
    expect(res.status).toBe(202);
    const job = await waitForJob(server.url, res.body.job_id);
    expect(job).toMatchObject({ status: 'completed', records_processed: rows, error: null });
    const records = await recordsOf(job.job_id);
    expect(records).toHaveLength(rows);
    expect(records.map((r) => r.record_no)).toEqual([...Array(rows).keys()]);
    expect(records[7]!.data).toEqual({ id: 7, name: 'user 7', note: 'note 7, with "quotes" and\na newline' });
  });

  it('ingests a JSON upload ({"records": [...]}), an NDJSON upload and posted records', async () => {
    const nested = { id: 1, tags: ['a', 'b'], owner: { name: 'ada', teams: [{ id: 3 }] } };
    const records = Array.from({ length: 250 }, (_, i) => ({ ...nested, id: i }));
    const jsonJob = await upload(server.url, 'data.json', JSON.stringify({ records }, null, 2));
    const ndjsonJob = await upload(server.url, 'data.ndjson', records.map((r) => JSON.stringify(r)).join('\r\n'));
    const posted = await postRecords(server.url, JSON.stringify(records));
    const postedNdjson = await postRecords(server.url, records.map((r) => JSON.stringify(r)).join('\n') + '\n', 'application/x-ndjson');
    expect(jsonJob.body.source_type).toBe('json_upload');
    expect(ndjsonJob.body.source_type).toBe('json_upload');
    expect(posted.body).toMatchObject({ source_type: 'json_api', file_name: null, status: 'queued' });
    expect(posted.status).toBe(202);
    expect(postedNdjson.status).toBe(202);
    for (const res of [jsonJob, ndjsonJob, posted, postedNdjson]) {
      const job = await waitForJob(server.url, res.body.job_id);
      expect(job).toMatchObject({ status: 'completed', records_processed: 250 });
      const stored = await recordsOf(job.job_id);
      expect(stored[42]!.data).toEqual(records[42]); // nested values kept as JSON
    }
  });

  it('sets each timestamp at its transition, in order', async () => {
    const res = await upload(server.url, 'small.csv', makeCsv(500));
    const job = await waitForJob(server.url, res.body.job_id);
    const submitted = Date.parse(job.submitted_at);
    const started = Date.parse(job.started_at!);
    const completed = Date.parse(job.completed_at!);
    expect(job.submitted_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(submitted).toBeLessThanOrEqual(started);
    expect(started).toBeLessThanOrEqual(completed);
  });

  it('fails a malformed file with an error that says what and where', async () => {
    const csv = await upload(server.url, 'bad.csv', 'a,b\n1,2\n3,4\n5\n6,7\n');
    const json = await upload(server.url, 'bad.json', '[{"a": 1},\n {"a": 2},\n 42]');
    const ndjson = await upload(server.url, 'bad.ndjson', '{"a":1}\n{"a":2\n');
    const truncated = await upload(server.url, 'cut.json', '[{"a": 1}, {"a": 2');
    const binary = await upload(server.url, 'image.csv', new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]));
    const expectations: [typeof csv, RegExp][] = [
      [csv, /line 4/],
      [json, /record 2 \(line 3\).*expected a JSON object/],
      [ndjson, /line 2/],
      [truncated, /ends early|truncated/],
      [binary, /UTF-8|binary/],
    ];
    for (const [res, message] of expectations) {
      expect(res.status).toBe(202);
      const job = await waitForJob(server.url, res.body.job_id);
      expect(job.status).toBe('failed');
      expect(job.error).toMatch(message);
      expect(job.completed_at).not.toBeNull();
      expect(job.error).not.toMatch(/at .*\.ts:\d+/); // no stack trace
    }
  });

  it('lists newest first, filters by status, pages by limit and offset', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await upload(idle.url, `list-${i}.csv`, 'a\n1\n')).body.job_id);
    const all = await getJson(`${idle.url}/api/jobs?limit=100`);
    expect(all.status).toBe(200);
    const times = all.body.results.map((j: JobPayload) => Date.parse(j.submitted_at));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(all.body.results.slice(0, 5).map((j: JobPayload) => j.job_id)).toEqual([...ids].reverse());

    const page1 = await getJson(`${idle.url}/api/jobs?limit=2&offset=0`);
    const page2 = await getJson(`${idle.url}/api/jobs?limit=2&offset=2`);
    expect(page1.body).toMatchObject({ limit: 2, offset: 0, next_offset: 2 });
    expect(page2.body).toMatchObject({ limit: 2, offset: 2 });
    expect([...page1.body.results, ...page2.body.results].map((j: JobPayload) => j.job_id)).toEqual(
      all.body.results.slice(0, 4).map((j: JobPayload) => j.job_id),
    );
    const last = await getJson(`${idle.url}/api/jobs?limit=100&offset=${all.body.results.length - 1}`);
    expect(last.body.results).toHaveLength(1);
    expect(last.body.next_offset).toBeNull();

    expect((await getJson(`${idle.url}/api/jobs?status=completed`)).body.results).toEqual([]);
    const queued = await getJson(`${idle.url}/api/jobs?status=queued&limit=100`);
    expect(queued.body.results.length).toBe(all.body.results.length);
    const done = await getJson(`${server.url}/api/jobs?status=failed&limit=100`);
    expect(done.body.results.length).toBeGreaterThan(0);
    expect(done.body.results.every((j: JobPayload) => j.status === 'failed')).toBe(true);
  });

  it('pages by cursor through every job once, in order; filters by source type and submission time; counts when asked', async () => {
    for (let i = 0; i < 4; i++) await postRecords(idle.url, JSON.stringify([{ i }]));
    // Jobs submitted within the same millisecond: the cursor keeps microseconds and the job id.
    await idle.intake.db.query(
      `UPDATE ingest_jobs SET submitted_at = date_trunc('second', NOW()) + INTERVAL '7 microseconds' WHERE source_type = 'json_api'`,
    );
    const all = (await getJson(`${idle.url}/api/jobs?limit=100`)).body.results.map((j: JobPayload) => j.job_id);
    expect(all.length).toBeGreaterThanOrEqual(9);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: any = (await getJson(`${idle.url}/api/jobs?limit=2${cursor ? `&cursor=${cursor}` : ''}`)).body;
      expect(page.next_offset).toBe(cursor ? null : 2);
      seen.push(...page.results.map((j: JobPayload) => j.job_id));
      cursor = page.next_cursor;
      pages++;
    } while (cursor);
    expect(seen).toEqual(all);
    expect(pages).toBe(Math.ceil(all.length / 2));
    // A list entry is the job byte for byte as its status URL shows it (in both, failed ones with
    // their error, queued ones with null timestamps), whatever the fraction of a second PostgreSQL
    // writes: none, trailing zeros dropped, microseconds.
    await idle.intake.db.query(
      `UPDATE ingest_jobs SET started_at = date_trunc('second', submitted_at) + INTERVAL '0.5 seconds',
       completed_at = date_trunc('second', submitted_at) + INTERVAL '2 seconds' WHERE job_id = $1`,
      [all[0]],
    );
    // Free text that needs escaping, and a fraction of a second that must truncate, not round.
    const nasty = 'q"b\\s/ n\nt\tc\u0001\u001f d\u007f é 😀 \u2028\u2029 <>&';
    await idle.intake.db.query(
      `UPDATE ingest_jobs SET file_name = $2::text, error = $2::text, started_at = date_trunc('second', submitted_at) + INTERVAL '0.999999 seconds',
       version = version + 1 WHERE job_id = $1`,
      [all[1], nasty],
    );
    // A dialect (json, kept as Node wrote it) and warnings (text[]) holding the same text.
    const dialect = {
      delimiter: '\t',
      quote: "'",
      escape: 'backslash',
      line_ending: 'CRLF',
      header_row: null,
      header_rows: 0,
      columns: [nasty, 'b'],
      skipped: [{ from: 1, to: 2, why: 'above the table', text: nasty }],
      skipped_lines: 2,
    };
    await idle.intake.db.query(
      `UPDATE ingest_jobs SET dialect = $2::json, warnings = $3::text[], version = version + 1 WHERE job_id = $1`,
      [all[2], JSON.stringify(dialect), [nasty, 'column "a": the first 2,000 rows read as bigint, the whole file as numeric']],
    );
    expect((await getJson(`${idle.url}/api/job/${all[2]}`)).body).toMatchObject({ dialect, warnings: [nasty, expect.any(String)] });
    for (const url of [idle.url, server.url]) {
      for (const job of (await getJson(`${url}/api/jobs?limit=100`)).body.results as JobPayload[]) {
        expect(JSON.stringify(job)).toBe(await (await fetch(`${url}/api/job/${job.job_id}`)).text());
      }
    }
    // PostgreSQL's serialisation (lists, the status URL's database path) is Node's (the cache, events).
    for (const jobId of all) {
      expect((await findPayload(idle.intake.db, jobId))!.payload).toBe(payloadJson((await findJob(idle.intake.db, jobId))!));
    }
    // Many ids in one statement (batched status reads): each its own job; an unknown id is left out.
    const unknownId = '00000000-0000-4000-8000-000000000000';
    const found = await findPayloads(idle.intake.db, [...all, unknownId]);
    expect([...found.keys()].sort()).toEqual([...all].sort());
    for (const jobId of all) expect(found.get(jobId)!.payload).toBe((await findPayload(idle.intake.db, jobId))!.payload);

    const api = await getJson(`${idle.url}/api/jobs?source_type=json_api&limit=100&total=true`);
    expect(api.body.results.map((j: JobPayload) => j.source_type)).toEqual(['json_api', 'json_api', 'json_api', 'json_api']);
    expect(api.body.total).toBe(4);
    expect((await getJson(`${idle.url}/api/jobs?limit=1`)).body).not.toHaveProperty('total');
    const newest = (await getJson(`${idle.url}/api/jobs?limit=100`)).body.results as JobPayload[];
    const from = newest[2]!.submitted_at;
    const recent = await getJson(`${idle.url}/api/jobs?limit=100&submitted_after=${encodeURIComponent(from)}`);
    expect(recent.body.results.every((j: JobPayload) => j.submitted_at >= from)).toBe(true);
    const older = await getJson(`${idle.url}/api/jobs?limit=100&submitted_before=${encodeURIComponent(from)}&total=true`);
    expect(older.body.results.every((j: JobPayload) => j.submitted_at < from)).toBe(true);
    expect(recent.body.results.length + older.body.total).toBe(newest.length);

    // Cursors that are not ones the API gave out, some of them close: never a 500.
    const forged = ['2026-02-30 10:00:00', '0000-01-01 00:00:00', '2026-01-01 24:00:00', '1795898898587000', '2026-01-01T10:00:00Z'].map(
      (at) => `cursor=${Buffer.from(`${at}|${all[0]}`).toString('base64url')}`,
    );
    for (const query of [
      'cursor=bm90IGEgY3Vyc29y',
      'cursor=x&offset=2',
      ...forged,
      'submitted_after=yesterday',
      'source_type=ftp',
      'total=maybe',
      'submitted_before=0000-01-01T00:00:00Z',
      'submitted_after=0001-01-01T00:00:00%2B01:00',
      'submitted_before=0001-01-01T00:00:00-23:59',
      'submitted_after=2026-01-01T00:00:00%2B16:00',
    ]) {
      const res = await getJson(`${idle.url}/api/jobs?${query}`);
      expect(res.status, query).toBe(422);
      expect(res.body.code).toBe('validation_error');
    }
  });

  it('answers many status reads and list pages at once, each with its own answer', async () => {
    // Reads that arrive while the database is busy go to it together (batchReads): hundreds at
    // once must still each get their own job, a 404 for an unknown id, and the same pages.
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push((await postRecords(idle.url, JSON.stringify([{ i }]))).body.job_id);
    const unknown = Array.from({ length: 40 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
    const asked = [...ids, ...ids.map((id) => id.toUpperCase()), ...ids, ...unknown].sort(() => Math.random() - 0.5);
    const pageQueries = ['limit=5', 'limit=5', 'status=queued&limit=7', 'limit=5', 'source_type=json_records&limit=3'];
    const expected = new Map<string, unknown>();
    for (const query of new Set(pageQueries)) expected.set(query, (await getJson(`${idle.url}/api/jobs?${query}`)).body);
    // One connection (as PGlite has), so reads overlap a query in flight and are batched.
    const reader = backend.name === 'embedded' ? idle : await startServer(idleSandbox, { WORKER_CONCURRENCY: '0', PG_POOL_SIZE: '1' });
    const [reads, pages] = await Promise.all([
      Promise.all(asked.map((id) => getJson(`${reader.url}/api/job/${id}`))),
      Promise.all(
        Array.from({ length: 60 }, (_, i) => pageQueries[i % pageQueries.length]!).map(async (query) => ({
          query,
          res: await getJson(`${reader.url}/api/jobs?${query}`),
        })),
      ),
    ]);
    if (reader !== idle) await reader.close();
    reads.forEach((res, i) => {
      const id = asked[i]!.toLowerCase();
      if (unknown.includes(id)) expect(res.status, id).toBe(404);
      else expect([res.status, res.body.job_id, res.body.status], id).toEqual([200, id, 'queued']);
    });
    for (const { query, res } of pages) expect(res.body, query).toEqual(expected.get(query));
  });

  it('answers 404 for an unknown and for a malformed job id', async () => {
    for (const id of ['6f1c8a52-2f35-4d43-9b0e-2b9f1f0f4c11', 'not-a-uuid', '1', "1' OR '1'='1", '6f1c8a52-2f35-4d43-9b0e-2b9f1f0f4c1Z']) {
      const res = await getJson(`${server.url}/api/job/${encodeURIComponent(id)}`);
      expect(res.status).toBe(404);
      expect(res.body).toEqual({ detail: 'Job not found', code: 'job_not_found' });
    }
  });

  it('answers 422 with {detail: [{loc, msg, type}], code} for bad list parameters', async () => {
    const cases: [string, (string | number)[]][] = [
      ['limit=0', ['query', 'limit']],
      ['limit=101', ['query', 'limit']],
      ['limit=abc', ['query', 'limit']],
      ['offset=-1', ['query', 'offset']],
      ['status=bogus', ['query', 'status']],
      ['stauts=failed', ['query', 'stauts']],
    ];
    for (const [query, loc] of cases) {
      const res = await getJson(`${server.url}/api/jobs?${query}`);
      expect(res.status, query).toBe(422);
      expect(res.body.code).toBe('validation_error');
      expect(res.body.detail[0]).toMatchObject({ loc });
      expect(typeof res.body.detail[0].msg).toBe('string');
    }
    const bogus = await getJson(`${server.url}/api/jobs?status=bogus`);
    expect(bogus.body.detail[0].msg).toContain('queued, running, completed, failed');
  });

  it('rejects bad submissions with 400, 413, 415 or 422 and creates no job', async () => {
    const before = (await getJson(`${server.url}/api/jobs?limit=100`)).body.results.length;
    const noBody = await fetch(`${server.url}/api/upload`, { method: 'POST' });
    expect(noBody.status).toBe(400);
    expect(await noBody.json()).toMatchObject({ code: 'file_missing' });
    expect((await upload(server.url, 'x.csv', 'a\n1\n', 'document')).status).toBe(400);
    const form = new FormData();
    form.append('comment', 'no file here');
    expect((await fetch(`${server.url}/api/upload`, { method: 'POST', body: form })).status).toBe(400);

    const wrongType = await upload(server.url, 'report.pdf', '%PDF-1.7');
    expect(wrongType.status).toBe(415);
    expect(wrongType.body).toMatchObject({ code: 'unsupported_file_type' });
    const jsonToUpload = await fetch(`${server.url}/api/upload`, {
      method: 'POST',
      body: '{}',
      headers: { 'content-type': 'application/json' },
    });
    expect(jsonToUpload.status).toBe(415);
    expect((await upload(server.url, 'empty.csv', '')).status).toBe(422);

    expect((await postRecords(server.url, '[{"a":1}, 2]')).body.detail[0]).toMatchObject({ loc: ['body', 1], type: 'object_type' });
    expect((await postRecords(server.url, '{"records": [null]}')).body.detail[0]).toMatchObject({ loc: ['body', 'records', 0] });
    for (const body of ['[]', '{"rows": []}', '42', '[{"a":1},', '']) {
      const res = await postRecords(server.url, body);
      expect(res.status, body).toBe(422);
      expect(res.body.code).toBe('validation_error');
    }
    const ndjson = await postRecords(server.url, '{"a":1}\nnot json\n', 'application/x-ndjson');
    expect(ndjson.status).toBe(422);
    expect(ndjson.body.detail[0].loc).toEqual(['body', 2]);
    expect((await postRecords(server.url, 'a,b\n1,2', 'text/csv')).status).toBe(415);

    const after = (await getJson(`${server.url}/api/jobs?limit=100`)).body.results.length;
    expect(after).toBe(before);
  });

  it('rejects an upload over MAX_UPLOAD_BYTES with 413 and keeps nothing', async () => {
    const limitSandbox = await createSandbox(backend);
    const small = await startServer(limitSandbox, {
      WORKER_CONCURRENCY: '0',
      MAX_UPLOAD_BYTES: String(1024 ** 2),
      MAX_JSON_BODY_BYTES: '1024',
    });
    try {
      const twoMiB = 'id,text\n' + `1,${'x'.repeat(1021)}\n`.repeat(2 * 1024);
      expect(twoMiB.length).toBeGreaterThan(2 * 1024 ** 2);
      const res = await upload(small.url, 'big.csv', twoMiB);
      expect(res.status).toBe(413);
      expect(res.body).toEqual({ detail: `The file is larger than MAX_UPLOAD_BYTES (${1024 ** 2} bytes)`, code: 'payload_too_large' });
      const records = await postRecords(small.url, JSON.stringify([{ text: 'y'.repeat(2000) }]));
      expect(records.status).toBe(413);
      expect(records.body.code).toBe('payload_too_large');
      expect(readdirSync(small.config.uploadDir)).toEqual([]);
      expect((await getJson(`${small.url}/api/jobs`)).body.results).toEqual([]);
      expect((await upload(small.url, 'fits.csv', makeCsv(5))).status).toBe(202);
    } finally {
      await small.close();
      await limitSandbox.dispose();
    }
  });

  it('refuses more than one file, too many fields or a long field with 413, and keeps nothing', async () => {
    const before = (await getJson(`${server.url}/api/jobs?limit=100`)).body.results.length;
    const send = async (fill: (form: FormData) => void) => {
      const form = new FormData();
      fill(form);
      const res = await fetch(`${server.url}/api/upload`, { method: 'POST', body: form });
      return { status: res.status, body: await res.json() };
    };
    const two = await send((form) => {
      form.append('file', new Blob([makeCsv(50)]), 'one.csv');
      form.append('file', new Blob([makeCsv(50)]), 'two.csv');
    });
    expect(two).toEqual({ status: 413, body: { detail: 'Send one file per upload', code: 'too_many_files' } });
    const manyFields = await send((form) => {
      for (let i = 0; i < 11; i++) form.append(`f${i}`, 'x');
      form.append('file', new Blob([makeCsv(5)]), 'a.csv');
    });
    expect(manyFields).toEqual({ status: 413, body: { detail: 'Send at most 10 form fields, before the file', code: 'too_many_fields' } });
    const longField = await send((form) => {
      form.append('max_errors', '1'.repeat(2000));
      form.append('file', new Blob([makeCsv(5)]), 'a.csv');
    });
    expect(longField).toEqual({
      status: 413,
      body: { detail: 'The form field "max_errors" is longer than 1024 bytes', code: 'field_too_large' },
    });
    expect(readdirSync(server.config.uploadDir).filter((f) => f.endsWith('.part'))).toEqual([]);
    expect((await getJson(`${server.url}/api/jobs?limit=100`)).body.results.length).toBe(before);
  });

  it('answers 400 to an upload cut short, and keeps no file and no job', async () => {
    const before = (await getJson(`${server.url}/api/jobs?limit=100`)).body.results.length;
    // A multipart body whose closing boundary never comes: the client stopped mid-file.
    const part = '--XX\r\nContent-Disposition: form-data; name="file"; filename="t.csv"\r\n\r\na,b\n1,2\n';
    const { port } = new URL(server.url);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), '127.0.0.1', () => {
        socket.write(
          `POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XX\r\n` +
            `Content-Length: ${part.length}\r\nConnection: close\r\n\r\n${part}`,
        );
      });
      let data = '';
      socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
      socket.on('end', () => resolve(data));
      socket.on('close', () => resolve(data));
      socket.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    expect(answer).toContain('"code":"upload_incomplete"');
    expect(readdirSync(server.config.uploadDir).filter((f) => f.endsWith('.part'))).toEqual([]);
    expect((await getJson(`${server.url}/api/jobs?limit=100`)).body.results.length).toBe(before);
  });

  it('answers the status URL and the list exactly as their schemas say (both are written without the serializer)', async () => {
    const ajv = new Ajv({ allowUnionTypes: true });
    addFormats.default(ajv);
    ajv.addSchema(jobSchema);
    const validJob = ajv.compile({ $ref: 'Job#' });
    const validList = ajv.compile(jobListSchema);
    const fields = Object.keys(jobSchema.properties).sort();
    const done = await upload(server.url, 'schema "check".csv', makeCsv(3));
    const failed = await upload(server.url, 'bad.csv', 'a,b\n1\n');
    const posted = await postRecords(server.url, '[{"a": 1}]');
    for (const job of [done, failed, posted]) await waitForJob(server.url, job.body.job_id);
    for (const query of ['limit=100&total=true', 'status=completed&limit=1', 'limit=1&offset=1']) {
      const list = await getJson(`${server.url}/api/jobs?${query}`);
      expect(validList(list.body), JSON.stringify(validList.errors)).toBe(true);
      expect(list.body.results.length).toBeGreaterThan(0);
      for (const job of list.body.results as JobPayload[]) {
        expect(Object.keys(job).sort()).toEqual(fields);
        const one = await getJson(`${server.url}/api/job/${job.job_id}`);
        expect(validJob(one.body), JSON.stringify(validJob.errors)).toBe(true);
        if (TERMINAL_STATUSES.has(job.status)) expect(one.body).toEqual(job); // the same payload, written the same way
      }
    }
  });

  it('serves the OpenAPI document and Swagger UI', async () => {
    const doc = await getJson(`${server.url}/openapi.json`);
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toMatch(/^3\./);
    for (const path of [
      '/api/upload',
      '/api/ingest/json',
      '/api/import',
      '/api/job/{job_id}',
      '/api/jobs',
      '/api/job/{job_id}/events',
      '/api/jobs/events',
    ]) {
      expect(doc.body.paths).toHaveProperty([path]);
    }
    // What OpenAPI tools need (redocly's recommended rules; .ci/run lints this very document):
    // a unique operationId, the security each operation needs, a 2xx and a 4xx answer.
    const ids = new Set<string>();
    for (const [path, operations] of Object.entries(doc.body.paths as Record<string, Record<string, any>>)) {
      for (const [method, operation] of Object.entries(operations)) {
        const where = `${method.toUpperCase()} ${path}`;
        expect(operation.operationId, where).toMatch(/^[a-z][A-Za-z]+$/);
        expect(ids.has(operation.operationId), where).toBe(false);
        ids.add(operation.operationId);
        expect(operation.security, where).toEqual(path.startsWith('/api/') ? [{ bearerAuth: [] }] : []);
        const codes = Object.keys(operation.responses);
        expect(
          codes.some((code) => code.startsWith('2')),
          where,
        ).toBe(true);
        expect(
          codes.some((code) => code.startsWith('4')),
          where,
        ).toBe(true);
        if (path.startsWith('/api/')) expect(codes, where).toContain('401');
      }
    }
    expect(doc.body.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.body.servers).toEqual([{ url: '/', description: expect.any(String) }]);
    mkdirSync('test-output', { recursive: true });
    writeFileSync('test-output/openapi.json', JSON.stringify(doc.body, null, 2));
    const ui = await fetch(`${server.url}/docs`);
    expect(ui.status).toBe(200);
  });

  it('serves the web console at / and /jobs/{id}, its hashed assets cached for good', async () => {
    const page = await fetch(`${server.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('cache-control')).toBe('no-cache');
    const html = await page.text();
    const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    expect(assets.length).toBeGreaterThanOrEqual(2); // script and stylesheet, no CDN
    expect(html).not.toMatch(/(?:src|href)="(?:https?:)?\/\//); // nothing from another host
    for (const asset of assets) {
      const res = await fetch(server.url + asset);
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    }
    const detail = await fetch(`${server.url}/jobs/00000000-0000-4000-8000-000000000000`);
    expect(detail.status).toBe(200);
    expect(await detail.text()).toBe(html);
    expect((await fetch(`${server.url}/no-such-page`)).status).toBe(404);
  });

  it('never answered 5xx', () => {
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
    expect(idle.statuses.filter((s) => s >= 500)).toEqual([]);
  });
});
