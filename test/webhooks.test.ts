/**
 * Completion webhooks against a real receiver on loopback: signatures verified as a receiver
 * would, a receiver down for a while gets every delivery once it is back, a restart of Intake
 * between attempts loses none, two worker processes never send the same attempt twice, and
 * callback URLs follow the address rule of imports.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  backends,
  createSandbox,
  getJson,
  postJson,
  postRecords,
  startServer,
  waitForJob,
  type Sandbox,
  type TestServer,
} from './helpers.js';
import { startWorkerProcess } from './process.js';

const SECRET = 'whsec_0123456789abcdef0123456789abcdef';

interface Received {
  path: string;
  event: string;
  delivery: string;
  attempt: string;
  body: string;
  verified: boolean;
}

/** Checks an Intake-Signature header as a receiver should: the HMAC, and a timestamp within 5 minutes. */
function verify(header: string | undefined, body: string, secret: string): boolean {
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? '');
  if (!match) return false;
  if (Math.abs(Date.now() / 1000 - Number(match[1])) > 300) return false;
  const expected = createHmac('sha256', secret).update(`${match[1]}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(match[2]!, 'hex'));
}

/** A webhook receiver: answers `answer` (200 unless told), after `delayMs`; can be stopped and started on its port. */
class Receiver {
  received: Received[] = [];
  answer = 200;
  /** The answer's body when it is 200. */
  thanks = 'thanks';
  delayMs = 0;
  port = 0;
  private server?: Server;

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => void this.respond(req, res, Buffer.concat(chunks).toString('utf8')));
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  private async respond(req: IncomingMessage, res: ServerResponse, body: string): Promise<void> {
    if (this.delayMs > 0) await sleep(this.delayMs);
    this.received.push({
      path: req.url!,
      event: String(req.headers['intake-event']),
      delivery: String(req.headers['intake-delivery']),
      attempt: String(req.headers['intake-attempt']),
      body,
      verified: verify(req.headers['intake-signature'] as string | undefined, body, SECRET),
    });
    res.writeHead(this.answer, { 'content-type': 'text/plain' });
    res.end(this.answer === 200 ? this.thanks : 'down for maintenance');
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  of(jobId: string): Received[] {
    return this.received.filter((r) => JSON.parse(r.body).job_id === jobId);
  }
}

async function deliveries(server: TestServer, jobId: string) {
  const res = await getJson(`${server.url}/api/job/${jobId}/deliveries`);
  expect(res.status).toBe(200);
  return res.body.results as any[];
}

async function waitDelivered(server: TestServer, jobId: string, count: number, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const list = await deliveries(server, jobId);
    if (list.length === count && list.every((d) => d.status === 'delivered')) return list;
    if (Date.now() > deadline) throw new Error(`deliveries of ${jobId} not done: ${JSON.stringify(list)}`);
    await sleep(50);
  }
}

describe.each(backends())('webhooks ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer | undefined;
  const receiver = new Receiver();
  const env = () => ({
    WEBHOOK_URLS: `${receiver.url}/all`,
    WEBHOOK_SECRET: SECRET,
    WEBHOOK_RETRY_MS: '200',
    WEBHOOK_TIMEOUT_MS: '1000',
    IMPORT_ALLOW_PRIVATE: 'true',
  });

  beforeAll(async () => {
    await receiver.start();
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, env());
  });

  afterEach(() => {
    receiver.answer = 200;
    receiver.thanks = 'thanks';
    receiver.delayMs = 0;
  });

  afterAll(async () => {
    await server?.close();
    await receiver.stop();
    await sandbox?.dispose();
  });

  it("posts the payload of each end, signed, to WEBHOOK_URLS and the job's callback_url, and shows the deliveries", async () => {
    const form = new FormData();
    form.append('callback_url', `${receiver.url}/job-hook?token=s3cret`);
    form.append('file', new Blob(['id,name\n1,Ada\n2,Grace\n']), 'people.csv');
    const done = await fetch(`${server!.url}/api/upload`, { method: 'POST', body: form });
    expect(done.status).toBe(202);
    const job = await waitForJob(server!.url, (await done.json()).job_id);
    expect(job.status).toBe('completed');
    const list = await waitDelivered(server!, job.job_id, 2);
    expect(list.map((d) => d.url).sort()).toEqual([`${receiver.url}/all`, `${receiver.url}/job-hook`]); // the query (a token) is not shown
    for (const d of list) {
      expect(d).toMatchObject({ event: 'job.completed', attempts: 1, next_attempt_at: null, last_error: null });
      expect(d.attempt_log).toHaveLength(1);
      expect(d.attempt_log[0]).toMatchObject({ attempt: 1, status_code: 200, error: null, response: 'thanks' });
    }
    const got = receiver.of(job.job_id);
    expect(got.map((r) => r.path).sort()).toEqual(['/all', '/job-hook?token=s3cret']);
    for (const r of got) {
      expect(r.verified).toBe(true);
      expect(r.event).toBe('job.completed');
      expect(JSON.parse(r.body)).toEqual(job); // the job payload, as its status URL answers it
    }
    // A signature over another body, or with another secret, does not verify.
    expect(verify(`t=${Math.floor(Date.now() / 1000)},v1=${'0'.repeat(64)}`, got[0]!.body, SECRET)).toBe(false);

    // A failed job and a canceled one are told too.
    const failed = await postRecords(server!.url, '[{"name": "no key"}]', 'application/json', 'mode=merge&key=id');
    const failedJob = await waitForJob(server!.url, failed.body.job_id);
    expect(failedJob.status).toBe('failed');
    await waitDelivered(server!, failedJob.job_id, 1);
    expect(receiver.of(failedJob.job_id).map((r) => [r.event, r.verified, JSON.parse(r.body).error])).toEqual([
      ['job.failed', true, failedJob.error],
    ]);
  });

  it('tries again until a receiver that was down is back, and delivers each once', async () => {
    receiver.answer = 503;
    const res = await postRecords(server!.url, '[{"n": 1}]');
    const job = await waitForJob(server!.url, res.body.job_id);
    await expect
      .poll(async () => (await deliveries(server!, job.job_id))[0]?.attempt_log.length ?? 0, { timeout: 20_000 })
      .toBeGreaterThanOrEqual(3);
    const pending = (await deliveries(server!, job.job_id))[0];
    expect(pending.status).toBe('pending');
    expect(pending.last_error).toBe('HTTP 503');
    expect(pending.attempt_log[0]).toMatchObject({ status_code: 503, response: 'down for maintenance' });
    // Down altogether: connections refused for a while.
    await receiver.stop();
    // An attempt is counted when it starts: wait for one made, and told, after the stop.
    const before = (await deliveries(server!, job.job_id))[0].attempts;
    await expect
      .poll(async () => (await deliveries(server!, job.job_id))[0].attempt_log.length, { timeout: 20_000 })
      .toBeGreaterThan(before);
    expect((await deliveries(server!, job.job_id))[0].last_error).toMatch(/^could not reach 127\.0\.0\.1:\d+: ECONNREFUSED$/);
    receiver.answer = 200;
    await receiver.start(); // on the same port
    const [delivered] = await waitDelivered(server!, job.job_id, 1, 60_000);
    const got = receiver.of(job.job_id).filter((r) => r.event === 'job.completed');
    // Every 503 was an attempt; exactly one 200, and nothing after it.
    expect(got.filter((r) => r.verified)).toHaveLength(got.length);
    expect(delivered.attempt_log.filter((a: any) => a.status_code === 200)).toHaveLength(1);
    expect(delivered.attempt_log.at(-1).status_code).toBe(200);
    await sleep(600); // two more retry periods: nothing more arrives
    expect(receiver.of(job.job_id)).toHaveLength(got.length);
    // Waits doubled: each later attempt came no sooner than the last wait.
    const starts = delivered.attempt_log.map((a: any) => Date.parse(a.started_at));
    for (let i = 2; i < starts.length; i++) expect(starts[i] - starts[i - 1]).toBeGreaterThanOrEqual(200 * 2 ** (i - 1) * 0.9);
  }, 120_000);

  it('gives up on an attempt a receiver does not answer within WEBHOOK_TIMEOUT_MS, and tries again', async () => {
    receiver.delayMs = 1500;
    const res = await postRecords(server!.url, '[{"n": 3}]');
    const job = await waitForJob(server!.url, res.body.job_id);
    await expect
      .poll(async () => (await deliveries(server!, job.job_id))[0]?.attempt_log.length ?? 0, { timeout: 20_000 })
      .toBeGreaterThanOrEqual(1);
    const [slow] = await deliveries(server!, job.job_id);
    expect(slow.attempt_log[0]).toMatchObject({ status_code: null, error: 'no answer within 1000 ms (WEBHOOK_TIMEOUT_MS)' });
    receiver.delayMs = 0;
    const [done] = await waitDelivered(server!, job.job_id, 1);
    expect(done.attempt_log.at(-1)).toMatchObject({ status_code: 200, error: null });
  }, 60_000);

  it('records an answer holding a NUL byte (TEXT cannot) and counts the delivery done', async () => {
    receiver.thanks = 'ok\u0000then';
    const res = await postRecords(server!.url, '[{"n": 4}]');
    const job = await waitForJob(server!.url, res.body.job_id);
    const [done] = await waitDelivered(server!, job.job_id, 1);
    expect(done.attempt_log).toEqual([expect.objectContaining({ attempt: 1, status_code: 200, response: 'ok\ufffdthen' })]);
    await sleep(600);
    expect(receiver.of(job.job_id)).toHaveLength(1);
  });

  it('loses no delivery to a restart of Intake between attempts', async () => {
    receiver.answer = 500;
    const res = await postRecords(server!.url, '[{"n": 2}]');
    const job = await waitForJob(server!.url, res.body.job_id);
    await expect
      .poll(async () => (await deliveries(server!, job.job_id))[0]?.attempt_log.length ?? 0, { timeout: 20_000 })
      .toBeGreaterThanOrEqual(1);
    await server!.close();
    server = undefined;
    receiver.answer = 200;
    const countBefore = receiver.of(job.job_id).length;
    server = await startServer(sandbox, env());
    await waitDelivered(server, job.job_id, 1, 30_000);
    const after = receiver.of(job.job_id).slice(countBefore);
    expect(after.map((r) => [r.event, r.verified])).toEqual([['job.completed', true]]);
  }, 90_000);

  it('refuses a callback_url that is not http(s), holds credentials, or (without IMPORT_ALLOW_PRIVATE) reaches a private address', async () => {
    for (const [url, detail] of [
      ['ftp://example.com/hook', /callback_url.*http or https/],
      ['https://user:pw@example.com/hook', /callback_url.*credentials/],
      ['not a url', /callback_url.*absolute http\(s\) URL/],
    ] as const) {
      const res = await postRecords(server!.url, '[{"n": 1}]', 'application/json', `callback_url=${encodeURIComponent(url)}`);
      expect(res.status).toBe(422);
      expect(JSON.stringify(res.body.detail)).toMatch(detail);
    }
    const strictBox = await createSandbox(backend);
    const strict = await startServer(strictBox, { WORKER_CONCURRENCY: '0' });
    try {
      for (const url of ['http://127.0.0.1:9/hook', 'http://localhost:9/hook', 'http://169.254.169.254/latest', 'http://[::1]:9/']) {
        const res = await postRecords(strict.url, '[{"n": 1}]', 'application/json', `callback_url=${encodeURIComponent(url)}`);
        expect(res.status, url).toBe(422);
        expect(res.body.code).toBe('callback_refused');
        expect(res.body.detail).toMatch(
          /a loopback, private, link-local or metadata address: callback URLs may not reach it \(IMPORT_ALLOW_PRIVATE=true allows it\)$/,
        );
      }
      const form = new FormData();
      form.append('callback_url', 'http://10.1.2.3/hook');
      form.append('file', new Blob(['a\n1\n']), 'a.csv');
      const res = await fetch(`${strict.url}/api/upload`, { method: 'POST', body: form });
      expect(res.status).toBe(422);
      expect((await res.json()).code).toBe('callback_refused');
      // A schedule's callback_url is held to the same rule when the schedule is made.
      const schedule = await postJson(`${strict.url}/api/schedules`, {
        import: { url: 'https://93.184.215.14/a.csv', callback_url: 'http://169.254.169.254/hook' },
        every: '1h',
      });
      expect(schedule.status).toBe(422);
      expect(schedule.body.code).toBe('callback_refused');
      const jobs = await getJson(`${strict.url}/api/jobs?limit=100`);
      expect(jobs.body.results.filter((j: any) => j.file_name === 'a.csv')).toEqual([]);
    } finally {
      await strict.close();
      await strictBox.dispose();
    }
  });

  it('never answered 5xx', () => {
    expect(server!.statuses.filter((status) => status >= 500)).toEqual([]);
  });
});

describe.skipIf(!process.env.DATABASE_URL || !process.env.REDIS_URL)('webhooks with two worker processes', () => {
  it("never sends the same attempt twice, and delivers every job's end once", async () => {
    const receiver = new Receiver();
    await receiver.start();
    receiver.delayMs = 150; // slow answers: attempts overlap the other worker's polls
    const sandbox = await createSandbox({ name: 'scale-out' });
    const env = { WEBHOOK_URLS: `${receiver.url}/a,${receiver.url}/b`, WEBHOOK_SECRET: SECRET, WEBHOOK_RETRY_MS: '100' };
    const server = await startServer(sandbox, env);
    const second = await startWorkerProcess({ ...sandbox.env, PORT: '0', HOST: '127.0.0.1', ...env });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 30; i++) ids.push((await postRecords(server.url, `[{"n": ${i}}]`)).body.job_id);
      for (const id of ids) await waitForJob(server.url, id, 60_000);
      for (const id of ids) await waitDelivered(server, id, 2, 60_000);
      const keys = receiver.received.map((r) => `${r.delivery}/${r.attempt}`);
      expect(new Set(keys).size).toBe(keys.length);
      expect(receiver.received).toHaveLength(60);
      expect(receiver.received.every((r) => r.verified && r.attempt === '1')).toBe(true);
    } finally {
      expect(await second.stop()).toBe(0);
      await server.close();
      await receiver.stop();
      await sandbox.dispose();
    }
  }, 120_000);
});
