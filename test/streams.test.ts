/**
 * Event streams as a bounded resource: at most MAX_EVENT_STREAMS open per process (429 past
 * it), a client that stops reading is dropped, and the streams of one job cost one re-read of
 * its row per recheck period, however many they are.
 */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomUUID } from 'node:crypto';
import { readEvents } from '../src/client/sse.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobPayload } from '../src/core/job.js';
import type { Db } from '../src/storage/db.js';
import { backends, createSandbox, getJson, makeCsv, startServer, upload, waitForJob, type Sandbox, type TestServer } from './helpers.js';

const RECHECK_MS = 2000; // src/http/routes/events.ts

interface EventStream {
  status: number;
  headers: Headers;
  /** The JSON body of a non-200 answer. */
  body?: any;
  /** Each event's type and data (comments left out). */
  events: { event: string; data: string }[];
  /** Resolves when the server ends the stream (rejects if it is cut). */
  done: Promise<void>;
  cancel(): void;
}

async function openEvents(url: string): Promise<EventStream> {
  const abort = new AbortController();
  const res = await fetch(url, { signal: abort.signal, headers: { accept: 'text/event-stream' } });
  const events: EventStream['events'] = [];
  if (res.status !== 200 || !res.body) {
    const text = await res.text();
    return {
      status: res.status,
      headers: res.headers,
      body: text ? JSON.parse(text) : undefined,
      events,
      done: Promise.resolve(),
      cancel: () => {},
    };
  }
  const body = res.body;
  const done = (async () => {
    for await (const { event, data } of readEvents(body)) events.push({ event, data });
  })();
  done.catch(() => {}); // observed by whoever awaits it
  return { status: res.status, headers: res.headers, events, done, cancel: () => abort.abort() };
}

