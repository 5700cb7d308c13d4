/**
 * Uploads kept in object storage (UPLOAD_STORE=s3://bucket/prefix) on a real S3-compatible
 * server (s3rver) on loopback: in scale-out mode the API and the worker process have
 * different data directories, so the bucket is all they share besides PostgreSQL and Redis.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobPayload } from '../src/core/job.js';
import { zipOf } from './files.js';
import { backends, createSandbox, getJson, recordsOf, startServer, upload, waitForJob, type Sandbox, type TestServer } from './helpers.js';
import { startWorkerProcess } from './process.js';
import { startS3, type S3Server } from './s3-server.js';

const PREFIX = 'uploads/';

describe.each(backends())('uploads in object storage ($name)', (backend) => {
  let s3: S3Server;
  let sandbox: Sandbox;
  let server: TestServer;
  let worker: Awaited<ReturnType<typeof startWorkerProcess>> | undefined;
  let workerDir: string | undefined;

  beforeAll(async () => {
    s3 = await startS3();
    sandbox = await createSandbox(backend);
    const env = { ...s3.env, UPLOAD_STORE: `s3://intake-test/${PREFIX}` };
    if (backend.name === 'scale-out') {
      // The worker has a data directory of its own: nothing on disk is shared with the API.
      workerDir = mkdtempSync(join(tmpdir(), 'intake-worker-'));
      worker = await startWorkerProcess({ ...sandbox.env, ...env, DATA_DIR: workerDir });
    }
    server = await startServer(sandbox, { ...env, ...(backend.name === 'scale-out' && { WORKER_CONCURRENCY: '0' }) });
  }, 60_000);
  afterAll(async () => {
    await server?.close();
    if (worker) expect(await worker.stop()).toBe(0);
    if (workerDir) rmSync(workerDir, { recursive: true, force: true });
    await sandbox?.dispose();
    await s3?.stop();
  });

  const jobs = async () => (await getJson(`${server.url}/api/jobs?limit=100`)).body.results.length;

  it('stores an upload as an object (multipart past 5 MiB), the worker reads it from there, and no disk holds it', async () => {
    const rows = 400_000;
    let csv = 'id,name\n';
    for (let i = 0; i < rows; i++) csv += `${i},name ${i}\n`;
    expect(csv.length).toBeGreaterThan(6 * 1024 ** 2);
    const res = await upload(server.url, 'big.csv', csv);
    expect(res.status).toBe(202);
    const jobId: string = res.body.job_id;
    expect(await s3.exists(`${PREFIX}${jobId}`)).toBe(true);
    const job = await waitForJob(server.url, jobId, 120_000);
    expect(job).toMatchObject({ status: 'completed', records_processed: rows, bytes_processed: csv.length, bytes_total: csv.length });
    expect(await s3.text(`${PREFIX}${jobId}`)).toHaveLength(csv.length);
    expect(existsSync(join(server.config.uploadDir, jobId))).toBe(false);
    if (workerDir) expect(readdirSync(workerDir, { recursive: true }).filter((name) => String(name).includes(jobId))).toEqual([]);
  });

  it('reads a zip from the bucket (kept on local disk only while the job reads it); retry re-reads the object; delete removes it', async () => {
    const zipped = await upload(server.url, 'orders.csv.zip', zipOf({ 'orders.csv': 'id,sku\n1,A\n2,B\n' }));
    expect(zipped.status).toBe(202);
    const size = zipOf({ 'orders.csv': 'id,sku\n1,A\n2,B\n' }).length;
    // Read from a local copy of the object: its bytes counted once, not for the copy and again for the read.
    expect(await waitForJob(server.url, zipped.body.job_id)).toMatchObject({
      status: 'completed',
      records_processed: 2,
      bytes_total: size,
      bytes_processed: size,
    });
    expect(readdirSync(server.config.uploadDir).filter((name) => name.startsWith('spool-'))).toEqual([]);

    const bad = await upload(server.url, 'short.csv', 'a,b\n1,2\n3\n4,5\n');
    const jobId: string = bad.body.job_id;
    expect(await waitForJob(server.url, jobId)).toMatchObject({ status: 'failed' });
    const retried = await fetch(`${server.url}/api/job/${jobId}/retry?max_errors=1`, { method: 'POST' });
    expect(retried.status).toBe(202);
    expect(await waitForJob(server.url, jobId)).toMatchObject({ status: 'completed', records_processed: 2, records_failed: 1 });
    expect((await recordsOf(server.url, jobId)).map((r) => r.data)).toEqual([
      { a: 1, b: 2 },
      { a: 4, b: 5 },
    ]);

    expect((await fetch(`${server.url}/api/job/${jobId}`, { method: 'DELETE' })).status).toBe(204);
    expect(await s3.exists(`${PREFIX}${jobId}`)).toBe(false);
    expect(await s3.exists(`${PREFIX}${zipped.body.job_id}`)).toBe(true);
  });

  it('an upload cut short leaves no object and no job', async () => {
    const before = await jobs();
    const keys = await s3.keys(PREFIX);
    const boundary = 'cut-short';
    const head = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.csv"\r\nContent-Type: text/csv\r\n\r\n`;
    await new Promise<void>((resolve) => {
      const req = request(`${server.url}/api/upload`, {
        method: 'POST',
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(20 * 1024 ** 2) },
      });
      req.on('error', () => resolve());
      req.write(head + 'a,b\n' + '1,2\n'.repeat(500_000));
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 300);
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(await jobs()).toBe(before);
    expect(await s3.keys(PREFIX)).toEqual(keys);
  });

  it('the object store stopping mid-upload answers 503 and keeps nothing; it works again once the store is back', async () => {
    const before = await jobs();
    const keys = await s3.keys(PREFIX);
    const boundary = 'store-stops';
    const body = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.csv"\r\n\r\na,b\n${'1,2\n'.repeat(3 * 1024 ** 2)}\r\n--${boundary}--\r\n`;
    const answer = new Promise<{ status: number; body: any }>((resolve, reject) => {
      const req = request(
        `${server.url}/api/upload`,
        {
          method: 'POST',
          headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(Buffer.byteLength(body)) },
        },
        (res) => {
          let text = '';
          res.on('data', (chunk) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
        },
      );
      req.on('error', reject);
      // The first part (5 MiB) goes at once; the store is killed; then the rest follows.
      req.write(body.slice(0, 6 * 1024 ** 2));
      setTimeout(() => void s3.kill().then(() => req.end(body.slice(6 * 1024 ** 2))), 500);
    });
    const res = await answer;
    expect(res.status, JSON.stringify(res.body)).toBe(503);
    expect(res.body.code).toBe('upload_store_unavailable');
    expect(await jobs()).toBe(before);
    await s3.restart();
    expect(await s3.keys(PREFIX)).toEqual(keys);
    const again = await upload(server.url, 'again.csv', 'a\n1\n');
    expect(again.status).toBe(202);
    expect(await waitForJob(server.url, again.body.job_id)).toMatchObject({ status: 'completed' } satisfies Partial<JobPayload>);
  });

  it('never answered 5xx but the 503 of a store that stopped', () => {
    expect(server.statuses.filter((s) => s >= 500 && s !== 503)).toEqual([]);
  });
});
