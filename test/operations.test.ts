import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobPayload } from '../src/core/job.js';
import {
  backends,
  createSandbox,
  datasetCount,
  getJson,
  makeCsv,
  stageExists,
  startServer,
  upload,
  waitForJob,
  type Sandbox,
  type TestServer,
} from './helpers.js';

/** Cancel, retry and delete, in every mode (scale-out: the jobs run in a separate worker process). */
describe.each(backends())('operating jobs ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox);
  });

  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  const post = (path: string) => fetch(server.url + path, { method: 'POST' });
  const job = async (jobId: string) => (await getJson<JobPayload>(`${server.url}/api/job/${jobId}`)).body;
  async function errorCount(jobId: string): Promise<number> {
    const { rows } = await server.intake.db.query<{ n: number }>('SELECT count(*)::int AS n FROM ingest_errors WHERE job_id = $1', [jobId]);
    return rows[0]!.n;
  }
  async function waitUntil(jobId: string, check: (job: JobPayload) => boolean, timeoutMs = 60_000): Promise<JobPayload> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const current = await job(jobId);
      if (check(current)) return current;
      if (Date.now() > deadline) throw new Error(`job ${jobId} never got there: ${JSON.stringify(current)}`);
      await sleep(20);
    }
  }

  it('cancels a running 500,000-row job: it stops at a batch boundary and publishes nothing; retry reruns it from a clean slate', async () => {
    const big = await upload(server.url, 'big.csv', makeCsv(500_000));
    const jobId: string = big.body.job_id;
    await waitUntil(jobId, (j) => j.status === 'running' && j.records_processed > 0);

    const canceledAt = Date.now();
    const res = await post(`/api/job/${jobId}/cancel`);
    expect(res.status).toBe(200);
    const canceled = (await res.json()) as JobPayload;
    expect(canceled).toMatchObject({ job_id: jobId, status: 'canceled', error: null });
    expect(canceled.completed_at).not.toBeNull();
    expect(canceled.records_processed).toBeGreaterThan(0);
    expect(canceled.records_processed).toBeLessThan(500_000);
    expect(canceled.bytes_processed).toBeGreaterThan(0);

    // The worker lets go at its next batch: the job behind it starts and completes.
    const next = await upload(server.url, 'next.csv', makeCsv(100));
    const done = await waitForJob(server.url, next.body.job_id, 60_000);
    expect(done).toMatchObject({ status: 'completed', records_processed: 100 });
    console.log(
      `[${backend.name}] canceled at ${canceled.records_processed} records; the next job started ${Date.parse(done.started_at!) - canceledAt} ms after the cancel`,
    );

    // No record was committed after the cancel; none of it reached the dataset, and its stage is
    // gone. Only the bytes may have grown: how far the worker read before it heard the cancel.
    const after = await job(jobId);
    expect(after).toEqual({ ...canceled, bytes_processed: after.bytes_processed, version: after.version });
    expect(after.bytes_processed).toBeGreaterThanOrEqual(canceled.bytes_processed);
    expect(after.bytes_processed).toBeLessThanOrEqual(after.bytes_total!);
    expect(await datasetCount(server.intake.db, 'big', jobId)).toBe(0);
    expect(await stageExists(server.intake.db, jobId)).toBe(false);

    // Cancelling it again, or a finished job, answers 409 and changes nothing.
    for (const id of [jobId, next.body.job_id]) {
      const before = await job(id);
      const again = await post(`/api/job/${id}/cancel`);
      expect(again.status).toBe(409);
      expect(await again.json()).toEqual({
        detail: `The job is already ${before.status}: only a queued or running job can be canceled`,
        code: 'job_finished',
      });
      expect(await job(id)).toEqual(before);
    }

    // Retry: same id and status URL, queued again with its counters reset, then the whole file once.
    const retry = await post(`/api/job/${jobId}/retry`);
    expect(retry.status).toBe(202);
    expect(retry.headers.get('location')).toBe(`/api/job/${jobId}`);
    const queued = (await retry.json()) as JobPayload & { status_url: string };
    expect(queued).toMatchObject({
      job_id: jobId,
      records_processed: 0,
      records_failed: 0,
      bytes_processed: 0,
      error: null,
      started_at: null,
      completed_at: null,
      attempts: 1,
    });
    expect(['queued', 'running']).toContain((await job(jobId)).status);
    const final = await waitForJob(server.url, jobId, 120_000);
    expect(final).toMatchObject({ status: 'completed', records_processed: 500_000, rows_inserted: 500_000, attempts: 2 });
    expect(await datasetCount(server.intake.db, 'big', jobId)).toBe(500_000);
  }, 240_000);

  it('cancels a queued job at once; the worker skips it; retry runs it', async () => {
    const blocker = await upload(server.url, 'blocker.csv', makeCsv(backend.name === 'embedded' ? 50_000 : 200_000));
    const queued = await upload(server.url, 'queued.csv', makeCsv(1_000));
    const res = await post(`/api/job/${queued.body.job_id}/cancel`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'canceled', records_processed: 0, started_at: null });
    await waitForJob(server.url, blocker.body.job_id, 60_000);
    await sleep(300); // the worker has had its chance to pick the canceled job
    expect(await job(queued.body.job_id)).toMatchObject({ status: 'canceled', records_processed: 0, started_at: null, attempts: 0 });

    expect((await post(`/api/job/${queued.body.job_id}/retry`)).status).toBe(202);
    expect(await waitForJob(server.url, queued.body.job_id)).toMatchObject({ status: 'completed', records_processed: 1_000, attempts: 1 });
  }, 120_000);

  it('retries a failed job, with more room for bad rows, to completed', async () => {
    const bad = await upload(server.url, 'bad.csv', 'id,name\n1,a\n2\n3,c\n');
    const failed = await waitForJob(server.url, bad.body.job_id);
    expect(failed).toMatchObject({ status: 'failed', records_processed: 1, records_failed: 1 });

    // The same file again fails the same way, from a clean slate (no duplicate row errors), publishing nothing.
    expect((await post(`/api/job/${failed.job_id}/retry`)).status).toBe(202);
    expect(await waitForJob(server.url, failed.job_id)).toMatchObject({
      status: 'failed',
      records_processed: 1,
      records_failed: 1,
      error: failed.error,
    });
    expect(await datasetCount(server.intake.db, 'bad', failed.job_id)).toBe(0);
    expect(await errorCount(failed.job_id)).toBe(1);

    const retry = await post(`/api/job/${failed.job_id}/retry?max_errors=5`);
    expect(retry.status).toBe(202);
    expect(await retry.json()).toMatchObject({ max_errors: 5, error: null });
    expect(await waitForJob(server.url, failed.job_id)).toMatchObject({
      status: 'completed',
      records_processed: 2,
      records_failed: 1,
      error: null,
      attempts: 3,
    });
    expect(await datasetCount(server.intake.db, 'bad', failed.job_id)).toBe(2);

    // Only a failed or canceled job can be retried.
    const again = await post(`/api/job/${failed.job_id}/retry`);
    expect(again.status).toBe(409);
    expect(await again.json()).toEqual({
      detail: 'The job is completed: only a failed or canceled job can be retried',
      code: 'job_not_retryable',
    });
    expect((await post(`/api/job/${failed.job_id}/retry?max_errors=-1`)).status).toBe(422);
  });

  it('deletes a job with every trace: row, row errors, stored upload, cache key', async () => {
    const res = await upload(server.url, 'gone.csv', 'id,name\n1,a\n2\n3,c\n', 'file');
    const jobId: string = res.body.job_id;
    const uploadFile = join(server.config.uploadDir, jobId);
    const done = await waitForJob(server.url, jobId);
    expect(done.status).toBe('failed');
    expect(existsSync(uploadFile)).toBe(true);
    expect((await getJson(`${server.url}/api/job/${jobId}`)).status).toBe(200); // cached in scale-out mode

    const del = await fetch(`${server.url}/api/job/${jobId}`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect(await del.text()).toBe('');
    for (const path of ['', '/records', '/errors', '/events'])
      expect((await fetch(`${server.url}/api/job/${jobId}${path}`)).status).toBe(404);
    expect(await errorCount(jobId)).toBe(0);
    expect(existsSync(uploadFile)).toBe(false);
    if (backend.name === 'scale-out') {
      const redis = new Redis(process.env.REDIS_URL!);
      try {
        // A tombstone (no payload) until it expires, so a late write cannot bring it back.
        expect(await redis.get(`${sandbox.env.REDIS_KEY_PREFIX}ingest_job:${jobId}`)).not.toContain(jobId);
      } finally {
        redis.disconnect();
      }
    }
    expect((await fetch(`${server.url}/api/job/${jobId}`, { method: 'DELETE' })).status).toBe(404);
    expect((await fetch(`${server.url}/api/job/not-a-uuid`, { method: 'DELETE' })).status).toBe(404);
  });

  it('deletes a running job: canceled first, its worker lets go, nothing of it is left', async () => {
    const res = await upload(server.url, 'running.csv', makeCsv(300_000));
    const jobId: string = res.body.job_id;
    await waitUntil(jobId, (j) => j.status === 'running' && j.records_processed > 0);
    expect((await fetch(`${server.url}/api/job/${jobId}`, { method: 'DELETE' })).status).toBe(204);
    const next = await upload(server.url, 'after.csv', makeCsv(10));
    expect(await waitForJob(server.url, next.body.job_id, 60_000)).toMatchObject({ status: 'completed', records_processed: 10 });
    expect((await fetch(`${server.url}/api/job/${jobId}`)).status).toBe(404);
    expect(await datasetCount(server.intake.db, 'running', jobId)).toBe(0);
    expect(await stageExists(server.intake.db, jobId)).toBe(false);
    expect(existsSync(join(server.config.uploadDir, jobId))).toBe(false);
  }, 120_000);

  it('never answered 5xx', () => {
    expect(server.statuses.filter((status) => status >= 500)).toEqual([]);
  });
});

