/**
 * Jira pulls (POST /api/import {source: "jira"}) against the Jira test server over real HTTP:
 * a full pull of 5,000 issues in pages of 100, an incremental run that asks only for what
 * changed (the mark sent as epoch milliseconds), 429 with Retry-After and 503 retried, and a
 * bad query failing loudly with Jira's own words.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OVERLAP_MS } from '../src/jira/source.js';
import type { JobPayload } from '../src/schemas/api.js';
import { backends, createSandbox, getJson, startServer, waitForJob, type Sandbox, type TestServer } from './helpers.js';
import { jiraTime, startJira, type JiraServer } from './jira-server.js';

const ROOT = join(import.meta.dirname, '..');
const ISSUES = 5000;
const HOUR = 3_600_000;
const BASE = Date.UTC(2025, 0, 1);

describe.each(backends())('Jira imports ($name)', (backend) => {
  let jira: JiraServer;
  let sandbox: Sandbox;
  let server: TestServer;
  let connection: string;

  beforeAll(async () => {
    jira = await startJira();
    for (let i = 1; i <= ISSUES; i++) {
      jira.issues.push({
        id: String(10_000 + i),
        key: `ABC-${i}`,
        fields: {
          summary: `issue ${i}`,
          status: { name: i % 3 === 0 ? 'Done' : 'To Do' },
          issuetype: { name: 'Task' },
          priority: { name: 'Medium' },
          assignee: i % 2 ? { displayName: 'Grace Hopper' } : null,
          reporter: { displayName: 'Ada Lovelace' },
          created: jiraTime(BASE + i * HOUR - HOUR),
          updated: jiraTime(BASE + i * HOUR),
          resolutiondate: i % 3 === 0 ? jiraTime(BASE + i * HOUR) : null,
          labels: i % 5 === 0 ? ['five'] : [],
          project: { key: 'ABC' },
        },
      });
    }
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { SECRET_KEY: randomBytes(32).toString('hex'), IMPORT_ALLOW_PRIVATE: 'true' });
    const saved = await fetch(`${server.url}/api/connections`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'jira', base_url: jira.url, email: jira.email, api_token: jira.token }),
    });
    expect(saved.status).toBe(201);
    connection = ((await saved.json()) as { id: string }).id;
  }, 60_000);
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
    await jira?.close();
  });

  async function pull(body: Record<string, unknown>): Promise<JobPayload> {
    const res = await fetch(`${server.url}/api/import`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ source: 'jira', connection, ...body }) });
    const answer = (await res.json()) as any;
    expect(res.status, JSON.stringify(answer)).toBe(202);
    return waitForJob(server.url, answer.job_id, 120_000);
  }
  const sql = async <R>(text: string) => (await server.intake.db.query<R>(text)).rows;

  it('pulls every issue page by page, with the fields asked for, into typed columns merged on the id', async () => {
    const searches = jira.searches.length;
    const job = await pull({ jql: 'project = ABC', dataset: 'abc_issues' });
    expect(job).toMatchObject({ status: 'completed', source_type: 'jira_ingest', dataset: 'abc_issues', mode: 'merge', key: ['id'], records_processed: ISSUES, rows_inserted: ISSUES, rows_updated: 0 });
    const sent = jira.searches.slice(searches);
    expect(sent).toHaveLength(ISSUES / 100);
    expect(sent[0]).toBe('(project = ABC) ORDER BY updated ASC, id ASC');
    const columns = Object.fromEntries(((await getJson(`${server.url}/api/datasets/abc_issues`)).body.columns as { name: string; type: string }[]).map((c) => [c.name, c.type]));
    expect(columns).toMatchObject({ id: 'bigint', key: 'text', summary: 'text', status: 'text', created: 'timestamptz', updated: 'timestamptz', labels: 'jsonb', raw: 'jsonb' });
    expect(await sql<{ n: number; ids: number; done: number }>("SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids, count(*) FILTER (WHERE status = 'Done')::int AS done FROM datasets.abc_issues")).toEqual([
      { n: ISSUES, ids: ISSUES, done: Math.floor(ISSUES / 3) },
    ]);
    const [row] = await sql<Record<string, unknown>>("SELECT key, assignee, resolved IS NULL AS open, labels::text, raw->>'key' AS raw_key FROM datasets.abc_issues WHERE id = 10005");
    expect(row).toEqual({ key: 'ABC-5', assignee: 'Grace Hopper', open: true, labels: '["five"]', raw_key: 'ABC-5' });
  });

  it('pulls again only what changed since the mark, sent as epoch milliseconds, and merges it', async () => {
    const newest = BASE + ISSUES * HOUR;
    const touched = [ISSUES, ...Array.from({ length: 36 }, (_, i) => 100 + i * 97)];
    for (const n of touched) {
      const issue = jira.issues[n - 1]!;
      issue.fields.summary = `changed ${n}`;
      issue.fields.updated = jiraTime(Date.now());
    }
    const searches = jira.searches.length;
    const job = await pull({ jql: 'project = ABC', dataset: 'abc_issues' });
    expect(jira.searches[searches]).toBe(`(project = ABC) AND updated >= ${newest - OVERLAP_MS} ORDER BY updated ASC, id ASC`);
    expect(job).toMatchObject({ status: 'completed', records_processed: touched.length, rows_inserted: 0, rows_updated: touched.length });
    expect(await sql<{ n: number; changed: number }>("SELECT count(*)::int AS n, count(*) FILTER (WHERE summary LIKE 'changed %')::int AS changed FROM datasets.abc_issues")).toEqual([{ n: ISSUES, changed: touched.length }]);
  });

  it('waits as Retry-After says on 429, retries a 503, and fails loudly on a bad query with Jira\'s words', async () => {
    jira.faults.push({ status: 429, retryAfter: '1' }, { status: 503 });
    const started = Date.now();
    const job = await pull({ jql: 'project = ABC', dataset: 'abc_again' });
    expect(job).toMatchObject({ status: 'completed', records_processed: ISSUES });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);

    const bad = await pull({ jql: 'project = abc', dataset: 'abc_bad' });
    expect(bad).toMatchObject({ status: 'failed', records_processed: 0, error: 'Jira answered HTTP 400: Error in the JQL Query: the query "(project = abc) ORDER BY updated ASC, id ASC" is not valid here.' });
    if (backend.name !== 'embedded') return; // the retries' waits (1 + 2 + 4 + 8 s) once are enough
    jira.faults.push(...Array.from({ length: 5 }, () => ({ status: 503 })));
    const down = await pull({ jql: 'project = ABC', dataset: 'abc_down' });
    expect(down).toMatchObject({ status: 'failed', error: 'Jira answered HTTP 503: fault 503 (5 attempts)' });
    expect((await getJson(`${server.url}/api/datasets/abc_down`)).status).toBe(404); // nothing half-loaded
    // Once Jira answers again, a retry pulls it all.
    expect((await fetch(`${server.url}/api/job/${down.job_id}/retry`, { method: 'POST' })).status).toBe(202);
    expect(await waitForJob(server.url, down.job_id, 120_000)).toMatchObject({ status: 'completed', records_processed: ISSUES });
  }, 120_000);

  it('runs from the command line: intake import jira --connection … --jql … --wait', async () => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/intake.js'), 'import', 'jira', '--connection', connection, '--jql', 'project = ABC', '--dataset', 'abc_cli', '--wait'], {
      env: { PATH: process.env.PATH ?? '', INTAKE_URL: server.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(new RegExp(`completed: ${ISSUES.toLocaleString('en-US')} records in [\\d.]+ s; dataset abc_cli: ${ISSUES.toLocaleString('en-US')} rows inserted, 0 updated`));
  }, 120_000);

  it('refuses what a Jira pull cannot take, with a 422 naming the field', async () => {
    const refused = async (body: Record<string, unknown>) => {
      const res = await fetch(`${server.url}/api/import`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ source: 'jira', ...body }) });
      expect(res.status).toBe(422);
      return ((await res.json()) as any).detail[0];
    };
    expect((await refused({ jql: 'project = ABC' })).loc).toEqual(['body', 'connection']);
    expect((await refused({ connection, jql: 'project = ABC ORDER BY created' })).msg).toMatch(/ORDER BY/);
    expect((await refused({ connection, jql: 'project = ABC', mode: 'append' })).loc).toEqual(['body', 'mode']);
    expect((await refused({ connection, jql: '  ' })).loc).toEqual(['body', 'jql']);
  });

  it('never answered 5xx', () => {
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
  });
});