/** Opens a stream, retrying while it is refused with 429 (a slot given back is given back a moment after the client leaves). */
async function openWhenFree(url: string, timeoutMs = 3000): Promise<EventStream> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stream = await openEvents(url);
    if (stream.status !== 429 || Date.now() > deadline) return stream;
    await sleep(50);
  }
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not after ${timeoutMs} ms`);
    await sleep(20);
  }
}

function expectRefused(stream: EventStream): void {
  expect(stream.status).toBe(429);
  expect(stream.headers.get('content-type')).toMatch(/^application\/json/);
  expect(stream.body).toEqual({ detail: expect.any(String), code: 'too_many_streams' });
  expect(Number(stream.headers.get('retry-after'))).toBeGreaterThan(0);
}

/** Sets a job's row as a worker would have, without telling anyone (no event is published). */
async function setStatus(db: Db, jobId: string, status: JobPayload['status']): Promise<void> {
  const terminal = status === 'running' ? 'NULL' : 'NOW()';
  await db.query(
    `UPDATE ingest_jobs SET status = $2, started_at = COALESCE(started_at, NOW()), completed_at = ${terminal}, version = version + 1 WHERE job_id = $1`,
    [jobId, status],
  );
}

/** Counts the statements that read a job by its id (what an event stream reads), from now on. */
function countJobReads(db: Db): { count(): number; reset(): void } {
  let n = 0;
  const reads = (sql: string) => /ingest_jobs\s+WHERE\s+job_id/.test(sql);
  const query = db.query.bind(db);
  const queryText = db.queryText.bind(db);
  db.query = <R>(sql: string, params?: unknown[]) => {
    if (reads(sql)) n++;
    return query<R>(sql, params);
  };
  db.queryText = (sql, params) => {
    if (reads(sql)) n++;
    return queryText(sql, params);
  };
  return { count: () => n, reset: () => void (n = 0) };
}

describe.each(backends())('event streams ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    // No workers: jobs stay where the tests put them.
    server = await startServer(sandbox, { MAX_EVENT_STREAMS: '3', WORKER_CONCURRENCY: '0' });
  });

  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  it('holds at most MAX_EVENT_STREAMS open over both routes: one more is a 429 with Retry-After, and every way a stream ends gives its slot back', async () => {
    const held = (await upload(server.url, 'held.csv', makeCsv(10))).body.job_id as string;
    const all = `${server.url}/api/jobs/events`;
    const one = `${server.url}/api/job/${held}/events`;
    const open = [await openEvents(all), await openEvents(all), await openEvents(one)];
    try {
      expect(open.map((s) => s.status)).toEqual([200, 200, 200]);
      expectRefused(await openEvents(all));
      expectRefused(await openEvents(one));

      // The client goes away.
      open.shift()!.cancel();
      const next = await openWhenFree(all);
      expect(next.status).toBe(200);
      open.push(next);
      expectRefused(await openEvents(all));

      // The job reaches its terminal state (seen by the recheck: nothing is published).
      await setStatus(server.intake.db, held, 'canceled');
      await Promise.race([
        open[1]!.done,
        sleep(RECHECK_MS + 2000).then(() => Promise.reject(new Error("the held job's stream did not end"))),
      ]);
      expect(open[1]!.events.map((e) => JSON.parse(e.data).status)).toEqual(['queued', 'canceled']);
      // A finished job's stream ends after its one event, every time; an unknown job takes no slot.
      for (let i = 0; i < 5; i++) {
        const finished = await openWhenFree(one);
        expect(finished.status).toBe(200);
        await finished.done;
        expect((await openEvents(`${server.url}/api/job/${randomUUID()}/events`)).status).toBe(404);
      }
      open.push(await openWhenFree(all));
      expect(open.map((s) => s.status)).toEqual([200, 200, 200, 200]);
      expectRefused(await openEvents(all));
    } finally {
      for (const stream of open) stream.cancel();
    }
  });

  it('answers HEAD of a stream at once, taking no slot (a HEAD stream would send nothing and never end)', async () => {
    const id = randomUUID();
    for (let i = 0; i < 5; i++) {
      for (const path of ['/api/jobs/events', `/api/job/${id}/events`]) {
        const res = await fetch(server.url + path, { method: 'HEAD', signal: AbortSignal.timeout(2000) });
        expect(res.status, path).toBe(404);
      }
    }
    const streams = [await openEvents(`${server.url}/api/jobs/events`)];
    try {
      expect(streams[0]!.status).toBe(200);
    } finally {
      for (const stream of streams) stream.cancel();
    }
  });

  it('drops a client that does not read once its unsent output passes the bound, and gives its slot back', async () => {
    // A raw client: it reads the answer's head, then nothing more.
    const serverSockets: Socket[] = [];
    const onConnection = (socket: Socket) => serverSockets.push(socket);
    server.intake.app.server.on('connection', onConnection);
    const client = connect(Number(new URL(server.url).port), '127.0.0.1');
    client.on('error', () => {});
    try {
      await once(client, 'connect');
      client.write('GET /api/jobs/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n');
      const [head] = (await once(client, 'data')) as [Buffer];
      expect(head.toString()).toMatch(/^HTTP\/1\.1 200/);
      client.pause();
      const socket = serverSockets.find((s) => s.remotePort === client.localPort)!;
      expect(socket).toBeDefined();
      const closed = once(socket, 'close');

      // Large events for many jobs, each a status event written at once; far more than the
      // socket buffers on both sides hold (a few MiB on loopback).
      const big = 'x'.repeat(64 * 1024);
      let sent = 0;
      while (!socket.destroyed && sent < 64 * 1024 * 1024) {
        const jobId = randomUUID();
        const payload = JSON.stringify({ job_id: jobId, status: 'canceled', file_name: big, version: 1 });
        await server.intake.events.publish(jobId, payload);
        sent += payload.length;
        await sleep(1); // the server hands what it can to the kernel before the next
      }
      await Promise.race([
        closed,
        sleep(5000).then(() => Promise.reject(new Error(`the server kept the connection after ${sent} bytes of events`))),
      ]);
      console.log(`${backend.name}: a client that did not read was dropped after ${Math.round(sent / 1024)} KiB of events`);

      // Its slot is free again: all three can be opened.
      const streams = [
        await openWhenFree(`${server.url}/api/jobs/events`),
        await openWhenFree(`${server.url}/api/jobs/events`),
        await openWhenFree(`${server.url}/api/jobs/events`),
      ];
      for (const stream of streams) stream.cancel();
      expect(streams.map((s) => s.status)).toEqual([200, 200, 200]);
    } finally {
      server.intake.app.server.off('connection', onConnection);
      client.destroy();
    }
  });

  it('does not drop a client that reads when a burst of progress is more than the bound: progress waits for it', async () => {
    const stream = await openWhenFree(`${server.url}/api/jobs/events`);
    try {
      expect(stream.status).toBe(200);
      // 1,000 jobs running, then each one's progress within one flush: over 1 MiB to write at once.
      const note = 'y'.repeat(1000);
      const jobs = Array.from({ length: 1000 }, () => randomUUID());
      const payload = (jobId: string, version: number) => JSON.stringify({ job_id: jobId, status: 'running', file_name: note, version });
      for (const jobId of jobs) {
        await server.intake.events.publish(jobId, payload(jobId, 1));
        await sleep(0);
      }
      await until('every status event', () => stream.events.length === jobs.length, 10_000);
      for (const jobId of jobs) await server.intake.events.publish(jobId, payload(jobId, 2));
      await until('every progress event', () => stream.events.length === 2 * jobs.length, 10_000);
      expect(new Set(stream.events.slice(jobs.length).map((e) => `${e.event} ${JSON.parse(e.data).job_id}`))).toEqual(
        new Set(jobs.map((id) => `progress ${id}`)),
      );
    } finally {
      stream.cancel();
    }
  });
});

describe.each(backends())('the streams of one job ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { WORKER_CONCURRENCY: '0' });
  });

  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  it('re-read the row once per recheck period for all of them, and not at all once they have ended', async () => {
    const jobId = (await upload(server.url, 'watched.csv', makeCsv(10))).body.job_id as string;
    await setStatus(server.intake.db, jobId, 'running');
    const reads = countJobReads(server.intake.db);
    const n = 200;
    const streams = await Promise.all(Array.from({ length: n }, () => openEvents(`${server.url}/api/job/${jobId}/events`)));
    try {
      expect(streams.map((s) => s.status)).toEqual(streams.map(() => 200));
      await until('every stream has its first event', () => streams.every((s) => s.events.length > 0), 10_000);
      reads.reset();
      await sleep(2 * RECHECK_MS + 500);
      const rechecks = reads.count();
      console.log(`${backend.name}: ${n} streams on one job, ${rechecks} reads of it in ${2 * RECHECK_MS + 500} ms`);
      expect(rechecks).toBeGreaterThanOrEqual(1);
      expect(rechecks).toBeLessThanOrEqual(3);

      // The recheck offers the row to every stream: nothing is published for this change.
      await setStatus(server.intake.db, jobId, 'completed');
      await Promise.race([
        Promise.all(streams.map((s) => s.done)),
        sleep(RECHECK_MS + 3000).then(() => Promise.reject(new Error('not every stream ended'))),
      ]);
      for (const stream of streams) expect(stream.events.map((e) => JSON.parse(e.data).status)).toEqual(['running', 'completed']);

      reads.reset();
      await sleep(RECHECK_MS + 500);
      expect(reads.count(), 'no recheck runs while no stream is open').toBe(0);
    } finally {
      for (const stream of streams) stream.cancel();
    }
  });
});

describe.each(backends())('event streams whose clients leave at once ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { MAX_EVENT_STREAMS: '2', WORKER_CONCURRENCY: '0' });
  });

  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
    expect(server.statuses.filter((status) => status >= 500)).toEqual([]);
  });

  it('gives back the slot of a client that left at once, its stream pipelined behind another (issue 23, item 12)', async () => {
    const held = (await upload(server.url, 'held.csv', makeCsv(10))).body.job_id as string;
    const port = Number(new URL(server.url).port);
    // Clients that send the request twice on one connection and are gone at once (the second
    // answer waits behind the first and never gets the socket), more than there are slots.
    for (const path of ['/api/jobs/events', `/api/job/${held}/events`]) {
      for (let i = 0; i < 6; i++) {
        const client = connect(port, '127.0.0.1');
        client.on('error', () => {});
        await once(client, 'connect');
        const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`;
        client.write(request + request);
        client.resetAndDestroy();
        await sleep(20);
      }
    }
    const streams = [await openWhenFree(`${server.url}/api/jobs/events`), await openWhenFree(`${server.url}/api/job/${held}/events`)];
    for (const stream of streams) stream.cancel();
    expect(streams.map((s) => s.status)).toEqual([200, 200]);
  });
});

