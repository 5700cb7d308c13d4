import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Redis } from 'ioredis';
import { expect, inject } from 'vitest';
import { startWorkerProcess } from './process.js';
import { loadConfig, type Config } from '../src/config.js';
import { TERMINAL_STATUSES, type JobPayload } from '../src/core/job.js';
import { createIntake, createLogger, type Intake } from '../src/server.js';
import { stageOf } from '../src/storage/datasets.js';
import { sqlLoginRole } from '../src/storage/sql-role.js';

/**
 * npm test (scripts/test.mjs): the fast suite. A heavy case (a million rows, a process left to
 * run out its timeouts) is written `it.skipIf(FAST)(...)`: npm run test:full runs it.
 */
export const FAST = Boolean(process.env.INTAKE_TEST_FAST);

export interface Backend {
  /** embedded: PGlite; postgres: PostgreSQL with in-process workers; scale-out: PostgreSQL + Redis + BullMQ. */
  name: 'embedded' | 'postgres' | 'scale-out';
}

/** The backends every contract test runs against: embedded always; the others when configured. */
export function backends(): Backend[] {
  // TEST_BACKENDS=embedded,postgres: only these (CI runs the contract on other Node majors so).
  const chosen = process.env.TEST_BACKENDS?.split(',').map((name) => name.trim());
  if (chosen) {
    const unknown = chosen.filter((name) => !['embedded', 'postgres', 'scale-out'].includes(name));
    if (unknown.length > 0) throw new Error(`TEST_BACKENDS: no backend ${unknown.join(', ')} (embedded, postgres, scale-out)`);
    if (chosen.some((name) => name !== 'embedded') && !process.env.DATABASE_URL)
      throw new Error('TEST_BACKENDS names a PostgreSQL backend: set DATABASE_URL');
    if (chosen.includes('scale-out') && !process.env.REDIS_URL) throw new Error('TEST_BACKENDS names scale-out: set REDIS_URL');
    return chosen.map((name) => ({ name: name as Backend['name'] }));
  }
  const list: Backend[] = [{ name: 'embedded' }];
  if (process.env.DATABASE_URL) list.push({ name: 'postgres' });
  else console.warn('DATABASE_URL is not set: the PostgreSQL runs of the contract tests are skipped');
  if (process.env.DATABASE_URL && process.env.REDIS_URL) list.push({ name: 'scale-out' });
  else console.warn('DATABASE_URL and REDIS_URL are not both set: the scale-out runs of the contract tests are skipped');
  return list;
}

/** Scale-out backends only (for tests of the cache, queue and reconciler). */
export function scaleOutAvailable(): boolean {
  if (process.env.DATABASE_URL && process.env.REDIS_URL) return true;
  console.warn('DATABASE_URL and REDIS_URL are not both set: the scale-out tests are skipped');
  return false;
}

