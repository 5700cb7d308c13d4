/**
 * Jira pulls (POST /api/import {source: "jira"}) against the Jira test server over real HTTP:
 * a full pull of 5,000 issues in pages of 100, an incremental run that asks only for what
 * changed (the mark sent as epoch milliseconds, right whatever the account's time zone), 429
 * with Retry-After and 503 retried, a bad query failing loudly with Jira's own words, a cancel
 * mid-pull that leaves the dataset and the mark as they were, and a kill -9 mid-pull after
 * which the pull is taken up again and loads every issue once.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { issueRecord, OVERLAP_MS } from '../src/sources/jira.js';
import type { JobPayload } from '../src/core/job.js';
import {
  backends,
  createSandbox,
  getJson,
  stageExists,
  startServer,
  waitForJob,
  type Sandbox,
  type TestServer,
  rowObjects,
} from './helpers.js';
import { jiraTime, startJira, zonedTime, type JiraIssue, type JiraServer } from './jira-server.js';
import { startIntakeProcess, startWorkerProcess } from './process.js';

const ROOT = join(import.meta.dirname, '..');
const ISSUES = 5000;
const HOUR = 3_600_000;
const BASE = Date.UTC(2025, 0, 1);
const MINUTE = 60_000;

/** An issue of a project, updated at `updated` (epoch ms). */
function issueOf(project: string, id: number, n: number, updated: number): JiraIssue {
  return {
    id: String(id),
    key: `${project}-${n}`,
    fields: {
      summary: `issue ${n}`,
      status: { name: n % 3 === 0 ? 'Done' : 'To Do' },
      issuetype: { name: 'Task' },
      priority: { name: 'Medium' },
      assignee: n % 2 ? { displayName: 'Grace Hopper' } : null,
      reporter: { displayName: 'Ada Lovelace' },
      created: jiraTime(updated - HOUR),
      updated: jiraTime(updated),
      resolutiondate: n % 3 === 0 ? jiraTime(updated) : null,
      labels: n % 5 === 0 ? ['five'] : [],
      project: { key: project },
    },
  };
}

const updatedMs = (issue: JiraIssue) => Date.parse(issue.fields.updated.replace('+0000', 'Z'));

/** Polls a job until `done` holds of it; fails at once if it ends first, or after `timeoutMs`. */
async function waitForProgress(url: string, jobId: string, done: (job: JobPayload) => boolean, timeoutMs = 20_000): Promise<JobPayload> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await getJson<JobPayload>(`${url}/api/job/${jobId}`);
    if (done(body)) return body;
    if (body.status !== 'queued' && body.status !== 'running') throw new Error(`job ${jobId} ended ${body.status} first: ${body.error}`);
    if (Date.now() > deadline)
      throw new Error(`job ${jobId} still ${body.status} at ${body.records_processed} records after ${timeoutMs} ms`);
    await sleep(20);
  }
}

const signedIn = (jira: JiraServer) => ({ authorization: `Basic ${Buffer.from(`${jira.email}:${jira.token}`).toString('base64')}` });

/** Every issue id a search of the Jira test server answers, page by page, or its error status and body. */
async function searchIds(jira: JiraServer, jql: string): Promise<{ status: number; ids: string[]; body?: unknown }> {
  const ids: string[] = [];
  let token: string | undefined;
  for (;;) {
    const params = new URLSearchParams({ jql, maxResults: '100', ...(token && { nextPageToken: token }) });
    const res = await fetch(`${jira.url}/rest/api/3/search/jql?${params}`, { headers: signedIn(jira) });
    const body = (await res.json()) as { issues: { id: string }[]; isLast: boolean; nextPageToken?: string };
    if (res.status !== 200) return { status: res.status, ids, body };
    ids.push(...body.issues.map((issue) => issue.id));
    if (body.isLast) return { status: 200, ids };
    token = body.nextPageToken;
  }
}

