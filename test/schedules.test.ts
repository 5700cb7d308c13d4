/**
 * Schedules (POST /api/schedules): an import run every so often, never overlapping itself (a
 * beat whose previous run is still going is skipped), paused, resumed and deleted; in scale-out
 * mode through BullMQ's job schedulers with two worker processes.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backends,
  createSandbox,
  deleteRedisKeys,
  getJson,
  postJson,
  startServer,
  upload,
  waitForJob,
  type Sandbox,
  type TestServer,
} from './helpers.js';
import { startWorkerProcess } from './process.js';

/** A CSV that takes `slowMs` to send, counting requests and how many were open at once. */
async function slowSource(slowMs: number) {
  const stats = { requests: 0, open: 0, maxOpen: 0 };
  const server: Server = createServer((_req, res) => {
    stats.requests++;
    stats.open++;
    stats.maxOpen = Math.max(stats.maxOpen, stats.open);
    res.writeHead(200, { 'content-type': 'text/csv' });
    res.write('n,at\n');
    let sent = 0;
    const timer = setInterval(() => {
      res.write(`${sent++},${new Date().toISOString()}\n`);
      if (sent * 100 >= slowMs) {
        clearInterval(timer);
        res.end();
      }
    }, 100);
    res.once('close', () => {
      clearInterval(timer);
      stats.open--;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/beats.csv?sig=abc`,
    stats,
    close: () => new Promise((r) => server.close(r)),
  };
}

const overlaps = (runs: { started_at: string | null; completed_at: string | null }[]) => {
  const spans = runs
    .filter((r) => r.started_at)
    .map((r) => [Date.parse(r.started_at!), r.completed_at ? Date.parse(r.completed_at) : Infinity] as const);
  spans.sort((a, b) => a[0] - b[0]);
  return spans.some((span, i) => i > 0 && span[0] < spans[i - 1]![1]);
};

describe.each(backends())('schedules ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  let second: Awaited<ReturnType<typeof startWorkerProcess>> | undefined;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { IMPORT_ALLOW_PRIVATE: 'true' });
    // Scale-out: a second worker process, so beats are shared out and must still never overlap.
    if (backend.name === 'scale-out') second = await startWorkerProcess({ ...sandbox.env, IMPORT_ALLOW_PRIVATE: 'true' });
  });

  afterAll(async () => {
    if (second) expect(await second.stop()).toBe(0);
    await server?.close();
    await sandbox?.dispose();
  });

  it('runs an import every 2 seconds, skipping a beat while the last run is still going; pause, resume and delete', async () => {
    const source = await slowSource(3000); // each run takes longer than the interval
    try {
      const made = await postJson(`${server.url}/api/schedules`, {
        import: { url: source.url, dataset: 'beats', mode: 'append' },
        every: '2s',
      });
      expect(made.status).toBe(201);
      const id = made.body.schedule_id;
      expect(made.body).toMatchObject({ every: '2s', every_ms: 2000, paused: false, runs: 0, skipped: 0, last_run: null });
      expect(made.body.import.url).toBe(source.url.replace('?sig=abc', '')); // a signed URL's query is not shown
      await expect
        .poll(async () => (await getJson(`${server.url}/api/schedules/${id}`)).body.runs, { timeout: 30_000, interval: 200 })
        .toBeGreaterThanOrEqual(3);
      const shown = (await getJson(`${server.url}/api/schedules/${id}`)).body;
      expect(shown.skipped).toBeGreaterThanOrEqual(1);
      expect(shown.recent_runs.length).toBe(Math.min(shown.runs, 10));
      expect(shown.last_run.job_id).toBe(shown.recent_runs[0].job_id);
      expect(shown.recent_runs.every((job: any) => job.source_type === 'url_import' && job.dataset === 'beats')).toBe(true);
      expect(overlaps(shown.recent_runs)).toBe(false);
      expect(source.stats.maxOpen).toBe(1);
      const list = await getJson(`${server.url}/api/schedules`);
      expect(list.body.results.map((s: any) => s.schedule_id)).toContain(id);

      // Paused: no run starts (the one going on may end).
      const paused = await postJson(`${server.url}/api/schedules/${id}/pause`, {});
      expect(paused.status).toBe(200);
      expect(paused.body).toMatchObject({ paused: true, next_run_at: null });
      await sleep(500);
      const requestsAtPause = source.stats.requests;
      await sleep(4500);
      expect(source.stats.requests).toBe(requestsAtPause);

      // Resumed: runs again.
      const resumed = await postJson(`${server.url}/api/schedules/${id}/resume`, {});
      expect(resumed.body.paused).toBe(false);
      await expect.poll(() => source.stats.requests, { timeout: 15_000, interval: 200 }).toBeGreaterThan(requestsAtPause);

      // Deleted: gone, and nothing more runs; the jobs it made stay.
      const runs = (await getJson(`${server.url}/api/schedules/${id}`)).body.recent_runs;
      expect((await fetch(`${server.url}/api/schedules/${id}`, { method: 'DELETE' })).status).toBe(204);
      expect((await getJson(`${server.url}/api/schedules/${id}`)).status).toBe(404);
      await sleep(500);
      const requestsAtDelete = source.stats.requests;
      await sleep(4500);
      expect(source.stats.requests).toBe(requestsAtDelete);
      expect((await getJson(`${server.url}/api/job/${runs[0].job_id}`)).status).toBe(200);
      expect(source.stats.maxOpen).toBe(1);
    } finally {
      await source.close();
    }
  }, 90_000);

  it('keeps running across a restart of Intake (in scale-out, even when Redis lost its schedulers)', async () => {
    const source = await slowSource(0);
    try {
      const made = await postJson(`${server.url}/api/schedules`, { import: { url: source.url, dataset: 'restarted' }, every: '1s' });
      expect(made.status).toBe(201);
      const id = made.body.schedule_id;
      const runs = async () => (await getJson(`${server.url}/api/schedules/${id}`)).body.runs as number;
      await expect.poll(runs, { timeout: 20_000, interval: 200 }).toBeGreaterThanOrEqual(1);
      if (second) expect(await second.stop()).toBe(0);
      await server.close();
      if (backend.name === 'scale-out') await deleteRedisKeys(sandbox.env.REDIS_URL!, sandbox.env.REDIS_KEY_PREFIX!);
      server = await startServer(sandbox, { IMPORT_ALLOW_PRIVATE: 'true' });
      if (second) second = await startWorkerProcess({ ...sandbox.env, IMPORT_ALLOW_PRIVATE: 'true' });
      const before = await runs();
      await expect.poll(runs, { timeout: 20_000, interval: 200 }).toBeGreaterThan(before);
      expect((await fetch(`${server.url}/api/schedules/${id}`, { method: 'DELETE' })).status).toBe(204);
    } finally {
      await source.close();
    }
  }, 90_000);

  it('backs off a schedule whose runs keep failing, says so on it, and pauses it after a day of failures', async () => {
    let requests = 0;
    const gone = createServer((_req, res) => {
      requests++;
      res.writeHead(404);
      res.end('no such export');
    });
    await new Promise<void>((resolve) => gone.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(gone.address() as AddressInfo).port}/gone.csv`;
      const made = await postJson(`${server.url}/api/schedules`, { import: { url, dataset: 'gone' }, every: '1s' });
      expect(made.status).toBe(201);
      expect(made.body).toMatchObject({ consecutive_failures: 0, failing_since: null, deferred: 0 });
      const id = made.body.schedule_id;
      const read = async () => (await getJson(`${server.url}/api/schedules/${id}`)).body;
      const failing = await expect
        .poll(async () => (await read()).consecutive_failures, { timeout: 30_000, interval: 200 })
        .toBeGreaterThanOrEqual(3)
        .then(read);
      expect(failing.last_error).toMatch(/^its last run failed: .*HTTP 404/);
      expect(failing.failing_since).not.toBeNull();
      // From the 3rd failure in a row, each run waits twice as long as the one before: 2 s, 4 s …
      const wait = Date.parse(failing.next_run_at) - Date.parse(failing.last_run_at);
      expect(wait).toBeGreaterThanOrEqual(2000 * 2 ** (failing.consecutive_failures - 3) - 100);
      expect(requests).toBeLessThanOrEqual(failing.consecutive_failures + 1);

      // A day of nothing but failures: the next beat pauses it, with its error.
      await server.intake.db.query(
        `UPDATE intake_schedules SET failing_since = now() - interval '25 hours', next_run_at = now() WHERE schedule_id = $1`,
        [id],
      );
      const paused = await expect
        .poll(async () => (await read()).paused, { timeout: 30_000, interval: 200 })
        .toBe(true)
        .then(read);
      expect(paused.last_error).toMatch(/^paused after failing since \S+: its last run failed: .*HTTP 404/);
      expect(paused.next_run_at).toBeNull();
      await sleep(500);
      const requestsAtPause = requests;
      await sleep(3000);
      expect(requests).toBe(requestsAtPause);
      // Resumed, it starts afresh.
      const resumed = await postJson(`${server.url}/api/schedules/${id}/resume`, {});
      expect(resumed.body).toMatchObject({ paused: false, consecutive_failures: 0, failing_since: null });
      expect((await fetch(`${server.url}/api/schedules/${id}`, { method: 'DELETE' })).status).toBe(204);
    } finally {
      await new Promise((resolve) => gone.close(resolve));
    }
  }, 90_000);

  it('changes the interval of a schedule (PATCH): its next run counted from its last run, the new interval in effect at once', async () => {
    const source = await slowSource(0);
    try {
      const made = await postJson(`${server.url}/api/schedules`, { import: { url: source.url, dataset: 'edited' }, every: '1h' });
      expect(made.status).toBe(201);
      const id = made.body.schedule_id;
      const patch = (body: unknown, path = `/api/schedules/${id}`) =>
        fetch(server.url + path, { method: 'PATCH', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }).then(
          async (res) => ({ status: res.status, body: await res.json() }),
        );
      const read = async () => (await getJson(`${server.url}/api/schedules/${id}`)).body;

      // Not run yet: one new interval from now.
      const before = Date.now();
      const faster = await patch({ every: '1S' });
      expect(faster.status).toBe(200);
      expect(faster.body).toMatchObject({ schedule_id: id, every: '1s', every_ms: 1000, paused: false, runs: 0 });
      expect(Date.parse(faster.body.next_run_at)).toBeGreaterThanOrEqual(before + 1000 - 50);
      expect(Date.parse(faster.body.next_run_at)).toBeLessThanOrEqual(Date.now() + 1000 + 50);
      await expect.poll(async () => (await read()).runs, { timeout: 20_000, interval: 200 }).toBeGreaterThanOrEqual(2);

      // Slower: one hour after the last run, and no run meanwhile.
      const slower = await patch({ every: '1h' });
      expect(slower.status).toBe(200);
      expect(slower.body.every_ms).toBe(3_600_000);
      const settled = await sleep(1000).then(read);
      // (A beat BullMQ had already started when the edit came may still run: its run counts from itself.)
      expect(Math.abs(Date.parse(settled.next_run_at) - (Date.parse(settled.last_run_at) + 3_600_000))).toBeLessThan(1000);
      await sleep(3000);
      expect((await read()).runs).toBe(settled.runs);
      // The same interval written another way changes only how it is written.
      const same = await patch({ every: '60m' });
      expect(same.body).toMatchObject({ every: '60m', every_ms: 3_600_000, next_run_at: settled.next_run_at });

      // Paused, it stays paused at its new interval; resumed, it runs at it.
      expect((await postJson(`${server.url}/api/schedules/${id}/pause`, {})).status).toBe(200);
      const whilePaused = await patch({ every: '1s' });
      expect(whilePaused.body).toMatchObject({ every: '1s', every_ms: 1000, paused: true, next_run_at: null });
      await sleep(2500);
      expect((await read()).runs).toBe(settled.runs);
      expect((await postJson(`${server.url}/api/schedules/${id}/resume`, {})).body).toMatchObject({ paused: false, every_ms: 1000 });
      await expect.poll(async () => (await read()).runs, { timeout: 20_000, interval: 200 }).toBeGreaterThan(settled.runs);

      // Refused as POST refuses an interval; an unknown schedule is a 404.
      for (const [body, detail] of [
        [{ every: '500ms' }, /every is a duration from 1s/],
        [{ every: 'often' }, /every is a duration/],
        [{ every: '367d' }, /every is a duration/],
        [{ every: 15 }, /every/],
        [{}, /every/],
        [{ every: '1m', paused: true }, /paused|additional/],
      ] as const) {
        const refused = await patch(body);
        expect(refused.status, JSON.stringify(body)).toBe(422);
        expect(JSON.stringify(refused.body.detail)).toMatch(detail);
        expect(refused.body.code).toBeTruthy();
      }
      expect((await read()).every).toBe('1s');
      for (const path of ['/api/schedules/nope', '/api/schedules/00000000-0000-4000-8000-000000000000']) {
        const missing = await patch({ every: '1m' }, path);
        expect(missing).toMatchObject({ status: 404, body: { code: 'schedule_not_found', detail: 'No schedule with this id' } });
      }
      // Bad interval and unknown id together: the interval is checked first, as POST checks its body first.
      expect((await patch({ every: 'never' }, '/api/schedules/nope')).status).toBe(422);

      // The OpenAPI document has it.
      const doc = (await getJson(`${server.url}/openapi.json`)).body;
      const operation = doc.paths['/api/schedules/{id}'].patch;
      expect(Object.keys(operation.responses)).toEqual(expect.arrayContaining(['200', '404', '422']));
      expect(operation.requestBody.content['application/json'].schema.required).toEqual(['every']);

      expect((await fetch(`${server.url}/api/schedules/${id}`, { method: 'DELETE' })).status).toBe(204);
    } finally {
      await source.close();
    }
  }, 90_000);

  it('refuses what it cannot run, with a 422 naming the field', async () => {
    const cases: [unknown, number, RegExp][] = [
      [{ import: { url: 'http://example.com/a.csv' }, every: 'often' }, 422, /every is a duration/],
      [{ import: { url: 'http://example.com/a.csv' }, every: '500ms' }, 422, /every is a duration from 1s/],
      [{ import: { url: 'ftp://example.com/a.csv' }, every: '1m' }, 422, /ftp/],
      [{ import: {}, every: '1m' }, 422, /url is required/],
      [{ import: { url: 'http://example.com/a.csv', mode: 'merge' }, every: '1m' }, 422, /key/],
      [{ every: '1m' }, 422, /import/],
      [
        { import: { source: 'jira', connection: '00000000-0000-4000-8000-000000000000', jql: 'project = A' }, every: '1h' },
        422,
        /saved connection/,
      ],
    ];
    for (const [body, status, detail] of cases) {
      const res = await postJson(`${server.url}/api/schedules`, body);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(JSON.stringify(res.body.detail)).toMatch(detail);
    }
    for (const path of ['/api/schedules/nope', '/api/schedules/00000000-0000-4000-8000-000000000000']) {
      expect((await getJson(server.url + path)).body.code).toBe('schedule_not_found');
      expect((await postJson(`${server.url}${path}/pause`, {})).status).toBe(404);
      expect((await fetch(server.url + path, { method: 'DELETE' })).status).toBe(404);
    }
  });

  it('never answered 5xx', () => {
    expect(server.statuses.filter((status) => status >= 500)).toEqual([]);
  });
});

