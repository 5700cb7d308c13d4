import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { inject } from 'vitest';
import { loadConfig, type Config } from '../src/config.js';
import type { JobPayload } from '../src/schemas/jobs.js';
import { createIntake, createLogger, type Intake } from '../src/server.js';

export interface Backend {
  name: 'embedded' | 'postgres';
}

/** The backends every contract test runs against: embedded always; PostgreSQL when configured. */
export function backends(): Backend[] {
  if (process.env.DATABASE_URL) return [{ name: 'embedded' }, { name: 'postgres' }];
  console.warn('DATABASE_URL is not set: the PostgreSQL runs of the contract tests are skipped');
  return [{ name: 'embedded' }];
}

/** A scratch place for one test: a data directory, and for PostgreSQL a database of its own. */
export interface Sandbox {
  env: Record<string, string>;
  dataDir: string;
  /** Queries the sandbox's database directly (PostgreSQL only; PGlite is held by Intake). */
  admin?: pg.Pool;
  dispose(): Promise<void>;
}

export async function createSandbox(backend: Backend): Promise<Sandbox> {
  const dataDir = mkdtempSync(join(tmpdir(), 'intake-test-'));
  const env: Record<string, string> = { DATA_DIR: dataDir, LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent' };
  if (backend.name === 'embedded') {
    cpSync(inject('pgliteTemplate'), join(dataDir, 'pgdata'), { recursive: true });
    return { env, dataDir, dispose: async () => rmSync(dataDir, { recursive: true, force: true }) };
  }
  const base = process.env.DATABASE_URL!;
  const name = `intake_test_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
  const server = new pg.Client({ connectionString: base });
  await server.connect();
  await server.query(`CREATE DATABASE ${name}`);
  await server.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  env.DATABASE_URL = url.toString();
  const admin = new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
  return {
    env,
    dataDir,
    admin,
    async dispose() {
      await admin.end();
      const client = new pg.Client({ connectionString: base });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface TestServer {
  url: string;
  /** Every response status the server sent, so a suite can assert it never answered 5xx. */
  statuses: number[];
  intake: Intake;
  config: Config;
  close(): Promise<void>;
}

/** Intake in this process, listening on a free port, as `intake serve` would run it. */
export async function startServer(sandbox: Sandbox, overrides: Record<string, string> = {}): Promise<TestServer> {
  const env = { ...sandbox.env, PORT: '0', HOST: '127.0.0.1', ...overrides };
  const config = loadConfig(env);
  const intake = await createIntake(config, createLogger(config));
  const statuses: number[] = [];
  intake.app.addHook('onResponse', async (_request, reply) => {
    statuses.push(reply.statusCode);
  });
  await intake.app.listen({ port: 0, host: '127.0.0.1' });
  await intake.start();
  const address = intake.app.server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  return { url: `http://127.0.0.1:${address.port}`, statuses, intake, config, close: () => intake.close() };
}

export async function getJson<T = any>(url: string): Promise<{ status: number; body: T; headers: Headers }> {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as T, headers: res.headers };
}

export async function upload(baseUrl: string, name: string, content: BlobPart, field = 'file') {
  const form = new FormData();
  form.append(field, new Blob([content]), name);
  const res = await fetch(`${baseUrl}/api/upload`, { method: 'POST', body: form });
  return { status: res.status, body: (await res.json()) as any, headers: res.headers };
}

export async function postRecords(baseUrl: string, body: string, contentType = 'application/json') {
  const res = await fetch(`${baseUrl}/api/ingest/json`, { method: 'POST', body, headers: { 'content-type': contentType } });
  return { status: res.status, body: (await res.json()) as any, headers: res.headers };
}

const TERMINAL = new Set(['completed', 'failed']);

/** Polls the status URL until the job is finished (or the timeout passes). */
export async function waitForJob(baseUrl: string, jobId: string, timeoutMs = 30_000): Promise<JobPayload> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status, body } = await getJson<JobPayload>(`${baseUrl}/api/job/${jobId}`);
    if (status !== 200) throw new Error(`GET /api/job/${jobId} answered ${status}`);
    if (TERMINAL.has(body.status)) return body;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${body.status} after ${timeoutMs} ms`);
    await sleep(25);
  }
}

/** A CSV of n rows with quoted commas, doubled quotes and embedded newlines. */
export function makeCsv(rows: number): string {
  const lines = ['id,name,note'];
  for (let i = 0; i < rows; i++) lines.push(`${i},user ${i},"note ${i}, with ""quotes"" and\na newline"`);
  return lines.join('\r\n') + '\r\n';
}
