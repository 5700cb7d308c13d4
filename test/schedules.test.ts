/**
 * Schedules (POST /api/schedules): an import run every so often, never overlapping itself (a
 * beat whose previous run is still going is skipped), paused, resumed and deleted; in scale-out
 * mode through BullMQ's job schedulers with two worker processes.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, createSandbox, deleteRedisKeys, getJson, postJson, startServer, type Sandbox, type TestServer } from './helpers.js';
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
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/beats.csv?sig=abc`, stats, close: () => new Promise((r) => server.close(r)) };
}

const overlaps = (runs: { started_at: string | null; completed_at: string | null }[]) => {
  const spans = runs.filter((r) => r.started_at).map((r) => [Date.parse(r.started_at!), r.completed_at ? Date.parse(r.completed_at) : Infinity] as const);
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
      const made = await postJson(`${server.url}/api/schedules`, { import: { url: source.url, dataset: 'beats', mode: 'append' }, every: '2s' });
      expect(made.status).toBe(201);
      const id = made.body.schedule_id;
      expect(made.body).toMatchObject({ every: '2s', every_ms: 2000, paused: false, runs: 0, skipped: 0, last_run: null });
      expect(made.body.import.url).toBe(source.url.replace('?sig=abc', '')); // a signed URL's query is not shown
      await expect.poll(async () => (await getJson(`${server.url}/api/schedules/${id}`)).body.runs, { timeout: 30_000, interval: 200 }).toBeGreaterThanOrEqual(3);
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

  it('refuses what it cannot run, with a 422 naming the field', async () => {
    const cases: [unknown, number, RegExp][] = [
      [{ import: { url: 'http://example.com/a.csv' }, every: 'often' }, 422, /every is a duration/],
      [{ import: { url: 'http://example.com/a.csv' }, every: '500ms' }, 422, /every is a duration from 1s/],
      [{ import: { url: 'ftp://example.com/a.csv' }, every: '1m' }, 422, /ftp/],
      [{ import: {}, every: '1m' }, 422, /url is required/],
      [{ import: { url: 'http://example.com/a.csv', mode: 'merge' }, every: '1m' }, 422, /key/],
      [{ every: '1m' }, 422, /import/],
      [{ import: { source: 'jira', connection: '00000000-0000-4000-8000-000000000000', jql: 'project = A' }, every: '1h' }, 422, /saved connection/],
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