describe.each(backends())('schedules within limits ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, {
      IMPORT_ALLOW_PRIVATE: 'true',
      WORKER_CONCURRENCY: '1',
      MAX_SCHEDULES: '12',
      MAX_SCHEDULED_JOBS_PER_MINUTE: '4',
    });
  });

  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  const scheduledJobs = async () =>
    (
      await server.intake.db.query<{ job_id: string; submitted_at: Date; started_at: Date | null }>(
        'SELECT job_id, submitted_at, started_at FROM ingest_jobs WHERE schedule_id IS NOT NULL',
      )
    ).rows;

  it('makes at most MAX_SCHEDULES schedules, however many are asked for at once', async () => {
    const source = 'http://127.0.0.1:9/never.csv';
    const answers = await Promise.all(
      Array.from({ length: 30 }, () => postJson(`${server.url}/api/schedules`, { import: { url: source }, every: '1h', paused: true })),
    );
    expect(answers.filter((a) => a.status === 201)).toHaveLength(12);
    const refused = answers.filter((a) => a.status !== 201);
    expect(refused).toHaveLength(18);
    for (const answer of refused) expect(answer).toMatchObject({ status: 409, body: { code: 'too_many_schedules' } });
    const listed = (await getJson(`${server.url}/api/schedules`)).body.results;
    expect(listed).toHaveLength(12);
    for (const schedule of listed)
      expect((await fetch(`${server.url}/api/schedules/${schedule.schedule_id}`, { method: 'DELETE' })).status).toBe(204);
  });

  it('starts at most MAX_SCHEDULED_JOBS_PER_MINUTE scheduled jobs (the other beats wait), and an upload runs before the scheduled jobs waiting', async () => {
    const blocker = await slowSource(6000);
    const fast = await slowSource(0);
    const ids: string[] = [];
    try {
      // The one worker is busy with an import while the schedules' jobs queue up behind it.
      const held = await postJson(`${server.url}/api/import`, { url: blocker.url, dataset: 'held' });
      expect(held.status).toBe(202);
      await expect
        .poll(async () => (await getJson(`${server.url}/api/job/${held.body.job_id}`)).body.status, { timeout: 20_000, interval: 100 })
        .toBe('running');
      for (let i = 0; i < 8; i++) {
        const made = await postJson(`${server.url}/api/schedules`, { import: { url: fast.url, dataset: `every_${i}` }, every: '1s' });
        expect(made.status).toBe(201);
        ids.push(made.body.schedule_id);
      }
      await expect.poll(async () => (await scheduledJobs()).length, { timeout: 20_000, interval: 100 }).toBe(4);
      const uploaded = await upload(server.url, 'people.csv', 'id,name\n1,ada\n');
      expect(uploaded.status).toBe(202);
      const done = await waitForJob(server.url, uploaded.body.job_id, 60_000);
      expect(done.status).toBe('completed');
      // Every scheduled job waiting when the upload came started after it.
      const before = (await scheduledJobs()).filter((job) => job.submitted_at.getTime() < Date.parse(done.submitted_at));
      expect(before.length).toBeGreaterThan(0);
      for (const job of before) if (job.started_at) expect(job.started_at.getTime()).toBeGreaterThanOrEqual(Date.parse(done.started_at!));

      // The budget holds for the rest of the minute: the other beats are put off, not run.
      await sleep(3000);
      expect((await scheduledJobs()).length).toBe(4);
      const shown = (await getJson(`${server.url}/api/schedules`)).body.results;
      expect(shown.reduce((sum: number, s: any) => sum + s.deferred, 0)).toBeGreaterThan(0);
      expect(shown.reduce((sum: number, s: any) => sum + s.runs, 0)).toBe(4);
    } finally {
      for (const id of ids) await fetch(`${server.url}/api/schedules/${id}`, { method: 'DELETE' });
      await blocker.close();
      await fast.close();
    }
  }, 90_000);

  it('never answered 5xx', () => {
    expect(server.statuses.filter((status) => status >= 500)).toEqual([]);
  });
});