describe.each(backends())('exports whose client stops reading ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  // 20 MB of rows: more than the socket buffers on both sides hold.
  const bigCsv = `id,note\n${Array.from({ length: 20_000 }, (_, i) => `${i},${'x'.repeat(1000)}`).join('\n')}\n`;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { EXPORT_IDLE_TIMEOUT_MS: '120000' });
    const { body } = await load('dataset=big', bigCsv);
    expect(await waitForJob(server.url, body.job_id, 120_000)).toMatchObject({ status: 'completed', records_processed: 20_000 });
  }, 180_000);

  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  async function load(query: string, csv: string) {
    const form = new FormData();
    form.append('file', new Blob([csv]), 'big.csv');
    const res = await fetch(`${server.url}/api/upload?${query}`, { method: 'POST', body: form });
    expect(res.status).toBe(202);
    return { body: (await res.json()) as { job_id: string } };
  }

  /** An export read by a raw client that takes the answer's head and then nothing more; with the server's side of its connection. */
  async function stalledExport(): Promise<{ client: Socket; serverClosed: Promise<unknown> }> {
    const serverSockets: Socket[] = [];
    const onConnection = (socket: Socket) => serverSockets.push(socket);
    server.intake.app.server.on('connection', onConnection);
    const client = connect(Number(new URL(server.url).port), '127.0.0.1');
    client.on('error', () => {});
    try {
      await once(client, 'connect');
      client.write('GET /api/datasets/big/export?format=csv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      const [head] = (await once(client, 'data')) as [Buffer];
      expect(head.toString()).toMatch(/^HTTP\/1\.1 200/);
      client.pause();
      const socket = serverSockets.find((s) => s.remotePort === client.localPort)!;
      return { client, serverClosed: socket.destroyed ? Promise.resolve() : new Promise((resolve) => socket.once('close', resolve)) };
    } finally {
      server.intake.app.server.off('connection', onConnection);
    }
  }

  it("a replace of the dataset completes while an export of it is stalled, ending the export's transaction (issue 23, item 18)", async () => {
    const stalled = await stalledExport();
    try {
      // The export's transaction holds the table as long as its client does not read.
      const openExports = async () =>
        (await sandbox.admin!.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'intake-export'`)).rows[0].n;
      if (sandbox.admin) expect(await openExports()).toBe(1);
      const { body } = await load('dataset=big&mode=replace', 'id,note\n1,a\n');
      expect(await waitForJob(server.url, body.job_id, 30_000)).toMatchObject({ status: 'completed', rows_inserted: 1 });
      expect((await getJson(`${server.url}/api/datasets/big`)).body.row_count).toBe(1);
      // Its transaction was ended (its answer is cut at the next write, or by the idle timeout).
      if (sandbox.admin) expect(await openExports()).toBe(0);
      // Other exports run.
      const res = await fetch(`${server.url}/api/datasets/big/export?format=ndjson`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('{"id":1,"note":"a"}\n');
    } finally {
      stalled.client.destroy();
    }
  }, 60_000);

  it('cuts off an export whose client takes nothing for EXPORT_IDLE_TIMEOUT_MS, freeing its slot (issue 23, item 18)', async () => {
    await server.close();
    server = await startServer(sandbox, { EXPORT_IDLE_TIMEOUT_MS: '1500' });
    const { body } = await load('dataset=big&mode=replace', bigCsv);
    expect(await waitForJob(server.url, body.job_id, 120_000)).toMatchObject({ status: 'completed' });
    const stalled = [await stalledExport(), await stalledExport(), await stalledExport(), await stalledExport()];
    try {
      expect((await fetch(`${server.url}/api/datasets/big/export`)).status).toBe(429);
      await Promise.race([
        Promise.all(stalled.map((s) => s.serverClosed)),
        sleep(10_000).then(() => Promise.reject(new Error('stalled exports were kept'))),
      ]);
      await until(
        'an export slot free',
        async () => (await fetch(`${server.url}/api/datasets/big`)).status === 200 && (await exportStatus()) === 200,
        5000,
      );
    } finally {
      for (const s of stalled) s.client.destroy();
    }
  }, 180_000);

  async function exportStatus(): Promise<number> {
    const res = await fetch(`${server.url}/api/datasets/big/export?format=ndjson`);
    await res.arrayBuffer();
    return res.status;
  }
});