describe.each(backends())('retention ($name)', (backend) => {
  it('deletes finished jobs older than JOB_RETENTION_DAYS in the background, and nothing else: their published rows stay', async () => {
    const sandbox = await createSandbox(backend);
    const server = await startServer(sandbox, { JOB_RETENTION_DAYS: '1', RETENTION_INTERVAL_MS: '200' });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push((await upload(server.url, `r${i}.csv`, makeCsv(10))).body.job_id);
      for (const id of ids) await waitForJob(server.url, id);
      const [old, old2, recent] = ids as [string, string, string];
      // Two finished two days ago; an unfinished job submitted long ago is never a candidate.
      await server.intake.db.query(`UPDATE ingest_jobs SET completed_at = NOW() - INTERVAL '2 days' WHERE job_id = ANY($1::uuid[])`, [
        [old, old2],
      ]);
      // The rows go in one transaction; the stored uploads are removed just after it commits.
      const gone = async (id: string) =>
        (await fetch(`${server.url}/api/job/${id}`)).status === 404 && !existsSync(join(server.config.uploadDir, id));
      const deadline = Date.now() + 10_000;
      while (!((await gone(old)) && (await gone(old2))) && Date.now() < deadline) await sleep(100);
      for (const id of [old, old2]) {
        expect((await fetch(`${server.url}/api/job/${id}`)).status).toBe(404);
        expect(existsSync(join(server.config.uploadDir, id))).toBe(false);
      }
      expect((await getJson(`${server.url}/api/job/${recent}`)).body.status).toBe('completed');
      expect(existsSync(join(server.config.uploadDir, recent))).toBe(true);
      // Housekeeping never deletes user data: the rows the jobs published are the dataset's.
      expect(await datasetCount(server.intake.db, 'r0', old)).toBe(10);
      expect(await datasetCount(server.intake.db, 'r1', old2)).toBe(10);
    } finally {
      await server.close();
      await sandbox.dispose();
    }
  });
});

