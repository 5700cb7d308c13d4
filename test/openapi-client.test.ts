/**
 * A client generated from the OpenAPI document type-checks against the real answers (issue 17,
 * point 7): openapi-typescript turns /openapi.json into `paths`, a session against a running
 * Intake captures every answer body, and each is assigned, as a literal, to the type the
 * document gives its operation, method and status. The TypeScript compiler then finds what the
 * document gets wrong: a field it omits (an excess property), a null where it says string, a
 * missing field it requires, a status it does not list. Answers Fastify serializes by their
 * schema are checked as their handler gave them too (the serializer would hide the mistake).
 * Deliberately wrong answers show the check can fail.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import openapiTS, { astToString } from 'openapi-typescript';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { TERMINAL_STATUSES } from '../src/core/job.js';
import { createIntake, createLogger } from '../src/server.js';
import { createSandbox, getJson, waitForJob, type Sandbox } from './helpers.js';

/** One real answer: the operation it answers (path as the document writes it), and its body. */
interface Answer {
  method: 'get' | 'post' | 'delete';
  path: string;
  status: number;
  body: unknown;
  /** What the handler gave Fastify's serializer (as JSON), when it gave an object rather than text. */
  handed?: unknown;
}

/**
 * Intake as startServer runs it (embedded), with a tap on what each handler gives Fastify's
 * serializer, by the request's x-answer header. The serializer shapes an answer to its schema
 * (it drops a field the schema lacks, writes a null as "" where the schema says string), so
 * the answer on the wire alone would hide such a disagreement.
 */
async function startTapped(sandbox: Sandbox, overrides: Record<string, string>) {
  const config = loadConfig({ ...sandbox.env, PORT: '0', HOST: '127.0.0.1', ...overrides });
  const intake = await createIntake(config, createLogger(config));
  const handed = new Map<string, unknown>();
  intake.app.addHook('preSerialization', async (request, _reply, payload) => {
    const id = request.headers['x-answer'];
    if (typeof id === 'string') handed.set(id, JSON.parse(JSON.stringify(payload)));
    return payload;
  });
  await intake.app.listen({ port: 0, host: '127.0.0.1' });
  await intake.start();
  const { port } = intake.app.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, handed, close: () => intake.close() };
}