describe('the Jira test server', () => {
  // It is what shows that Intake sends its mark as epoch milliseconds: a connector that wrote
  // the mark as a date, in UTC, would be answered hours off by an account far from UTC.
  it("reads `updated >=` a date as text in the account's time zone, and epoch milliseconds as they are", async () => {
    const jira = await startJira();
    try {
      const t0 = Date.UTC(2025, 5, 1); // 2025-06-01 00:00 UTC
      for (let n = 0; n < 48; n++) jira.issues.push(issueOf('ZON', 20_000 + n, n, t0 + n * HOUR));
      const cut = t0 + 24 * HOUR; // 2025-06-02 00:00 UTC: issues 24 to 47 were updated at or after it
      const from = (first: number) => Array.from({ length: 48 - first }, (_, i) => String(20_000 + first + i));
      const since = async (value: string) => (await searchIds(jira, `(project = ZON) AND updated >= ${value}`)).ids;

      expect(jira.timeZone).toBe('Pacific/Kiritimati');
      expect((await (await fetch(`${jira.url}/rest/api/3/myself`, { headers: signedIn(jira) })).json()) as object).toMatchObject({
        timeZone: 'Pacific/Kiritimati',
      });
      expect(await since(String(cut))).toEqual(from(24));
      // The UTC wall-clock time of the cut, read at UTC+14: 14 hours early, 14 issues too many.
      for (const text of ['"2025-06-02 00:00"', '"2025/06/02 00:00"', "'2025-06-02 00:00'", '2025-06-02', '"2025/06/02"', '2025/6/2']) {
        expect(await since(text), text).toEqual(from(24 - 14));
      }
      expect(await since('"2025-06-02 14:00"')).toEqual(from(24)); // the cut as the account's clock shows it

      jira.timeZone = 'Pacific/Pago_Pago'; // UTC-11: 11 hours late, 11 issues missed
      expect(await since('"2025-06-02 00:00"')).toEqual(from(24 + 11));
      expect(await since('"2025-06-01 13:00"')).toEqual(from(24));
      expect(await since(String(cut))).toEqual(from(24));

      // Daylight saving time comes from the zone's rules: New York is UTC-4 in June, UTC-5 in January.
      jira.timeZone = 'America/New_York';
      expect(await since('"2025-06-01 20:00"')).toEqual(from(24));
      expect(zonedTime('America/New_York', 2025, 1, 1, 0, 0)).toBe(Date.UTC(2025, 0, 1, 5));
      // 03:30 on the day it starts is 07:30 UTC; the offset first taken, at 03:30 UTC, is still -5.
      expect(zonedTime('America/New_York', 2025, 3, 9, 3, 30)).toBe(Date.UTC(2025, 2, 9, 7, 30));

      expect(await searchIds(jira, '(project = ZON) AND updated >= "2025-02-30"')).toMatchObject({
        status: 400,
        body: {
          errorMessages: [
            expect.stringMatching(/^Date value '2025-02-30' for field 'updated' is invalid\. Valid formats include: 'yyyy\/MM\/dd HH:mm'/),
          ],
        },
      });
      // A time must be quoted: unquoted, Jira reads it as a second term.
      expect((await searchIds(jira, '(project = ZON) AND updated >= 2025-06-02 00:00')).status).toBe(400);
    } finally {
      await jira.close();
    }
  });
});