describe.each(backends())('idempotent submits ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox);
  });

  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
    expect(server.statuses.filter((status) => status >= 500)).toEqual([]);
  });

  function send(key: string, name: string, content: string, maxErrors?: number) {
    const form = new FormData();
    if (maxErrors !== undefined) form.append('max_errors', String(maxErrors));
    form.append('file', new Blob([content]), name);
    return fetch(`${server.url}/api/upload`, { method: 'POST', body: form, headers: { 'idempotency-key': key } });
  }
  const jobCount = async () => (await server.intake.db.query<{ n: number }>('SELECT count(*)::int AS n FROM ingest_jobs')).rows[0]!.n;

  it('50 concurrent uploads with one key create one job; the others answer it with 200', async () => {
    const before = await jobCount();
    const csv = makeCsv(2_000);
    const answers = await Promise.all(Array.from({ length: 50 }, () => send('upload-key-1', 'same.csv', csv)));
    const bodies = await Promise.all(answers.map((res) => res.json() as Promise<JobPayload & { status_url: string }>));
    const statuses = answers.map((res) => res.status).sort();
    expect(statuses).toEqual([...Array(49).fill(200), 202]);
    const ids = new Set(bodies.map((body) => body.job_id));
    expect(ids.size).toBe(1);
    const [jobId] = [...ids] as [string];
    expect(answers.filter((res) => res.headers.get('idempotent-replayed') === 'true').length).toBe(49);
    for (const res of answers) expect(res.headers.get('location')).toBe(`/api/job/${jobId}`);
    expect(await jobCount()).toBe(before + 1);
    expect(await waitForJob(server.url, jobId)).toMatchObject({ status: 'completed', records_processed: 2_000 });
    // Only the one job's upload is kept: the 49 copies were removed.
    expect(readdirSync(server.config.uploadDir).filter((file) => !file.startsWith(jobId))).toEqual([]);

    // Later, the same request again: the job as it is now.
    const later = await send('upload-key-1', 'same.csv', csv);
    expect(later.status).toBe(200);
    expect(await later.json()).toMatchObject({ job_id: jobId, status: 'completed' });
  });

  it('answers 422 to the same key with a different payload, and creates nothing', async () => {
    const first = await send('upload-key-2', 'a.csv', makeCsv(5));
    expect(first.status).toBe(202);
    const before = await jobCount();
    for (const res of [
      await send('upload-key-2', 'a.csv', makeCsv(6)),
      await send('upload-key-2', 'b.csv', makeCsv(5)),
      await send('upload-key-2', 'a.csv', makeCsv(5), 3),
    ]) {
      expect(res.status).toBe(422);
      expect(await res.json()).toEqual({
        detail: 'This Idempotency-Key was used in the last 24 hours for a different request: use a new key for new data',
        code: 'idempotency_key_reused',
      });
    }
    expect(await jobCount()).toBe(before);

    // Posted records: the same body again is the same job; other records are refused.
    const post = (body: string) =>
      fetch(`${server.url}/api/ingest/json`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json', 'idempotency-key': 'json-key-1' },
      });
    const created = await post('[{"sku":"A-1"}]');
    expect(created.status).toBe(202);
    const again = await post('[{"sku":"A-1"}]');
    expect(again.status).toBe(200);
    expect((await again.json()).job_id).toBe((await created.json()).job_id);
    expect((await post('[{"sku":"B-2"}]')).status).toBe(422);

    const tooLong = await send('x'.repeat(256), 'a.csv', makeCsv(5));
    expect(tooLong.status).toBe(422);
    expect((await tooLong.json()).detail[0].loc).toEqual(['header', 'idempotency-key']);
  });

  it('forgets a key after 24 hours', async () => {
    const first = await send('upload-key-3', 'a.csv', makeCsv(5));
    const { job_id: firstId } = await first.json();
    await server.intake.db.query(`UPDATE ingest_idempotency_keys SET created_at = NOW() - INTERVAL '25 hours' WHERE key = $1`, [
      'upload-key-3',
    ]);
    const second = await send('upload-key-3', 'other.csv', makeCsv(7));
    expect(second.status).toBe(202);
    expect((await second.json()).job_id).not.toBe(firstId);
  });
});

