/**
 * Imports by reference (POST /api/import): the worker streams an http(s) URL from a local
 * server (redirects, a slow server, 404, a flaky one) or an object from a real S3-compatible
 * server; without IMPORT_ALLOW_PRIVATE, loopback, private and metadata addresses are refused,
 * also when a redirect leads to one.
 */
import { readdirSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AddressRefused, isPublicAddress, openUrl } from '../src/net/fetch.js';
import type { JobPayload } from '../src/core/job.js';
import { backends, createSandbox, postJson, recordsOf, startServer, waitForJob, type Sandbox, type TestServer } from './helpers.js';
import { zipOf } from './files.js';
import { startS3, type S3Server } from './s3-server.js';

const ORDERS = 'id,sku\n1,A-1\n2,B-2\n';

/** The files the imports read, and servers that misbehave in the ways imports must survive. */
// /pause holds its body this long between its first row and its last: longer than a scale-out
// test worker's WORKER_LOCK_MS (2000), after which a job whose heartbeat is not beaten looks dead.
const PAUSE_MS = 6000;
let pauses = 0;

async function startFiles(): Promise<{ server: Server; url: string; port: number }> {
  let flaky = 0;
  const server = createServer((req, res) => {
    const path = req.url!.split('?')[0];
    switch (path) {
      case '/orders.csv':
        return res.end(ORDERS);
      case '/export':
        return res.end('[{"a":1},{"a":2},{"a":3}]');
      case '/orders.csv.gz':
        return res.end(gzipSync(ORDERS));
      case '/orders.zip':
        return res.end(zipOf({ 'orders.csv': ORDERS }));
      case '/moved':
        res.writeHead(302, { location: '/orders.csv' });
        return res.end();
      case '/loop':
        res.writeHead(302, { location: '/loop' });
        return res.end();
      case '/elsewhere':
        res.writeHead(301, { location: `http://127.0.0.2:${req.socket.localPort}/orders.csv` });
        return res.end();
      case '/flaky':
        if (++flaky % 3 !== 0) {
          res.writeHead(503);
          return res.end('busy');
        }
        return res.end(ORDERS);
      case '/slow':
        res.writeHead(200, { 'content-type': 'text/csv' });
        return res.write('id\n1\n'); // and nothing more, ever
      case '/hang':
        return; // no answer, ever
      case '/pause':
        pauses++;
        res.writeHead(200, { 'content-type': 'text/csv' });
        res.write('id\n1\n');
        setTimeout(() => res.end('2\n'), PAUSE_MS);
        return;
      case '/big':
        res.writeHead(200, { 'content-length': String(5_000_000) });
        return res.end('id\n');
      default:
        res.writeHead(404);
        return res.end('not here');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { server, url: `http://127.0.0.1:${port}`, port };
}

const importJob = (server: TestServer, body: Record<string, unknown>) => postJson(`${server.url}/api/import`, body);

let files: Awaited<ReturnType<typeof startFiles>>;
let s3: S3Server;
beforeAll(async () => {
  files = await startFiles();
  s3 = await startS3();
  await s3.put('exports/orders.csv', ORDERS);
  await s3.put('exports/orders.zip', zipOf({ 'orders.csv': ORDERS }));
}, 60_000);
afterAll(async () => {
  files?.server.closeAllConnections();
  files?.server.close();
  await s3?.stop();
});

describe('addresses an import may reach by default', () => {
  it('refuses loopback, private, link-local, metadata and mapped addresses, and allows public ones', () => {
    for (const address of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '::1',
      '::',
      'fe80::1',
      'fd00:ec2::254',
      '::ffff:127.0.0.1',
      '::ffff:8.8.8.8',
      '224.0.0.1',
    ]) {
      expect(isPublicAddress(address), address).toBe(false);
    }
    for (const address of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111']) expect(isPublicAddress(address), address).toBe(true);
  });

  it('refuses an IPv4 address carried in IPv6, in every spelling', () => {
    const carried = [
      // IPv4-compatible (::a.b.c.d)
      ...['::7f00:1', '::127.0.0.1', '::a00:1', '::10.0.0.1', '::c0a8:101', '::a9fe:a9fe', '0:0:0:0:0:0:7f00:1', '::8.8.8.8'],
      // IPv4-mapped, IPv4-translated
      ...[
        '::ffff:7f00:1',
        '::FFFF:127.0.0.1',
        '0:0:0:0:0:ffff:7f00:1',
        '0000:0000:0000:0000:0000:ffff:7f00:0001',
        '::ffff:a9fe:a9fe',
        '::ffff:0:127.0.0.1',
        '::ffff:0:7f00:1',
      ],
      // NAT64 (well-known and local-use prefixes)
      ...['64:ff9b::7f00:1', '64:ff9b::10.0.0.1', '64:FF9B:0:0:0:0:a9fe:a9fe', '64:ff9b:1::a00:1'],
      // 6to4 with a private IPv4 inside
      ...['2002:7f00:1::', '2002:7f00:0001::1', '2002:a00:1::1', '2002:c0a8:101::1', '2002:a9fe:a9fe::'],
      // Teredo: a private server, or a private client (inverted in the last 32 bits)
      ...['2001:0:a00:1::', '2001:0:4136:e378:8000:63bf:80ff:fffe', '2001:0:808:808:0:0:3f57:fefe'],
      // scoped and deprecated spellings
      ...['fe80::1%eth0', 'fec0::1', '::'],
    ];
    for (const address of carried) expect(isPublicAddress(address), address).toBe(false);
    for (const address of ['2002:808:808::1', '2001:0:808:808::f7f7:f7f7', '2001:4860:4860::8888'])
      expect(isPublicAddress(address), address).toBe(true);
  });

  it('checks the address of every hop: a redirect to a refused address is refused', async () => {
    const only = { allowed: (address: string) => address === '127.0.0.1', timeoutMs: 2000, maxBytes: 1e6, backoffMs: 10 };
    let text = '';
    for await (const chunk of await openUrl(new URL(`${files.url}/moved`), only)) text += chunk.toString();
    expect(text).toBe(ORDERS);
    await expect(openUrl(new URL(`${files.url}/elsewhere`), only)).rejects.toThrow(AddressRefused);
    await expect(openUrl(new URL(`${files.url}/elsewhere`), only)).rejects.toThrow(
      /127\.0\.0\.2, a loopback, private, link-local or metadata address: imports may not reach it/,
    );
  });
});

describe('imports refused without IMPORT_ALLOW_PRIVATE', () => {
  let sandbox: Sandbox;
  let server: TestServer;
  beforeAll(async () => {
    sandbox = await createSandbox({ name: 'embedded' });
    server = await startServer(sandbox);
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  it('answers 422 import_refused for loopback, metadata and names that resolve to them, and creates no job', async () => {
    for (const url of [
      `${files.url}/orders.csv`,
      `${files.url}/%zz.csv`,
      'http://169.254.169.254/latest/meta-data/',
      'http://[::1]:8000/x.csv',
      'http://[::ffff:7f00:1]/x',
      'http://[::7f00:1]/x',
      'http://[::127.0.0.1]/x',
      'http://[64:ff9b::7f00:1]/x',
      'http://[2002:7f00:1::]/x',
      `http://localhost:${files.port}/orders.csv`,
    ]) {
      const res = await importJob(server, { url });
      expect(res.status, url).toBe(422);
      expect(res.body.code, url).toBe('import_refused');
      expect(res.body.detail).toMatch(
        /a loopback, private, link-local or metadata address: imports may not reach it \(IMPORT_ALLOW_PRIVATE=true allows it\)$/,
      );
    }
    const bad = await importJob(server, { url: 'ftp://example.com/x.csv' });
    expect(bad.status).toBe(422);
    expect(bad.body.detail[0]).toMatchObject({ loc: ['body', 'url'], msg: 'ftp:// URLs cannot be imported: use http, https or s3' });
    expect((await importJob(server, { url: 'https://user:secret@example.com/x.csv' })).body.detail[0].msg).toMatch(
      /may not hold credentials/,
    );
    expect((await importJob(server, { url: 'not a url' })).status).toBe(422);
    expect((await importJob(server, { url: `${files.url}/x`, mode: 'sideways' })).status).toBe(422);
    const listing = await (await fetch(`${server.url}/api/jobs`)).json();
    expect(listing.results).toEqual([]);
  });
});

describe.each(backends())('canceling an import in flight ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    // A source that hangs would hold the only worker for 10 minutes: only a cancel can end it sooner.
    server = await startServer(sandbox, { ...s3.env, IMPORT_ALLOW_PRIVATE: 'true', IMPORT_TIMEOUT_MS: '600000', WORKER_CONCURRENCY: '1' });
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  it.each(['/hang', '/slow'])('a cancel aborts the request to %s at once and frees the worker (issue 23, item 14)', async (path) => {
    const arrived = new Promise<IncomingMessage>((resolve) => files.server.once('request', resolve));
    const res = await importJob(server, { url: `${files.url}${path}`, format: 'csv', dataset: 'hung' });
    expect(res.status).toBe(202);
    const request = await arrived;
    const closed = new Promise<void>((resolve) => request.socket.once('close', () => resolve()));
    const canceled = await fetch(`${server.url}/api/job/${res.body.job_id}/cancel`, { method: 'POST' });
    expect(canceled.status).toBe(200);
    // The worker closes its connection (this test's timeout is far below IMPORT_TIMEOUT_MS)...
    await closed;
    // ...and takes the next job.
    const next = await importJob(server, { url: `${files.url}/orders.csv`, dataset: 'after_hung' });
    expect(await waitForJob(server.url, next.body.job_id)).toMatchObject({ status: 'completed', records_processed: 2 });
    expect(await waitForJob(server.url, res.body.job_id)).toMatchObject({ status: 'canceled', records_processed: 0 });
    if (path === '/slow') {
      // A canceled job shows how far it read ('id\n1\n'), though no batch of it was committed (issue 23, item 10).
      await expect.poll(async () => (await waitForJob(server.url, res.body.job_id)).bytes_processed, { timeout: 10_000 }).toBe(5);
    }
  });

  const statusOf = async (jobId: string) => ((await (await fetch(`${server.url}/api/job/${jobId}`)).json()) as JobPayload).status;

  it('a cancel aborts the read of an S3 object from a server that hangs, and frees the worker (issue 23, item 14)', async () => {
    s3.freeze();
    try {
      const res = await importJob(server, { url: 's3://intake-test/exports/orders.csv', dataset: 's3_hung' });
      expect(res.status).toBe(202);
      // Claimed: from here its run reads the object, which the frozen server never answers.
      const deadline = Date.now() + 20_000;
      while ((await statusOf(res.body.job_id)) !== 'running') {
        if (Date.now() > deadline) throw new Error('the job was never claimed');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect((await fetch(`${server.url}/api/job/${res.body.job_id}/cancel`, { method: 'POST' })).status).toBe(200);
      const next = await importJob(server, { url: `${files.url}/orders.csv`, dataset: 'after_s3_hung' });
      expect(await waitForJob(server.url, next.body.job_id)).toMatchObject({ status: 'completed', records_processed: 2 });
      expect(await waitForJob(server.url, res.body.job_id)).toMatchObject({ status: 'canceled', records_processed: 0 });
    } finally {
      s3.thaw();
    }
  });

  it('never answered 5xx', () => {
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
  });
});

describe.each(backends().filter((backend) => backend.name === 'scale-out'))('a slow source ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { IMPORT_ALLOW_PRIVATE: 'true', IMPORT_TIMEOUT_MS: '600000' });
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  it("keeps its job's heartbeat fresh while the worker waits on it, so no other worker takes the job up", async () => {
    const before = pauses;
    const res = await importJob(server, { url: `${files.url}/pause`, format: 'csv', dataset: 'paused' });
    expect(res.status).toBe(202);
    const ages: number[] = [];
    const until = Date.now() + PAUSE_MS - 1000;
    while (Date.now() < until) {
      const { rows } = await server.intake.db.query<{ status: string; age_ms: number | null }>(
        `SELECT status, (extract(epoch FROM clock_timestamp() - heartbeat_at) * 1000)::float8 AS age_ms FROM ingest_jobs WHERE job_id = $1`,
        [res.body.job_id],
      );
      if (rows[0]!.status === 'running' && rows[0]!.age_ms !== null) ages.push(rows[0]!.age_ms);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(ages.length).toBeGreaterThan(5);
    // Older than WORKER_LOCK_MS, a running job may be claimed by any worker (DESIGN: stalled jobs resume elsewhere).
    expect(Math.max(...ages)).toBeLessThan(2000);
    expect(await waitForJob(server.url, res.body.job_id)).toMatchObject({ status: 'completed', records_processed: 2, attempts: 1 });
    expect(pauses - before).toBe(1);
  });
});

describe.each(backends())('imports ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, {
      ...s3.env,
      IMPORT_ALLOW_PRIVATE: 'true',
      IMPORT_TIMEOUT_MS: '1000',
      MAX_UPLOAD_BYTES: '1000000',
    });
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  async function imported(body: Record<string, unknown>): Promise<JobPayload> {
    const res = await importJob(server, body);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return waitForJob(server.url, res.body.job_id, 60_000);
  }

  it('imports a URL into a dataset named after it; the job shows the URL without its query', async () => {
    // First of all (no upload has made the upload directory yet): a zip is spooled to local disk to be read.
    const zipped = await imported({ url: `${files.url}/orders.zip`, dataset: 'zipped' });
    // Its bytes counted once, though read twice (downloaded to the spool, then read from it).
    expect(zipped).toMatchObject({ status: 'completed', records_processed: 2, bytes_processed: zipOf({ 'orders.csv': ORDERS }).length });
    expect(readdirSync(server.config.uploadDir)).toEqual([]);
    const job = await imported({ url: `${files.url}/orders.csv?signature=secret`, schema: { '*': 'text' } });
    expect(job).toMatchObject({
      status: 'completed',
      source_type: 'url_import',
      file_name: `${files.url}/orders.csv`,
      dataset: 'orders',
      records_processed: 2,
      error: null,
    });
    expect((await recordsOf(server.url, job.job_id)).map((r) => r.data)).toEqual([
      { id: '1', sku: 'A-1' },
      { id: '2', sku: 'B-2' },
    ]);
    const gz = await imported({ url: `${files.url}/orders.csv.gz`, dataset: 'orders_gz' });
    expect(gz).toMatchObject({ status: 'completed', records_processed: 2 });
    const json = await imported({ url: `${files.url}/export`, format: 'json', dataset: 'exported', mode: 'replace' });
    expect(json).toMatchObject({ status: 'completed', records_processed: 3, mode: 'replace' });
  });

  it('fails an S3 import whose server hangs within IMPORT_TIMEOUT_MS per try, instead of holding its worker', async () => {
    s3.freeze();
    try {
      const job = await imported({ url: 's3://intake-test/exports/orders.csv', dataset: 's3_frozen' });
      expect(job).toMatchObject({ status: 'failed', records_processed: 0 });
      expect(job.error).toMatch(/^ingestion failed after \d+ attempts: .*(time|hang)/i);
    } finally {
      s3.thaw();
    }
  });

  it('follows a redirect, and tries a flaky server again', async () => {
    expect(await imported({ url: `${files.url}/moved`, format: 'csv', dataset: 'moved' })).toMatchObject({
      status: 'completed',
      records_processed: 2,
    });
    expect(await imported({ url: `${files.url}/flaky`, format: 'csv', dataset: 'flaky' })).toMatchObject({
      status: 'completed',
      records_processed: 2,
    });
  });

  it('fails clearly: 404, a redirect loop, a server that stalls, a file over MAX_UPLOAD_BYTES, a host that does not resolve', async () => {
    expect(await imported({ url: `${files.url}/missing.csv` })).toMatchObject({
      status: 'failed',
      error: `${files.url}/missing.csv answered HTTP 404 Not Found`,
    });
    expect(await imported({ url: `${files.url}/loop`, dataset: 'loop' })).toMatchObject({
      status: 'failed',
      error: `${files.url}/loop redirects more than 5 times`,
    });
    expect(await imported({ url: `${files.url}/slow`, dataset: 'slow' })).toMatchObject({
      status: 'failed',
      error: `the download of ${files.url}/slow broke off after 5 bytes: 127.0.0.1:${files.port} sent nothing for 1000 ms (IMPORT_TIMEOUT_MS)`,
    });
    expect(await imported({ url: `${files.url}/big`, dataset: 'big' })).toMatchObject({
      status: 'failed',
      error: `${files.url}/big is 5000000 bytes, more than MAX_UPLOAD_BYTES (1000000)`,
    });
    expect(await imported({ url: 'http://no-such-host.invalid/x.csv' })).toMatchObject({
      status: 'failed',
      error: 'the host no-such-host.invalid does not resolve (DNS: ENOTFOUND)',
    });
  });

  it('imports an object from S3, and says so when the object is missing; retry reads it again once it is there', async () => {
    const job = await imported({ url: 's3://intake-test/exports/orders.csv', dataset: 's3_orders' });
    expect(job).toMatchObject({
      status: 'completed',
      source_type: 's3_import',
      file_name: 's3://intake-test/exports/orders.csv',
      records_processed: 2,
    });
    const zipped = await imported({ url: 's3://intake-test/exports/orders.zip', dataset: 's3_zipped' });
    expect(zipped).toMatchObject({ status: 'completed', records_processed: 2, bytes_processed: zipOf({ 'orders.csv': ORDERS }).length });
    expect(await imported({ url: 's3://intake-test/%zz.csv', dataset: 's3_odd' })).toMatchObject({
      status: 'failed',
      error: 's3://intake-test/%zz.csv does not exist (404)',
    });
    const missing = await imported({ url: `s3://intake-test/later/${backend.name}.csv`, dataset: 's3_later' });
    expect(missing).toMatchObject({ status: 'failed', error: `s3://intake-test/later/${backend.name}.csv does not exist (404)` });
    await s3.put(`later/${backend.name}.csv`, ORDERS);
    expect((await fetch(`${server.url}/api/job/${missing.job_id}/retry`, { method: 'POST' })).status).toBe(202);
    expect(await waitForJob(server.url, missing.job_id)).toMatchObject({ status: 'completed', records_processed: 2 });
  });

  it('never answered 5xx', () => {
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
  });
});