describe.each(backends())('Jira imports ($name)', (backend) => {
  let jira: JiraServer;
  let sandbox: Sandbox;
  let server: TestServer;
  let connection: string;

  beforeAll(async () => {
    jira = await startJira();
    for (let i = 1; i <= ISSUES; i++) jira.issues.push(issueOf('ABC', 10_000 + i, i, BASE + i * HOUR));
    sandbox = await createSandbox(backend);
    // Batches of a page: a pull's progress is seen page by page (the cancel waits for it). A
    // search that hangs would hold a worker for 10 minutes: only a cancel can end it sooner.
    server = await startServer(sandbox, {
      SECRET_KEY: randomBytes(32).toString('hex'),
      IMPORT_ALLOW_PRIVATE: 'true',
      BATCH_SIZE: '100',
      IMPORT_TIMEOUT_MS: '600000',
    });
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
    const res = await fetch(`${server.url}/api/import`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ source: 'jira', connection, ...body }),
    });
    const answer = await res.json();
    expect(res.status, JSON.stringify(answer)).toBe(202);
    return waitForJob(server.url, answer.job_id, 120_000);
  }
  const sql = async <R>(text: string) => (await server.intake.db.query<R>(text)).rows;

  it('pulls every issue page by page, with the fields asked for, into typed columns merged on the id', async () => {
    const searches = jira.searches.length;
    const job = await pull({ jql: 'project = ABC', dataset: 'abc_issues' });
    expect(job).toMatchObject({
      status: 'completed',
      source_type: 'jira_ingest',
      dataset: 'abc_issues',
      mode: 'merge',
      key: ['id'],
      records_processed: ISSUES,
      rows_inserted: ISSUES,
      rows_updated: 0,
    });
    const sent = jira.searches.slice(searches);
    expect(sent).toHaveLength(ISSUES / 100);
    expect(sent[0]).toBe('(project = ABC) ORDER BY updated ASC, id ASC');
    const columns = Object.fromEntries(
      ((await getJson(`${server.url}/api/datasets/abc_issues`)).body.columns as { name: string; type: string }[]).map((c) => [
        c.name,
        c.type,
      ]),
    );
    expect(columns).toMatchObject({
      id: 'bigint',
      key: 'text',
      summary: 'text',
      status: 'text',
      created: 'timestamptz',
      updated: 'timestamptz',
      labels: 'jsonb',
      raw: 'jsonb',
    });
    expect(
      await sql<{ n: number; ids: number; done: number }>(
        "SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids, count(*) FILTER (WHERE status = 'Done')::int AS done FROM datasets.abc_issues",
      ),
    ).toEqual([{ n: ISSUES, ids: ISSUES, done: Math.floor(ISSUES / 3) }]);
    const [row] = await sql<Record<string, unknown>>(
      "SELECT key, assignee, resolved IS NULL AS open, labels::text, raw->>'key' AS raw_key FROM datasets.abc_issues WHERE id = 10005",
    );
    expect(row).toEqual({ key: 'ABC-5', assignee: 'Grace Hopper', open: true, labels: '["five"]', raw_key: 'ABC-5' });
  });

  // Each round changes 37 issues, the one at the mark among them (the overlap asks for it
  // again), within 3 hours after the mark: a mark sent as a date in UTC would be read 14 hours
  // early at UTC+14 (pulling issues that did not change) and 11 hours late at UTC-11 (missing
  // them all).
  it.each([
    { timeZone: 'Pacific/Kiritimati', first: 100 },
    { timeZone: 'Pacific/Pago_Pago', first: 150 },
  ])(
    'pulls again only what changed since the mark, sent as epoch milliseconds, and merges it (account in $timeZone)',
    async ({ timeZone, first }) => {
      jira.timeZone = timeZone;
      const abc = jira.issues.slice(0, ISSUES);
      const newest = Math.max(...abc.map(updatedMs));
      const touched = new Set([abc.find((issue) => updatedMs(issue) === newest)!]);
      for (let n = first; touched.size < 37; n += 97) touched.add(abc[n]!);
      [...touched].forEach((issue, i) => {
        issue.fields.summary = `changed in ${timeZone}`;
        issue.fields.updated = jiraTime(newest + (i + 1) * 5 * MINUTE); // apart by more than the overlap
      });
      const searches = jira.searches.length;
      const job = await pull({ jql: 'project = ABC', dataset: 'abc_issues' });
      expect(job).toMatchObject({ status: 'completed', records_processed: touched.size, rows_inserted: 0, rows_updated: touched.size });
      expect(
        await sql<{ n: number; ids: number }>('SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids FROM datasets.abc_issues'),
      ).toEqual([{ n: ISSUES, ids: ISSUES }]);
      // Exactly the issues changed were written by this run, each with its new summary.
      const written = await sql<{ id: string; summary: string }>(
        `SELECT id::text, summary FROM datasets.abc_issues WHERE _intake_job_id = '${job.job_id}' ORDER BY id`,
      );
      expect(written).toEqual(
        [...touched].map((issue) => ({ id: issue.id, summary: `changed in ${timeZone}` })).sort((a, b) => Number(a.id) - Number(b.id)),
      );
      expect(jira.searches[searches]).toBe(`(project = ABC) AND updated >= ${newest - OVERLAP_MS} ORDER BY updated ASC, id ASC`);
    },
  );

  it("waits as Retry-After says on 429, retries a 503, and fails loudly on a bad query with Jira's words", async () => {
    jira.faults.push({ status: 429, retryAfter: '1' }, { status: 503 });
    const started = Date.now();
    const job = await pull({ jql: 'project = ABC', dataset: 'abc_again' });
    expect(job).toMatchObject({ status: 'completed', records_processed: ISSUES });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);

    const bad = await pull({ jql: 'project = abc', dataset: 'abc_bad' });
    expect(bad).toMatchObject({
      status: 'failed',
      records_processed: 0,
      error: 'Jira answered HTTP 400: Error in the JQL Query: the query "(project = abc) ORDER BY updated ASC, id ASC" is not valid here.',
    });
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
    const child = spawn(
      process.execPath,
      [
        join(ROOT, 'bin/intake.js'),
        'import',
        'jira',
        '--connection',
        connection,
        '--jql',
        'project = ABC',
        '--dataset',
        'abc_cli',
        '--wait',
      ],
      {
        env: { PATH: process.env.PATH ?? '', INTAKE_URL: server.url },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(
      new RegExp(
        `completed: ${ISSUES.toLocaleString('en-US')} records in [\\d.]+ s; dataset abc_cli: ${ISSUES.toLocaleString('en-US')} rows inserted, 0 updated`,
      ),
    );
  }, 120_000);

  it('refuses what a Jira pull cannot take, with a 422 naming the field', async () => {
    const refused = async (body: Record<string, unknown>) => {
      const res = await fetch(`${server.url}/api/import`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ source: 'jira', ...body }),
      });
      expect(res.status).toBe(422);
      return (await res.json()).detail[0];
    };
    expect((await refused({ jql: 'project = ABC' })).loc).toEqual(['body', 'connection']);
    expect((await refused({ connection, jql: 'project = ABC ORDER BY created' })).msg).toMatch(/ORDER BY/);
    expect((await refused({ connection, jql: 'project = ABC', mode: 'append' })).loc).toEqual(['body', 'mode']);
    expect((await refused({ connection, jql: '  ' })).loc).toEqual(['body', 'jql']);
  });

  it('completes a pull that finds no issue with 0 rows, into a new dataset or one that has rows, leaving it as it was (issue 23, item 23)', async () => {
    expect(await pull({ jql: 'project = NONE', dataset: 'no_issues' })).toMatchObject({
      status: 'completed',
      records_processed: 0,
      rows_inserted: 0,
      rows_updated: 0,
    });
    for (let n = 1; n <= 3; n++) jira.issues.push(issueOf('ZER', 40_000 + n, n, BASE + n * MINUTE));
    expect(await pull({ jql: 'project = ZER', dataset: 'zero_issues' })).toMatchObject({ status: 'completed', rows_inserted: 3 });
    const rows = () =>
      sql<Record<string, unknown>>(
        'SELECT id::text, summary, _intake_job_id::text, _intake_record_no::text FROM datasets.zero_issues ORDER BY id',
      );
    const before = await rows();
    expect(before).toHaveLength(3);
    expect(await pull({ jql: 'project = NONE', dataset: 'zero_issues' })).toMatchObject({
      status: 'completed',
      records_processed: 0,
      rows_inserted: 0,
      rows_updated: 0,
    });
    expect(await rows()).toEqual(before);
    // The next pull merges as before.
    jira.issues.push(issueOf('ZER', 40_004, 4, BASE + 4 * MINUTE));
    expect(await pull({ jql: 'project = ZER', dataset: 'zero_issues' })).toMatchObject({ status: 'completed', rows_inserted: 1 });
  });

  it('cancels a pull mid-way: it ends canceled, its dataset and its mark as they were', async () => {
    // A first run loads 300 issues and sets the mark; 1,000 more change after it.
    for (let n = 1; n <= 300; n++) jira.issues.push(issueOf('CAN', 30_000 + n, n, BASE + n * MINUTE));
    expect(await pull({ jql: 'project = CAN', dataset: 'can_issues' })).toMatchObject({ status: 'completed', records_processed: 300 });
    const mark = BASE + 300 * MINUTE;
    for (let n = 301; n <= 1300; n++) jira.issues.push(issueOf('CAN', 30_000 + n, n, BASE + HOUR * 24 + n * MINUTE));
    const rows = () =>
      sql<Record<string, unknown>>('SELECT id, summary, updated, _intake_job_id, _intake_record_no FROM datasets.can_issues ORDER BY id');
    const before = await rows();
    expect(before).toHaveLength(300);

    // The run reads three pages (committed, a batch each), then waits on the fourth.
    const stall = jira.stall(4);
    const searches = jira.searches.length;
    const res = await fetch(`${server.url}/api/import`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ source: 'jira', connection, jql: 'project = CAN', dataset: 'can_issues' }),
    });
    expect(res.status).toBe(202);
    const jobId = ((await res.json()) as { job_id: string }).job_id;
    await stall.reached;
    const running = await waitForProgress(server.url, jobId, (job) => job.records_processed >= 300);
    expect(running).toMatchObject({ status: 'running', records_processed: 300 });

    const canceled = await fetch(`${server.url}/api/job/${jobId}/cancel`, { method: 'POST' });
    expect(canceled.status).toBe(200);
    expect(((await canceled.json()) as JobPayload).status).toBe('canceled');
    stall.release();
    // The run lets go at its next batch: its stage is dropped.
    const deadline = Date.now() + 20_000;
    while (await stageExists(server.intake.db, jobId)) {
      if (Date.now() > deadline) throw new Error('the canceled run never let go of its stage');
      await sleep(20);
    }
    expect(await waitForJob(server.url, jobId)).toMatchObject({ status: 'canceled', records_processed: 300, rows_inserted: null });
    const sent = jira.searches.slice(searches);
    expect(sent[0]).toBe(`(project = CAN) AND updated >= ${mark - OVERLAP_MS} ORDER BY updated ASC, id ASC`);
    expect(sent.length).toBeLessThan(11); // stopped before the last of its 11 pages
    expect(await rows()).toEqual(before);
    expect(await sql(`SELECT id FROM datasets.can_issues WHERE _intake_job_id = '${jobId}'`)).toEqual([]);

    // The mark did not move: the next run asks from it again and loads the changes once.
    const again = jira.searches.length;
    const next = await pull({ jql: 'project = CAN', dataset: 'can_issues' });
    expect(jira.searches[again]).toBe(sent[0]);
    expect(next).toMatchObject({ status: 'completed', records_processed: 1003, rows_inserted: 1000, rows_updated: 3 }); // 3: the overlap's
    expect(await sql('SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids FROM datasets.can_issues')).toEqual([
      { n: 1300, ids: 1300 },
    ]);
  });

  it('a cancel aborts the search in flight at once, instead of waiting IMPORT_TIMEOUT_MS for Jira (issue 23, item 14)', async () => {
    for (let n = 1; n <= 5; n++) jira.issues.push(issueOf('HNG', 50_000 + n, n, BASE + n * MINUTE));
    const stall = jira.stall(1);
    const res = await fetch(`${server.url}/api/import`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ source: 'jira', connection, jql: 'project = HNG', dataset: 'hng_issues' }),
    });
    expect(res.status).toBe(202);
    const jobId = ((await res.json()) as { job_id: string }).job_id;
    await stall.reached;
    const canceled = await fetch(`${server.url}/api/job/${jobId}/cancel`, { method: 'POST' });
    expect(canceled.status).toBe(200);
    // The worker closes its connection to Jira (this test's timeout is far below IMPORT_TIMEOUT_MS).
    await stall.dropped;
    stall.release();
    expect(await waitForJob(server.url, jobId)).toMatchObject({ status: 'canceled', records_processed: 0 });
    const deadline = Date.now() + 20_000;
    while (await stageExists(server.intake.db, jobId)) {
      if (Date.now() > deadline) throw new Error('the canceled run never let go of its stage');
      await sleep(20);
    }
    expect(await pull({ jql: 'project = HNG', dataset: 'hng_issues' })).toMatchObject({ status: 'completed', records_processed: 5 });
  });

  describe('killed mid-pull', () => {
    const cleanup: (() => Promise<unknown>)[] = [];
    afterEach(async () => {
      for (const fn of cleanup.splice(0).reverse()) await fn();
    });

    // In scale-out mode the job runs in `intake worker`, the process killed; otherwise in `intake serve`.
    it("takes a pull killed (SIGKILL) mid-way up again: every issue once, the counters the whole pull's", async () => {
      const killed = await createSandbox(backend);
      cleanup.push(() => killed.dispose());
      const env = { ...killed.env, SECRET_KEY: randomBytes(32).toString('hex'), IMPORT_ALLOW_PRIVATE: 'true', BATCH_SIZE: '100' };
      const scaleOut = backend.name === 'scale-out';
      let api = await startIntakeProcess(scaleOut ? { ...env, WORKER_CONCURRENCY: '0' } : env);
      cleanup.push(() => api.stop('SIGKILL'));
      let runner = scaleOut ? await startWorkerProcess(env) : api;
      cleanup.push(() => runner.stop('SIGKILL'));
      const saved = await fetch(`${api.url}/api/connections`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'jira', base_url: jira.url, email: jira.email, api_token: jira.token }),
      });
      expect(saved.status).toBe(201);
      const id = ((await saved.json()) as { id: string }).id;

      const stall = jira.stall(4);
      const res = await fetch(`${api.url}/api/import`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ source: 'jira', connection: id, jql: 'project = ABC', dataset: 'abc_killed' }),
      });
      expect(res.status).toBe(202);
      const jobId = ((await res.json()) as { job_id: string }).job_id;
      await stall.reached;
      expect(await waitForProgress(api.url, jobId, (job) => job.records_processed >= 300)).toMatchObject({
        status: 'running',
        records_processed: 300,
      });
      expect(await runner.stop('SIGKILL')).toBeNull();

      // Started again, the pull reads from the first page again, up to the stalled one.
      const resumed = jira.stall(4);
      runner = scaleOut ? await startWorkerProcess(env) : (api = await startIntakeProcess(env));
      await resumed.reached;
      stall.release();
      resumed.release();
      const job = await waitForJob(api.url, jobId, 60_000);
      expect(job).toMatchObject({
        status: 'completed',
        records_processed: ISSUES,
        records_failed: 0,
        rows_inserted: ISSUES,
        rows_updated: 0,
        attempts: 2,
        error: null,
      });
      // The bytes of one whole pull (the killed run's were counted again from nothing).
      expect(job.bytes_processed).toBe(
        jira.issues.slice(0, ISSUES).reduce((sum, issue) => sum + Buffer.byteLength(JSON.stringify(issueRecord(issue))) + 1, 0),
      );
      expect(runner.output()).toContain('a Jira pull resumed: pulling again from the start');

      // What the dataset holds, as POST /api/sql reads it.
      const answer = await fetch(`${api.url}/api/sql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          sql: `SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids, count(DISTINCT _intake_record_no)::int AS records,
                  min(_intake_record_no)::int AS first, max(_intake_record_no)::int AS last, count(*) FILTER (WHERE _intake_job_id = '${jobId}')::int AS of_job
                FROM abc_killed`,
        }),
      });
      expect(answer.status).toBe(200);
      const stats = rowObjects((await answer.json()) as { rows: unknown[] }).rows;
      expect(stats).toEqual([{ n: ISSUES, ids: ISSUES, records: ISSUES, first: 0, last: ISSUES - 1, of_job: ISSUES }]);
      if (scaleOut) expect(await runner.stop('SIGTERM')).toBe(0);
      expect(await api.stop('SIGTERM')).toBe(0);
    });
  });

  it('never answered 5xx', () => {
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
  });
});