/**
 * What a failed job says, and when things happened: a trigger the test puts on a dataset's
 * table fires inside the job's publish (the completing transaction), where it can raise an
 * error of a chosen SQLSTATE or note the time.
 */
describe.each(backends())('why and when a job ended ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { MAX_JOB_ATTEMPTS: '2' });
  });

  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  const submit = async (dataset: string, body: string, query = '') => {
    const res = await fetch(`${server.url}/api/ingest/json?dataset=${dataset}${query}`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(202);
    return ((await res.json()) as JobPayload).job_id;
  };
  /** A dataset with one row, and a trigger on its table running `body` (PL/pgSQL) at each insert. */
  async function datasetWithTrigger(dataset: string, body: string): Promise<void> {
    expect(await waitForJob(server.url, await submit(dataset, '[{"id": 0}]'))).toMatchObject({ status: 'completed' });
    await server.intake.db.exec(`
      CREATE FUNCTION public.${dataset}_trigger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ${body} RETURN NULL; END $$;
      CREATE TRIGGER on_insert AFTER INSERT ON datasets.${dataset} FOR EACH STATEMENT EXECUTE FUNCTION public.${dataset}_trigger();`);
  }

  it('fails a job at once with a duplicate key of its dataset as its error (issue 23, items 2 and 20)', async () => {
    expect(await waitForJob(server.url, await submit('keyed', '[{"id": 1, "v": "a"}]', '&mode=merge&key=id'))).toMatchObject({
      status: 'completed',
    });
    const job = await waitForJob(server.url, await submit('keyed', '[{"id": 2, "v": "b"}, {"id": 1, "v": "c"}]'), 60_000);
    expect(job).toMatchObject({ status: 'failed', attempts: 1, records_processed: 2 });
    expect(job.error).toMatch(
      /^the rows could not be loaded into dataset "keyed": duplicate key value violates unique constraint .*\(id\)=\(1\) already exists/,
    );
    expect(await datasetCount(server.intake.db, 'keyed')).toBe(1);
  }, 90_000);

  it('fails a job at once on any permanent database error, with its message (issue 23, item 2)', async () => {
    await datasetWithTrigger('checked', `RAISE EXCEPTION 'a check of this dataset refused the rows' USING ERRCODE = '23514';`);
    const job = await waitForJob(server.url, await submit('checked', '[{"id": 1}]'), 60_000);
    expect(job).toMatchObject({ status: 'failed', attempts: 1 });
    expect(job.error).toMatch(/a check of this dataset refused the rows/);
  }, 90_000);

  it('retries a transient error without counting it as a crash, then fails with its message (issue 23, item 2)', async () => {
    await datasetWithTrigger('flaky', `RAISE EXCEPTION 'could not serialize access (test)' USING ERRCODE = '40001';`);
    const job = await waitForJob(server.url, await submit('flaky', '[{"id": 1}]'), 60_000);
    // MAX_JOB_ATTEMPTS=2 counts crashes only: three runs that each met the error are not crashes.
    expect(job).toMatchObject({ status: 'failed', attempts: 1 });
    expect(job.error).toMatch(/^ingestion failed after 3 attempts: .*could not serialize access \(test\)/);
  }, 90_000);

  it('shows how far a failed job read, even when it failed before its first batch (issue 23, item 10)', async () => {
    // UTF-8 text (é), then a byte that is not UTF-8: the decoder meets it at the end of the file's first chunk, no record was read.
    const csv = Buffer.from(makeCsv(1_000).replace('\n', 'é\n'));
    const notUtf8 = await upload(server.url, 'latin.csv', Buffer.concat([csv, Buffer.from([0xff, 0x0a])]));
    const failed = await waitForJob(server.url, notUtf8.body.job_id);
    expect(failed).toMatchObject({ status: 'failed', records_processed: 0, bytes_total: csv.length + 2, bytes_processed: csv.length + 2 });
    expect(failed.error).toMatch(/not valid UTF-8/);

    // The key's check fails on the first record, after the file's first chunk was read.
    const form = new FormData();
    form.append('file', new Blob([csv]), 'keyless.csv');
    const res = await fetch(`${server.url}/api/upload?mode=merge&key=sku`, { method: 'POST', body: form });
    const keyless = await waitForJob(server.url, ((await res.json()) as JobPayload).job_id);
    expect(keyless).toMatchObject({ status: 'failed', bytes_total: csv.length, bytes_processed: csv.length });
    expect(keyless.error).toMatch(/the key column "sku" is not in the file's header/);
  });

  it('sets completed_at when the publish has done its work, not when its transaction began (issue 23, item 4)', async () => {
    await server.intake.db.exec('CREATE TABLE public.publish_seen (at timestamptz NOT NULL)');
    await datasetWithTrigger('timed', 'PERFORM pg_sleep(0.05); INSERT INTO public.publish_seen VALUES (clock_timestamp());');
    const jobId = await submit('timed', '[{"id": 1}, {"id": 2}]');
    expect(await waitForJob(server.url, jobId)).toMatchObject({ status: 'completed', rows_inserted: 2 });
    const { rows } = await server.intake.db.query<{ after: boolean; started: boolean; dataset: boolean }>(
      `SELECT completed_at >= (SELECT max(at) FROM public.publish_seen) AS after, started_at < completed_at AS started,
         (SELECT updated_at FROM intake_datasets WHERE name = 'timed') >= (SELECT max(at) FROM public.publish_seen) AS dataset
       FROM ingest_jobs WHERE job_id = $1`,
      [jobId],
    );
    expect(rows[0]).toEqual({ after: true, started: true, dataset: true });
  }, 90_000);

  it('never answered 5xx', () => {
    expect(server.statuses.filter((status) => status >= 500)).toEqual([]);
  });
});