/** A scratch place for one test: a data directory, and for PostgreSQL a database of its own. */
export interface Sandbox {
  backend: Backend;
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
    return { backend, env, dataDir, dispose: async () => rmSync(dataDir, { recursive: true, force: true }) };
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
  if (backend.name === 'scale-out') {
    env.REDIS_URL = process.env.REDIS_URL!;
    // Its own key prefix: tests running at once never see each other's queue or cache.
    env.REDIS_KEY_PREFIX = `${name}:`;
    env.WORKER_LOCK_MS = '2000';
    env.RECONCILE_INTERVAL_MS = '1000';
  }
  return {
    backend,
    env,
    dataDir,
    admin,
    async dispose() {
      await admin.end();
      if (backend.name === 'scale-out') await deleteRedisKeys(env.REDIS_URL!, env.REDIS_KEY_PREFIX!);
      const client = new pg.Client({ connectionString: base });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      // The role a SQL query's connection logs in as is the cluster's: one per database.
      await client.query(`DROP ROLE IF EXISTS ${sqlLoginRole(name)}`);
      await client.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Deletes every key under a test's own prefix. */
export async function deleteRedisKeys(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

export interface TestServer {
  url: string;
  /** Every response status the server sent, so a suite can assert it never answered 5xx. */
  statuses: number[];
  intake: Intake;
  config: Config;
  close(): Promise<void>;
}

/**
 * Intake in this process, listening on a free port, as `intake serve` would run it. In
 * scale-out mode the API runs here with no workers, and the workers in a separate
 * `intake worker` process, as in production.
 */
export async function startServer(sandbox: Sandbox, overrides: Record<string, string> = {}): Promise<TestServer> {
  // FAST_PATH_MAX_BYTES=0 runs a suite with every load on the checked path.
  const fastPath = process.env.FAST_PATH_MAX_BYTES;
  const env: Record<string, string> = {
    ...sandbox.env,
    PORT: '0',
    HOST: '127.0.0.1',
    ...(fastPath !== undefined && { FAST_PATH_MAX_BYTES: fastPath }),
    ...overrides,
  };
  let worker: Awaited<ReturnType<typeof startWorkerProcess>> | undefined;
  if (sandbox.backend.name === 'scale-out' && env.WORKER_CONCURRENCY !== '0') {
    worker = await startWorkerProcess(env);
    env.WORKER_CONCURRENCY = '0';
  }
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
  return {
    url: `http://127.0.0.1:${address.port}`,
    statuses,
    intake,
    config,
    async close() {
      // A close that hangs says what is still open, so a rare hang in CI leaves a lead.
      const watchdog = setTimeout(() => {
        const sockets = (process as unknown as { _getActiveHandles(): unknown[] })
          ._getActiveHandles()
          .filter((handle): handle is Socket => handle instanceof Socket)
          .map((socket) => `${socket.localPort ?? '-'}->${socket.remotePort ?? '-'}${socket.destroyed ? ' (destroyed)' : ''}`);
        intake.app.server.getConnections((_err, count) =>
          console.error(
            `intake.close() still running after 30 s (this server's port ${address.port}: ${count} connections open); ` +
              `sockets ${sockets.join(', ')}; open: ${process.getActiveResourcesInfo().join(', ')}`,
          ),
        );
      }, 30_000);
      try {
        await intake.close();
      } finally {
        clearTimeout(watchdog);
      }
      if (worker) expect(await worker.stop()).toBe(0);
    },
  };
}

export async function getJson<T = any>(url: string): Promise<{ status: number; body: T; headers: Headers }> {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as T, headers: res.headers };
}

export async function upload(baseUrl: string, name: string, content: BlobPart, field = 'file') {
  const form = new FormData();
  form.append(field, new Blob([content]), name);
  const res = await fetch(`${baseUrl}/api/upload`, { method: 'POST', body: form });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

export async function postJson(url: string, body: unknown) {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

export async function postRecords(baseUrl: string, body: string, contentType = 'application/json', query = '') {
  const res = await fetch(`${baseUrl}/api/ingest/json${query && `?${query}`}`, {
    method: 'POST',
    body,
    headers: { 'content-type': contentType },
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

/** Intake's Db or a pg Pool: enough to read a few counts. */
interface SqlClient {
  query(sql: string, params?: unknown[]): Promise<{ rows: any[] }>;
}

/** Rows of a dataset (in the default schema), or only a job's; 0 when the dataset does not exist. */
export async function datasetCount(db: SqlClient, dataset: string, jobId?: string): Promise<number> {
  const { rows } = await db.query('SELECT to_regclass($1) IS NOT NULL AS exists', [`datasets.${dataset}`]);
  if (!rows[0]!.exists) return 0;
  const counted = await db.query(
    `SELECT count(*)::int AS n FROM datasets.${dataset}${jobId ? ' WHERE _intake_job_id = $1' : ''}`,
    jobId ? [jobId] : [],
  );
  return counted.rows[0]!.n;
}

/**
 * What a job published to its dataset: every input position once is n rows, n distinct,
 * min 0, max n-1 (zeros and nulls when it published nothing).
 */
export async function publishedStats(
  db: SqlClient,
  jobId: string,
): Promise<{ n: number; distinct_n: number; min: number | null; max: number | null }> {
  const { rows } = await db.query('SELECT dataset FROM ingest_jobs WHERE job_id = $1', [jobId]);
  const dataset = rows[0]?.dataset;
  const none = { n: 0, distinct_n: 0, min: null, max: null };
  if (!dataset) return none;
  const exists = await db.query('SELECT to_regclass($1) IS NOT NULL AS exists', [`datasets.${dataset}`]);
  if (!exists.rows[0]!.exists) return none;
  const stats = await db.query(
    `SELECT count(*)::int AS n, count(DISTINCT _intake_record_no)::int AS distinct_n, min(_intake_record_no)::int AS min, max(_intake_record_no)::int AS max
     FROM datasets.${dataset} WHERE _intake_job_id = $1`,
    [jobId],
  );
  return stats.rows[0]!;
}

/** Whether a job's stage (its rows before it completes) exists. */
export async function stageExists(db: SqlClient, jobId: string): Promise<boolean> {
  const { rows } = await db.query('SELECT to_regclass($1) IS NOT NULL AS exists', [stageOf(jobId)]);
  return rows[0]!.exists;
}

/** Every record of a job as GET /api/job/{id}/records pages them (its rows in its dataset, once it has completed). */
export async function recordsOf(baseUrl: string, jobId: string): Promise<{ record_no: number; data: Record<string, unknown> }[]> {
  const out: { record_no: number; data: Record<string, unknown> }[] = [];
  let cursor: string | null = null;
  do {
    const page: { status: number; body: any } = await getJson(
      `${baseUrl}/api/job/${jobId}/records?limit=1000${cursor === null ? '' : `&cursor=${cursor}`}`,
    );
    if (page.status !== 200) throw new Error(`GET /records answered ${page.status}`);
    out.push(...page.body.results);
    cursor = page.body.next_cursor;
  } while (cursor !== null);
  return out;
}

/** Polls the status URL until the job is finished (or the timeout passes). */
export async function waitForJob(baseUrl: string, jobId: string, timeoutMs = 30_000): Promise<JobPayload> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status, body } = await getJson<JobPayload>(`${baseUrl}/api/job/${jobId}`);
    if (status !== 200) throw new Error(`GET /api/job/${jobId} answered ${status}`);
    if (TERMINAL_STATUSES.has(body.status)) return body;
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

/**
 * POST /api/sql's answer as the tests compare it: each row an object of its columns (of a name
 * given twice, the later column's value), the columns dropped. Anything else as it is.
 */
export function rowObjects<T>(body: T): T {
  const answer = body as { columns?: { name: string }[]; rows?: unknown[][] } | null;
  if (!answer?.columns || !answer.rows) return body;
  const { columns, rows, ...rest } = answer;
  return { ...rest, rows: rows.map((row) => Object.fromEntries(columns.map((c, i) => [c.name, row[i]]))) } as T;
}