/** A CSV source for imports and schedules, and a webhook receiver that says thanks. */
async function startPeer(): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'text/csv' });
        res.end('id,city\n1,Oslo\n2,Lima\n');
      } else {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('thanks');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The type a generated client gives the JSON answer of an operation with this status (none for a 204). */
const answerType = ({ method, path, status }: Pick<Answer, 'method' | 'path' | 'status'>) =>
  `paths[${JSON.stringify(path)}][${JSON.stringify(method)}]['responses'][${status}]['content']${status === 204 ? '' : "['application/json']"}`;

interface Diagnostic {
  file: string;
  line: number;
  text: string;
}

/** Type-checks the files as a strict project would, and returns every diagnostic. */
function typeCheck(files: string[]): Diagnostic[] {
  const program = ts.createProgram(files, {
    strict: true,
    noEmit: true,
    noUncheckedIndexedAccess: true,
    exactOptionalPropertyTypes: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ['lib.es2022.d.ts'],
    types: [],
  });
  return ts.getPreEmitDiagnostics(program).map((d) => ({
    file: d.file?.fileName ?? '(global)',
    line: d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0,
    text: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
  }));
}

describe('a client generated from the OpenAPI document (embedded)', () => {
  let sandbox: Sandbox;
  let server: Awaited<ReturnType<typeof startTapped>>;
  let peer: Awaited<ReturnType<typeof startPeer>>;
  const dir = mkdtempSync(join(tmpdir(), 'intake-openapi-client-'));
  const answers: Answer[] = [];

  beforeAll(async () => {
    peer = await startPeer();
    sandbox = await createSandbox({ name: 'embedded' });
    server = await startTapped(sandbox, {
      WEBHOOK_URLS: `${peer.url}/hook`,
      WEBHOOK_RETRY_MS: '100',
      IMPORT_ALLOW_PRIVATE: 'true',
    });
  });

  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
    await peer?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Calls the API, expects `status`, and keeps the answer for the type check. */
  async function call(
    method: Answer['method'],
    path: string,
    status: number,
    url: string,
    init: { json?: unknown; form?: FormData; headers?: Record<string, string> } = {},
  ) {
    const id = String(answers.length);
    const res = await fetch(`${server.url}${url}`, {
      method: method.toUpperCase(),
      headers: { 'x-answer': id, ...(init.json !== undefined && { 'content-type': 'application/json' }), ...init.headers },
      body: init.form ?? (init.json === undefined ? undefined : JSON.stringify(init.json)),
    });
    const body: any = res.status === 204 ? undefined : await res.json();
    if (res.status === 204) expect(await res.text()).toBe('');
    expect(res.status, `${method.toUpperCase()} ${url}: ${JSON.stringify(body)}`).toBe(status);
    // (A 204 sends no body, whatever its handler gives.)
    answers.push({ method, path, status, body, handed: res.status === 204 ? undefined : server.handed.get(id) });
    return body;
  }

  const csvForm = (name: string, content: string) => {
    const form = new FormData();
    form.append('file', new Blob([content]), name);
    return form;
  };

  it('type-checks every real answer against the generated types, and fails a wrong one', async () => {
    const doc = await getJson(`${server.url}/openapi.json`);
    expect(doc.status).toBe(200);
    writeFileSync(join(dir, 'openapi.ts'), astToString(await openapiTS(doc.body, { silent: true })));

    // Submits: a CSV with one bad row it may skip, the same upload replayed by its key, posted
    // records, an import by URL, and records that fail (a merge on a key they lack).
    const csv = 'id,name,joined\n1,Ada,2024-01-05\n2,Grace\n3,Linus,2024-03-01\n';
    const key = { 'idempotency-key': `client-${Date.now()}` };
    const uploaded = await call('post', '/api/upload', 202, '/api/upload?max_errors=1&dataset=people', {
      form: csvForm('people.csv', csv),
      headers: key,
    });
    await call('post', '/api/upload', 200, '/api/upload?max_errors=1&dataset=people', { form: csvForm('people.csv', csv), headers: key });
    const posted = await call('post', '/api/ingest/json', 202, '/api/ingest/json?dataset=events', {
      json: [
        { n: 1, tags: ['a'], at: '2024-01-01T00:00:00Z' },
        { n: 2, tags: [], at: null },
      ],
    });
    const imported = await call('post', '/api/import', 202, '/api/import', { json: { url: `${peer.url}/cities.csv`, dataset: 'cities' } });
    const failing = await call('post', '/api/ingest/json', 202, '/api/ingest/json?mode=merge&key=id', { json: [{ name: 'no key' }] });
    for (const job of [uploaded, posted, imported]) expect((await waitForJob(server.url, job.job_id)).status).toBe('completed');
    expect((await waitForJob(server.url, failing.job_id)).status).toBe('failed');

    // Jobs: one completed with a skipped row, one failed; pages by cursor, a total, records,
    // row errors, webhook deliveries (once delivered), a cancel refused, a retry.
    await call('get', '/api/job/{job_id}', 200, `/api/job/${uploaded.job_id}`);
    await call('get', '/api/job/{job_id}', 200, `/api/job/${failing.job_id}`);
    const first = await call('get', '/api/jobs', 200, '/api/jobs?limit=2');
    expect(first.next_cursor).toEqual(expect.any(String));
    await call('get', '/api/jobs', 200, `/api/jobs?limit=2&cursor=${first.next_cursor}`);
    await call('get', '/api/jobs', 200, '/api/jobs?limit=1&offset=1&total=true&status=completed');
    const records = await call('get', '/api/job/{job_id}/records', 200, `/api/job/${uploaded.job_id}/records?limit=1`);
    expect(records.next_cursor).toEqual(expect.any(String));
    const errors = await call('get', '/api/job/{job_id}/errors', 200, `/api/job/${uploaded.job_id}/errors`);
    expect(errors.results).toHaveLength(1);
    await expect
      .poll(
        async () =>
          (await getJson(`${server.url}/api/job/${uploaded.job_id}/deliveries`)).body.results.map((d: { status: string }) => d.status),
        { timeout: 10_000 },
      )
      .toEqual(['delivered']);
    await call('get', '/api/job/{job_id}/deliveries', 200, `/api/job/${uploaded.job_id}/deliveries`);
    await call('post', '/api/job/{job_id}/cancel', 409, `/api/job/${uploaded.job_id}/cancel`);
    await call('post', '/api/job/{job_id}/retry', 202, `/api/job/${failing.job_id}/retry?max_errors=0`);
    expect((await waitForJob(server.url, failing.job_id)).status).toBe('failed');

    // Datasets: a page of the list and the next, one dataset, its rows by cursor, SQL over them.
    const datasets = await call('get', '/api/datasets', 200, '/api/datasets?limit=2');
    expect(datasets.next_cursor).toEqual(expect.any(String));
    await call('get', '/api/datasets', 200, `/api/datasets?cursor=${datasets.next_cursor}`);
    await call('get', '/api/datasets/{name}', 200, '/api/datasets/people');
    const rows = await call('get', '/api/datasets/{name}/rows', 200, '/api/datasets/people/rows?limit=1');
    expect(rows.next_cursor).toEqual(expect.any(String));
    await call('get', '/api/datasets/{name}/rows', 200, `/api/datasets/people/rows?cursor=${rows.next_cursor}`);
    await call('post', '/api/sql', 200, '/api/sql', {
      json: { sql: 'SELECT e.n, e.tags, p.name, p.joined FROM events e CROSS JOIN people p ORDER BY 1, 3' },
    });

    // Schedules: made (beating every second), its first run awaited, paused, listed, read.
    const schedule = await call('post', '/api/schedules', 201, '/api/schedules', {
      json: { import: { url: `${peer.url}/cities.csv?sig=x`, dataset: 'cities', mode: 'replace' }, every: '1s' },
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { body } = await getJson(`${server.url}/api/schedules/${schedule.schedule_id}`);
      if (body.last_run && TERMINAL_STATUSES.has(body.last_run.status)) break;
      if (Date.now() > deadline) throw new Error(`schedule has not run: ${JSON.stringify(body)}`);
      await sleep(50);
    }
    await call('post', '/api/schedules/{id}/pause', 200, `/api/schedules/${schedule.schedule_id}/pause`);
    // A beat that fired just before the pause may still be running: its end is waited for.
    const paused = await getJson(`${server.url}/api/schedules/${schedule.schedule_id}`);
    for (const run of paused.body.recent_runs) await waitForJob(server.url, run.job_id);
    await call('get', '/api/schedules', 200, '/api/schedules');
    const one = await call('get', '/api/schedules/{id}', 200, `/api/schedules/${schedule.schedule_id}`);
    expect(one.recent_runs.length).toBeGreaterThan(0);
    await call('get', '/api/connections', 200, '/api/connections');
    await call('delete', '/api/schedules/{id}', 204, `/api/schedules/${schedule.schedule_id}`);

    // Errors: the one shape, {detail, code}, with a message or a list of issues.
    await call('get', '/api/job/{job_id}', 404, '/api/job/00000000-0000-4000-8000-000000000000');
    await call('get', '/api/datasets/{name}', 404, '/api/datasets/nothing_here');
    await call('get', '/api/schedules/{id}', 404, '/api/schedules/nope');
    await call('get', '/api/connections/{id}', 404, '/api/connections/nope');
    const invalid = await call('get', '/api/jobs', 422, '/api/jobs?stauts=failed');
    expect(invalid).toMatchObject({ code: 'validation_error', detail: [{ loc: ['query', 'stauts'] }] });
    await call('get', '/api/job/{job_id}/errors', 422, `/api/job/${uploaded.job_id}/errors?cursor=x`);
    await call('post', '/api/ingest/json', 422, '/api/ingest/json', { json: [{ a: 1 }, 2] });
    await call('post', '/api/ingest/json', 415, '/api/ingest/json', {
      headers: { 'content-type': 'application/json; charset=latin1' },
      json: [],
    });
    await call('post', '/api/upload', 400, '/api/upload');
    await call('post', '/api/sql', 422, '/api/sql', { json: { sql: 'DELETE FROM people' } });

    // Operations.
    await call('get', '/healthz', 200, '/healthz');
    await call('get', '/readyz', 200, '/readyz');
    await call('get', '/healthz', 422, '/healthz?verbose=1');

    // The serializer changed nothing: what each handler gave is what its client got.
    for (const a of answers)
      if (a.handed !== undefined) expect(a.body, `${a.method.toUpperCase()} ${a.path} ${a.status}`).toEqual(a.handed);

    // Each answer (and what its handler gave) as a literal of its operation's type.
    const lines = ["import type { paths } from './openapi';", ''];
    const labels = new Map<number, string>();
    answers.forEach((answer, i) => {
      const label = `${answer.method.toUpperCase()} ${answer.path} ${answer.status}`;
      lines.push(`// ${label}`);
      const start = lines.length + 1;
      lines.push(...`export const answer${i}: ${answerType(answer)} = ${JSON.stringify(answer.body, null, 2) ?? 'undefined'};`.split('\n'));
      for (let line = start; line <= lines.length; line++) labels.set(line, label);
      if (answer.handed === undefined) return;
      const handedStart = lines.length + 1;
      lines.push(...`export const handed${i}: ${answerType(answer)} = ${JSON.stringify(answer.handed, null, 2)};`.split('\n'));
      for (let line = handedStart; line <= lines.length; line++) labels.set(line, `${label}, as its handler gave it to the serializer`);
    });
    writeFileSync(join(dir, 'answers.ts'), `${lines.join('\n')}\n`);

    // The check can fail: a job answer made wrong in each way the document rules out, and
    // every answer with a property its type does not have (so no answer's type is open or unknown).
    const job = answers.find((a) => a.path === '/api/job/{job_id}' && a.status === 200)!;
    const { version: _, ...withoutVersion } = job.body as Record<string, unknown>;
    const wrong: [what: string, answer: Answer, caughtBy: string][] = [
      ['status as a number', { ...job, body: { ...(job.body as object), status: 3 } }, "Type 'number' is not assignable"],
      [
        'a property the schema does not have',
        { ...job, body: { ...(job.body as object), priority: 'high' } },
        `'"priority"' does not exist`,
      ],
      ['a required property missing', { ...job, body: withoutVersion }, "Property 'version' is missing"],
      [
        'null where the schema says string',
        { ...job, body: { ...(job.body as object), submitted_at: null } },
        "Type 'null' is not assignable to type 'string'",
      ],
      ['a status the operation does not answer', { ...job, status: 418 }, "Property '418' does not exist"],
      [
        'a body where the document says none',
        { ...answers.find((a) => a.status === 204)!, body: {} },
        "Type '{}' is not assignable to type 'undefined'",
      ],
      ...answers
        .filter((a) => a.status !== 204)
        .map((a): [string, Answer, string] => [
          `${a.method.toUpperCase()} ${a.path} ${a.status} with a property more`,
          { ...a, body: { ...(a.body as object), not_in_the_document: true } },
          `'"not_in_the_document"' does not exist`,
        ]),
    ];
    const wrongLines = [
      "import type { paths } from './openapi';",
      ...wrong.map(([, answer], i) => `export const wrong${i}: ${answerType(answer)} = ${JSON.stringify(answer.body)};`),
    ];
    writeFileSync(join(dir, 'wrong.ts'), `${wrongLines.join('\n')}\n`);

    const diagnostics = typeCheck([join(dir, 'answers.ts'), join(dir, 'wrong.ts')]);
    const of = (file: string) => diagnostics.filter((d) => d.file === join(dir, file));
    expect(diagnostics.filter((d) => d.file !== join(dir, 'answers.ts') && d.file !== join(dir, 'wrong.ts'))).toEqual([]);
    expect(of('answers.ts').map((d) => `${labels.get(d.line)} (answers.ts:${d.line}): ${d.text}`)).toEqual([]);
    const uncaught = wrong.filter(([, , caughtBy], i) => !of('wrong.ts').some((d) => d.line === i + 2 && d.text.includes(caughtBy)));
    expect(
      uncaught.map(([what]) => `not caught: ${what}`),
      JSON.stringify(of('wrong.ts'), null, 2),
    ).toEqual([]);

    // What the check covered: every operation and status of the session.
    expect([...new Set(answers.map((a) => `${a.method.toUpperCase()} ${a.path} ${a.status}`))].sort()).toEqual([
      'DELETE /api/schedules/{id} 204',
      'GET /api/connections 200',
      'GET /api/connections/{id} 404',
      'GET /api/datasets 200',
      'GET /api/datasets/{name} 200',
      'GET /api/datasets/{name} 404',
      'GET /api/datasets/{name}/rows 200',
      'GET /api/job/{job_id} 200',
      'GET /api/job/{job_id} 404',
      'GET /api/job/{job_id}/deliveries 200',
      'GET /api/job/{job_id}/errors 200',
      'GET /api/job/{job_id}/errors 422',
      'GET /api/job/{job_id}/records 200',
      'GET /api/jobs 200',
      'GET /api/jobs 422',
      'GET /api/schedules 200',
      'GET /api/schedules/{id} 200',
      'GET /api/schedules/{id} 404',
      'GET /healthz 200',
      'GET /healthz 422',
      'GET /readyz 200',
      'POST /api/import 202',
      'POST /api/ingest/json 202',
      'POST /api/ingest/json 415',
      'POST /api/ingest/json 422',
      'POST /api/job/{job_id}/cancel 409',
      'POST /api/job/{job_id}/retry 202',
      'POST /api/schedules 201',
      'POST /api/schedules/{id}/pause 200',
      'POST /api/sql 200',
      'POST /api/sql 422',
      'POST /api/upload 200',
      'POST /api/upload 202',
      'POST /api/upload 400',
    ]);
  }, 30_000);
});