/**
 * A worker frozen in the middle of a batch holds its job's row lock until PostgreSQL drops it;
 * here a test connection holds the lock the same way (SELECT … FOR UPDATE in an open transaction).
 */
describe.each(backends().filter((backend) => backend.name !== 'embedded'))('writes meeting a locked row ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { IMPORT_ALLOW_PRIVATE: 'true' });
  });

  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  /** Runs `during` while a connection of the test holds `lock` (a statement) in an open transaction. */
  async function whileLocked(lock: string, params: unknown[], during: () => Promise<void>): Promise<void> {
    const holder = await sandbox.admin!.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(lock, params);
      await during();
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
  }
  const send = (method: string, path: string) => fetch(server.url + path, { method, signal: AbortSignal.timeout(20_000) });
  async function expectLocked(res: Response): Promise<void> {
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    expect(await res.json()).toEqual({
      detail: 'What this request changes is locked by a job at work (a batch or a publish); try again shortly',
      code: 'locked',
    });
  }

  it('cancel, retry and delete answer 503 with Retry-After while the job row is locked, then work (issue 23, item 13)', async () => {
    const failed = await waitForJob(server.url, (await upload(server.url, 'bad.csv', 'id,name\n1,a\n2\n')).body.job_id);
    expect(failed.status).toBe('failed');
    // Large enough to be still queued or running when the lock is taken, a moment after its 202.
    const queued = await upload(server.url, 'later.csv', makeCsv(50_000));
    await whileLocked(
      'SELECT 1 FROM ingest_jobs WHERE job_id = ANY($1::uuid[]) FOR UPDATE',
      [[failed.job_id, queued.body.job_id]],
      async () => {
        await expectLocked(await send('POST', `/api/job/${failed.job_id}/retry`));
        await expectLocked(await send('POST', `/api/job/${queued.body.job_id}/cancel`));
        await expectLocked(await send('DELETE', `/api/job/${failed.job_id}`));
        expect((await getJson(`${server.url}/api/job/${failed.job_id}`)).body).toMatchObject({ status: 'failed', version: failed.version });
      },
    );
    expect((await send('POST', `/api/job/${failed.job_id}/retry`)).status).toBe(202);
    expect([200, 409]).toContain((await send('POST', `/api/job/${queued.body.job_id}/cancel`)).status); // 409: it finished first
    await waitForJob(server.url, queued.body.job_id);
    expect((await send('DELETE', `/api/job/${queued.body.job_id}`)).status).toBe(204);
  });

  it('a dataset delete answers 503 while a transaction holds its table (issue 23, item 13)', async () => {
    expect(await waitForJob(server.url, (await upload(server.url, 'held.csv', makeCsv(10))).body.job_id)).toMatchObject({
      status: 'completed',
    });
    await whileLocked('LOCK TABLE datasets.held IN ACCESS SHARE MODE', [], async () => {
      await expectLocked(await send('DELETE', '/api/datasets/held'));
    });
    expect((await send('DELETE', '/api/datasets/held')).status).toBe(204);
  });

  it("a schedule's resume and delete answer 503 while a beat holds its row (issue 23, item 13)", async () => {
    const made = await fetch(`${server.url}/api/schedules`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ import: { url: 'http://127.0.0.1:9/never.csv', dataset: 'never' }, every: '1h', paused: true }),
    });
    expect(made.status).toBe(201);
    const id = ((await made.json()) as { schedule_id: string }).schedule_id;
    await whileLocked('SELECT 1 FROM intake_schedules WHERE schedule_id = $1 FOR UPDATE', [id], async () => {
      await expectLocked(await send('POST', `/api/schedules/${id}/resume`));
      await expectLocked(await send('DELETE', `/api/schedules/${id}`));
    });
    expect((await send('DELETE', `/api/schedules/${id}`)).status).toBe(204);
  });
});
