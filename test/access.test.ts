import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { backends, createSandbox, makeCsv, startServer, waitForJob, type Sandbox, type TestServer } from './helpers.js';
import { startIntakeProcess } from './process.js';

const TOKEN = 'tok-0123456789abcdef-first';
const OTHER = 'tok-fedcba9876543210-second';
const SCRAPER = 'metrics-0123456789abcdef';
const BIN = fileURLToPath(new URL('../bin/intake.js', import.meta.url));

/** Access control (API_TOKENS) and CORS (CORS_ORIGINS), in every mode. */
describe.each(backends())('access control ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, {
      API_TOKENS: `${TOKEN}, ${OTHER}`,
      CORS_ORIGINS: 'https://app.example.com',
      METRICS_TOKEN: SCRAPER,
    });
  });

  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
    expect(server.statuses.filter((status) => status >= 500)).toEqual([]);
  });

  const call = (path: string, init: RequestInit = {}) => fetch(server.url + path, init);
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  it('answers 401 to every /api route and event stream without a valid token', async () => {
    const id = '00000000-0000-4000-8000-000000000000';
    const routes: [string, string][] = [
      ['GET', '/api/jobs'],
      ['GET', `/api/job/${id}`],
      ['GET', `/api/job/${id}/events`],
      ['GET', '/api/jobs/events'],
      ['GET', `/api/job/${id}/records`],
      ['POST', '/api/upload'],
      ['POST', '/api/ingest/json'],
      ['POST', `/api/job/${id}/cancel`],
      ['DELETE', `/api/job/${id}`],
    ];
    for (const [method, path] of routes) {
      for (const headers of [
        {},
        bearer('tok-not-a-valid-token-at-all'),
        bearer(TOKEN.slice(0, -1)),
        { authorization: `Basic ${btoa(`user:${TOKEN}`)}` },
      ]) {
        const res = await call(path, { method, headers });
        expect(res.status, `${method} ${path} ${JSON.stringify(headers)}`).toBe(401);
        expect(res.headers.get('www-authenticate')).toBe('Bearer realm="intake"');
        const body = await res.json();
        expect(body.code).toBe('unauthorized');
        expect(JSON.stringify(body)).not.toContain(TOKEN);
      }
    }
    expect(await (await call('/api/jobs')).json()).toEqual({
      detail: 'This Intake requires an access token: send Authorization: Bearer <token>',
      code: 'unauthorized',
    });
  });

  it('guards every /api route of the OpenAPI document, whatever the method', async () => {
    const paths = server.intake.app.swagger().paths as Record<string, Record<string, unknown>>;
    const apiPaths = Object.keys(paths).filter((path) => path.startsWith('/api/'));
    expect(apiPaths.length).toBeGreaterThanOrEqual(9);
    for (const path of apiPaths) {
      for (const method of Object.keys(paths[path]!)) {
        const url = path.replace('{job_id}', '00000000-0000-4000-8000-000000000000');
        const res = await call(url, { method: method.toUpperCase() });
        expect(res.status, `${method} ${url}`).toBe(401);
      }
    }
  });

  it('answers 401 however the URL of an /api route is spelled (percent-encoded, absolute form, HEAD, dot segments)', async () => {
    const { port } = new URL(server.url);
    const id = '00000000-0000-4000-8000-000000000000';
    const requests = [
      'GET /%61pi/jobs',
      'GET /a%70i/jobs',
      'GET /%61%70%69/jobs',
      'HEAD /%61pi/jobs',
      'GET /%61pi/jobs/events',
      'GET /api/./jobs',
      'GET /x/../api/jobs',
      `GET /%61pi/job/${id}/records`,
      'GET http://x/api/jobs',
      'GET http://x/%61pi/jobs',
      'GET http://x/api/jobs/events',
      `DELETE http://x/api/job/${id}`,
      `POST /%61pi/job/${id}/cancel`,
    ];
    for (const line of requests) {
      const head = await rawRequest(Number(port), `${line} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
      const status = Number(head.split(' ')[1]);
      expect([401, 404, 400], `${line}: ${head.split('\r\n')[0]}`).toContain(status);
      expect(head).not.toMatch(/text\/event-stream/);
    }
    for (const path of ['/%61pi/ingest/json', 'http://x/api/ingest/json']) {
      const body = '[{"a":1}]';
      const head = await rawRequest(
        Number(port),
        `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
      );
      expect(head.split('\r\n')[0], path).toBe('HTTP/1.1 401 Unauthorized');
    }
    expect((await call('/api/jobs', { headers: bearer(TOKEN) })).status).toBe(200);
    const jobs = await (await call('/api/jobs', { headers: bearer(TOKEN) })).json();
    expect(jobs.results.filter((job: { source_type: string }) => job.source_type === 'json_api')).toEqual([]);
  });

  it('serves everything with either token; the console, API docs and OpenAPI document stay open', async () => {
    for (const token of [TOKEN, OTHER]) expect((await call('/api/jobs', { headers: bearer(token) })).status).toBe(200);
    const form = new FormData();
    form.append('file', new Blob([makeCsv(20)]), 'a.csv');
    const res = await call('/api/upload', { method: 'POST', body: form, headers: bearer(TOKEN) });
    expect(res.status).toBe(202);
    const { job_id: jobId } = await res.json();
    const deadline = Date.now() + 30_000;
    let job;
    do job = await (await call(`/api/job/${jobId}`, { headers: bearer(OTHER) })).json();
    while (job.status !== 'completed' && Date.now() < deadline);
    expect(job).toMatchObject({ status: 'completed', records_processed: 20 });
    for (const path of ['/', `/jobs/${jobId}`, '/openapi.json', '/docs']) expect((await call(path)).status, path).toBe(200);
  });

  it('with METRICS_TOKEN, /metrics answers only that bearer token (not an API token); health checks stay open', async () => {
    for (const headers of [{}, bearer(TOKEN), bearer(SCRAPER.slice(0, -1)), { authorization: `Basic ${btoa(`x:${SCRAPER}`)}` }]) {
      const res = await call('/metrics', { headers });
      expect(res.status, JSON.stringify(headers)).toBe(401);
      expect((await res.json()).code).toBe('unauthorized');
    }
    const res = await call('/metrics', { headers: bearer(SCRAPER) });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('intake_jobs{status="completed"}');
    expect((await call('/api/jobs', { headers: bearer(SCRAPER) })).status).toBe(401);
    for (const path of ['/healthz', '/readyz']) expect((await call(path)).status, path).toBe(200);
    expect(() => loadConfig({ METRICS_TOKEN: 'short' })).toThrow('METRICS_TOKEN token 1 is shorter than 16 characters');
  });

  it('lets the named origins call it from a browser (CORS), and no others', async () => {
    const preflight = await call('/api/upload', {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example.com',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,idempotency-key',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(preflight.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
    const get = await call('/api/jobs', { headers: { origin: 'https://app.example.com', ...bearer(TOKEN) } });
    expect(get.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(get.headers.get('access-control-expose-headers')).toContain('Location');
    const evil = await call('/api/jobs', { headers: { origin: 'https://evil.example.com', ...bearer(TOKEN) } });
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('the CLI sends INTAKE_TOKEN, and says so in one line when it is missing', async () => {
    const run = async (env: Record<string, string>) => {
      const child = spawn(process.execPath, [BIN, 'jobs', '--json'], {
        env: { PATH: process.env.PATH ?? '', INTAKE_URL: server.url, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const [code] = await once(child, 'exit');
      return { code, stdout, stderr };
    };
    const ok = await run({ INTAKE_TOKEN: OTHER });
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).results.length).toBeGreaterThan(0);
    const refused = await run({});
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(
      'intake: This Intake requires an access token: send Authorization: Bearer <token> (HTTP 401 unauthorized)\n',
    );
  });
});

describe('binding and logging', () => {
  it('binds to loopback without API_TOKENS, to every interface with them, and says which at start', () => {
    expect(loadConfig({}).host).toBe('127.0.0.1');
    expect(loadConfig({ API_TOKENS: TOKEN }).host).toBe('0.0.0.0');
    expect(loadConfig({ API_TOKENS: TOKEN, HOST: '127.0.0.1' }).host).toBe('127.0.0.1');
    expect(() => loadConfig({ API_TOKENS: 'short' })).toThrow('API_TOKENS token 1 is shorter than 16 characters');
    expect(() => loadConfig({ CORS_ORIGINS: 'app.example.com' })).toThrow('CORS_ORIGINS must be origins');
  });

  it('never writes a token to its log, even at trace level', async () => {
    const sandbox = await createSandbox({ name: 'embedded' });
    const proc = await startIntakeProcess({ ...sandbox.env, LOG_LEVEL: 'trace', API_TOKENS: TOKEN, HOST: '127.0.0.1' });
    try {
      for (const token of [TOKEN, OTHER]) {
        await fetch(`${proc.url}/api/jobs?token=x`, { headers: { authorization: `Bearer ${token}` } });
        await fetch(`${proc.url}/api/job/00000000-0000-4000-8000-000000000000`, { headers: { authorization: `Bearer ${token}` } });
      }
      const form = new FormData();
      form.append('file', new Blob(['a\n1\n']), 'a.csv');
      await fetch(`${proc.url}/api/upload`, { method: 'POST', body: form, headers: { authorization: `Bearer ${TOKEN}` } });
    } finally {
      expect(await proc.stop()).toBe(0);
      await sandbox.dispose();
    }
    const output = proc.output();
    expect(output).toContain('access control on');
    expect(output).toContain('"statusCode":401'); // the refused requests were logged...
    expect(output).not.toContain(TOKEN.slice(4)); // ...without a token
    expect(output).not.toContain(OTHER.slice(4));

    const open = createSandbox({ name: 'embedded' });
    const plain = await startIntakeProcess({ ...(await open).env });
    expect(await plain.stop()).toBe(0);
    await (await open).dispose();
    expect(plain.output()).toContain('no API_TOKENS: listening on loopback only');
  });
});

describe.skipIf(!existsSync('/usr/bin/chromium'))('the console with API_TOKENS', () => {
  it('asks for a token, refuses a wrong one, then works live with the right one', async () => {
    const sandbox = await createSandbox({ name: 'embedded' });
    const server = await startServer(sandbox, { API_TOKENS: TOKEN });
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    try {
      const page = await browser.newPage();
      await page.goto(server.url);
      await expect.poll(() => page.locator('#token-title').count()).toBe(1);
      expect(await page.locator('.notice').textContent()).toBe('This Intake requires an access token.');
      await page.getByLabel('Token', { exact: true }).fill('tok-wrong-wrong-wrong-wrong');
      await page.getByRole('button', { name: 'Use this token' }).click();
      await expect.poll(() => page.locator('.notice-error').textContent()).toBe('The access token is not valid. Enter another one.');
      await page.getByLabel('Token', { exact: true }).fill(TOKEN);
      await page.getByRole('button', { name: 'Use this token' }).click();
      await expect.poll(() => page.locator('.live-indicator').textContent()).toBe('Live');
      await page.setInputFiles('input[type=file]', { name: 'secret.csv', mimeType: 'text/csv', buffer: Buffer.from(makeCsv(500)) });
      await page.getByRole('button', { name: 'Upload', exact: true }).click();
      const row = page.locator('tr[data-job-id]');
      await expect.poll(() => row.locator('.badge').textContent(), { timeout: 30_000 }).toBe('completed');
      const jobId = (await row.getAttribute('data-job-id'))!;
      expect(await waitForJob(server.url, jobId).catch((err: Error) => err.message)).toContain('answered 401'); // the API itself still wants the token
      await row.locator('td.source a').click();
      await expect.poll(() => page.locator('table.records tbody tr').count()).toBe(50);
      await page.getByRole('button', { name: 'Sign out' }).click();
      await expect.poll(() => page.locator('#token-title').count()).toBe(1);
    } finally {
      await browser.close();
      await server.close();
      await sandbox.dispose();
    }
  });
});

/** Sends a raw HTTP request (any request target) and answers the status line and headers. */
function rawRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    const done = () => {
      socket.destroy();
      resolve(received.split('\r\n\r\n')[0]!);
    };
    socket.setTimeout(5000, () => reject(new Error(`no answer to ${text.split('\r\n')[0]}`)));
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      if (received.includes('\r\n\r\n')) done();
    });
    socket.on('end', done);
    socket.on('error', reject);
    socket.write(text);
  });
}
