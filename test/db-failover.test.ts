import { randomUUID } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { DatabaseUnavailableError, type Queryable } from '../src/storage/db.js';
import { openPostgres } from '../src/storage/postgres.js';
import {
  createSandbox,
  getJson,
  makeCsv,
  postRecords,
  publishedStats,
  scaleOutAvailable,
  startServer,
  upload,
  type Backend,
  type Sandbox,
} from './helpers.js';
import { startIntakeProcess, startWorkerProcess } from './process.js';

// What an operator runs to throw every session off a database (the issuing one excepted).
const TERMINATE = 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()';
const ROWS = 200_000;

interface Row {
  status: string;
  records_processed: number;
  attempts: number;
  started_at: Date | null;
}

interface Proc {
  child: { exitCode: number | null; signalCode: NodeJS.Signals | null };
  output(): string;
}

function alive(proc: Proc): boolean {
  return proc.child.exitCode === null && proc.child.signalCode === null;
}

async function jobRow(sandbox: Sandbox, jobId: string): Promise<Row> {
  const { rows } = await sandbox.admin!.query<Row>(
    'SELECT status, records_processed, attempts, started_at FROM ingest_jobs WHERE job_id = $1',
    [jobId],
  );
  return rows[0]!;
}

/** Polls the job row until `done`; fails at once if one of `procs` exits, naming it with its output. */
async function waitForRow(
  sandbox: Sandbox,
  jobId: string,
  procs: Proc[],
  done: (row: Row) => boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<Row> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = procs.find((proc) => !alive(proc));
    if (dead)
      throw new Error(`a process exited (${dead.child.exitCode ?? dead.child.signalCode}) before ${what}:\n${dead.output().slice(-3000)}`);
    const row = await jobRow(sandbox, jobId);
    if (done(row)) return row;
    if (Date.now() > deadline) throw new Error(`${what}: not reached in ${timeoutMs} ms; last row ${JSON.stringify(row)}`);
    await sleep(10);
  }
}

/** Every record_no once: n rows, n distinct. */
async function recordStats(sandbox: Sandbox, jobId: string) {
  const { n, distinct_n } = await publishedStats(sandbox.admin!, jobId);
  return { n, distinct_n };
}

/**
 * Terminates every backend of the sandbox's database `times` times while the job is being
 * ingested, each after more of it has committed: the workers' connections die in the middle
 * of their transactions, COPYs and queries.
 */
async function terminateWhileIngesting(sandbox: Sandbox, jobId: string, procs: Proc[], times: number): Promise<void> {
  for (let k = 1; k <= times; k++) {
    const row = await waitForRow(
      sandbox,
      jobId,
      procs,
      (r) => r.records_processed >= (ROWS * k) / (times + 2) || (r.status !== 'queued' && r.status !== 'running'),
      `${k}/${times + 2} committed`,
    );
    expect(row.status, `termination ${k}`).toBe('running');
    const { rowCount } = await sandbox.admin!.query(TERMINATE);
    expect(rowCount, `termination ${k}: backends`).toBeGreaterThan(0);
  }
}

/**
 * The job ran to completion exactly once over every termination: exact count, no duplicates,
 * no attempt counted but the first; and `worker` waited each loss out as the database's.
 */
async function expectCompletedOnce(sandbox: Sandbox, jobId: string, worker: Proc, procs: Proc[], apiUrl: string): Promise<void> {
  await waitForRow(sandbox, jobId, procs, (r) => r.status !== 'queued' && r.status !== 'running', 'the job finished');
  const { status, body } = await getJson(`${apiUrl}/api/job/${jobId}`);
  expect(status).toBe(200);
  expect(body).toMatchObject({ status: 'completed', records_processed: ROWS, records_failed: 0, error: null, attempts: 1 });
  expect(await recordStats(sandbox, jobId)).toEqual({ n: ROWS, distinct_n: ROWS });
  const waits = worker
    .output()
    .split('\n')
    .filter((line) => line.includes('database unavailable; the job resumes when it is back'));
  const causes = new Set(waits.map((line) => (JSON.parse(line) as { err?: { message?: string } }).err?.message));
  console.log(`the worker waited for the database ${waits.length} times, after: ${[...causes].join(' | ')}`);
  expect(waits.length).toBeGreaterThan(0);
  expect(worker.output()).not.toContain('job run failed unexpectedly');
}

/**
 * A TCP proxy in front of PostgreSQL that can hold what clients send and then drop every
 * connection: a network failure, with no message from the server first.
 */
async function startProxy(databaseUrl: string) {
  const target = new URL(databaseUrl);
  const sockets = new Set<Socket>();
  let holding = false;
  let held = '';
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    client.on('data', (chunk: Buffer) => {
      if (holding) held += chunk.toString('latin1');
      else upstream.write(chunk);
    });
    upstream.pipe(client);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = new URL(databaseUrl);
  url.host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    url: url.toString(),
    hold() {
      holding = true;
    },
    /** What the clients sent while held, as text (the protocol's queries are readable in it). */
    held: () => held,
    /** Drops every connection at once, and forwards again. */
    drop() {
      for (const socket of sockets) socket.destroy();
      holding = false;
      held = '';
    },
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not seen in ${timeoutMs} ms`);
    await sleep(10);
  }
}

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  // Every step runs, even when one fails: no process, server or database is left behind.
  const errors: unknown[] = [];
  for (const fn of cleanup.splice(0).reverse()) {
    try {
      await fn();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0) throw errors[0];
});

async function sandboxed(name: Backend['name']): Promise<Sandbox> {
  const sandbox = await createSandbox({ name });
  cleanup.push(() => sandbox.dispose());
  sandbox.admin!.on('error', () => {}); // its idle connections are terminated too
  return sandbox;
}

describe.skipIf(!process.env.DATABASE_URL)('connection loss (PostgreSQL, in-process workers)', () => {
  it('intake serve: every backend terminated 4 times mid-ingest; the process lives, the job completes once, exactly', async () => {
    const sandbox = await sandboxed('postgres');
    // The checked path: its batches commit between the terminations.
    const proc = await startIntakeProcess({ ...sandbox.env, BATCH_SIZE: '2000', FAST_PATH_MAX_BYTES: '0' });
    cleanup.push(() => proc.stop('SIGKILL'));
    const res = await upload(proc.url, 'big.csv', makeCsv(ROWS));
    expect(res.status).toBe(202);
    const jobId: string = res.body.job_id;

    await terminateWhileIngesting(sandbox, jobId, [proc], 4);
    await expectCompletedOnce(sandbox, jobId, proc, [proc], proc.url);
    expect(await proc.stop('SIGTERM')).toBe(0);
  }, 120_000);

  it('a connection terminated while idle inside a transaction: every next step fails as DatabaseUnavailableError, and the pool goes on', async () => {
    const sandbox = await sandboxed('postgres');
    const db = openPostgres(sandbox.env.DATABASE_URL!, 2, () => {});
    cleanup.push(() => db.close());
    await db.exec('CREATE TABLE t (x integer)');
    const operator = new pg.Client({ connectionString: sandbox.env.DATABASE_URL });
    await operator.connect();
    cleanup.push(() => operator.end());
    const others = 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()';

    const steps: Record<string, (tx: Queryable) => Promise<unknown>> = {
      query: (tx) => tx.query('SELECT $1::int AS x', [1]),
      queryText: (tx) => tx.queryText('SELECT $1::int', [1]),
      exec: (tx) => tx.exec('SELECT 1; SELECT 2'),
      copyFrom: (tx) => tx.copyFrom('COPY t (x) FROM STDIN', '1\n2\n'),
      COMMIT: async () => {},
    };
    for (const [name, step] of Object.entries(steps)) {
      const outcome = db.transaction(async (tx) => {
        await tx.query('INSERT INTO t VALUES ($1)', [0]);
        await operator.query(TERMINATE);
        await until(async () => (await operator.query(others)).rows[0].n === 0, 'the backends gone');
        await sleep(50); // the client has read the end of its connection
        await step(tx);
      });
      await expect(outcome, name).rejects.toBeInstanceOf(DatabaseUnavailableError);
    }
    expect((await db.query('SELECT count(*)::int AS n FROM t')).rows).toEqual([{ n: 0 }]);
  });

  it('a request whose connection is terminated, or dropped, inside its transaction answers 503, never 500', async () => {
    const sandbox = await sandboxed('postgres');
    const proxy = await startProxy(sandbox.env.DATABASE_URL!);
    cleanup.push(() => proxy.close());
    const server = await startServer(sandbox, { DATABASE_URL: proxy.url, WORKER_CONCURRENCY: '0' });
    cleanup.push(() => server.close());
    const post = (path: string) => fetch(server.url + path, { method: 'POST' });

    const submitted = await postRecords(server.url, '[{"a": 1}]');
    expect(submitted.status).toBe(202);
    const jobId: string = submitted.body.job_id;
    expect((await post(`/api/job/${jobId}/cancel`)).status).toBe(200);

    // Terminated by the server: the retry's UPDATE waits for the row lock held here, inside
    // its transaction, when this session terminates every other.
    const locker = new pg.Client({ connectionString: sandbox.env.DATABASE_URL });
    locker.on('error', () => {});
    await locker.connect();
    cleanup.push(() => locker.end());
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM ingest_jobs WHERE job_id = $1 FOR UPDATE', [jobId]);
    const retrying = post(`/api/job/${jobId}/retry`);
    const waiting = `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`;
    await until(async () => (await locker.query(waiting)).rows[0].n === 1, 'the retry waiting for the row lock');
    await locker.query(TERMINATE);
    await locker.query('ROLLBACK');
    const terminated = await retrying;
    expect(terminated.status).toBe(503);
    expect(await terminated.json()).toMatchObject({ code: 'database_unavailable' });

    // Dropped by the network while the BEGIN of a submit's transaction is on its way (the
    // read before it leaves a connection idle in the pool for the submit to take).
    await until(async () => (await getJson(`${server.url}/api/job/${jobId}`)).status === 200, 'a status read answered');
    proxy.hold();
    const submitting = postRecords(server.url, '[{"a": 2}]');
    // A background query (the sweeper, the schedule tick) may be held too: wait for the submit's
    // BEGIN, or for the startup of the connection it opens when the pool has none idle.
    await until(() => /BEGIN|database\0/.test(proxy.held()), 'the BEGIN held by the proxy');
    proxy.drop();
    const dropped = await submitting;
    expect(dropped.status).toBe(503);
    expect(dropped.body).toMatchObject({ code: 'database_unavailable' });

    // The same server answers again, with new connections.
    expect((await post(`/api/job/${jobId}/retry`)).status).toBe(202);
    // Also 503, never 500: a status read polled above that took a connection terminated while idle.
    expect(server.statuses.filter((status) => status >= 500 && status !== 503)).toEqual([]);
  });

  it('WORKER_CONCURRENCY=0 without Redis: a dispatch keeps nothing (the row is the job), and a process with workers takes it up', async () => {
    const sandbox = await sandboxed('postgres');
    const server = await startServer(sandbox, { WORKER_CONCURRENCY: '0' });
    cleanup.push(() => server.close());
    const submitted = await postRecords(server.url, '[{"a": 1}, {"a": 2}]');
    expect(submitted.status).toBe(202);

    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 200_000; i++) await server.intake.dispatcher.dispatch(randomUUID());
    gc();
    const grownMb = (process.memoryUsage().heapUsed - before) / 1024 ** 2;
    console.log(`heap grew ${grownMb.toFixed(2)} MB over 200,000 dispatches`);
    expect(grownMb, 'heap growth over 200,000 dispatches, in MB').toBeLessThan(4);
    await server.close();
    cleanup.pop();

    const proc = await startIntakeProcess(sandbox.env);
    cleanup.push(() => proc.stop('SIGKILL'));
    const job = await waitForRow(sandbox, submitted.body.job_id, [proc], (r) => r.status === 'completed', 'taken up at start', 30_000);
    expect(job.records_processed).toBe(2);
  });
});

describe.skipIf(!scaleOutAvailable())('connection loss (scale-out)', () => {
  it('intake worker: every backend terminated 4 times mid-ingest; the worker lives, the job completes once, exactly', async () => {
    const sandbox = await sandboxed('scale-out');
    const env = { ...sandbox.env, BATCH_SIZE: '2000' };
    const api = await startIntakeProcess({ ...env, WORKER_CONCURRENCY: '0' });
    cleanup.push(() => api.stop('SIGKILL'));
    const worker = await startWorkerProcess(env);
    cleanup.push(() => worker.stop('SIGKILL'));
    const res = await upload(api.url, 'big.csv', makeCsv(ROWS));
    expect(res.status).toBe(202);
    const jobId: string = res.body.job_id;

    await terminateWhileIngesting(sandbox, jobId, [api, worker], 4);
    await expectCompletedOnce(sandbox, jobId, worker, [api, worker], api.url);
    expect(await worker.stop('SIGTERM')).toBe(0);
    expect(await api.stop('SIGTERM')).toBe(0);
  }, 120_000);

  it('a job canceled while running and retried at once starts again at once, not at the next reconciler pass', async () => {
    const sandbox = await sandboxed('scale-out');
    const env = { ...sandbox.env, BATCH_SIZE: '2000', RECONCILE_INTERVAL_MS: '600000' };
    const api = await startIntakeProcess({ ...env, WORKER_CONCURRENCY: '0' });
    cleanup.push(() => api.stop('SIGKILL'));
    const worker = await startWorkerProcess(env);
    cleanup.push(() => worker.stop('SIGKILL'));
    const post = (path: string) => fetch(api.url + path, { method: 'POST' });
    const res = await upload(api.url, 'big.csv', makeCsv(ROWS));
    const jobId: string = res.body.job_id;
    await waitForRow(sandbox, jobId, [api, worker], (r) => r.records_processed > 0, 'the first run committing');

    // The worker is frozen while the job is canceled and retried, so its run is still active
    // in BullMQ when the retry enqueues the job again (well within the BullMQ lock). Frozen
    // between two batches: frozen inside a batch's UPDATE of the job row, it would hold the row
    // lock that the cancel waits for, and neither would ever go on.
    const holdsJobRow = async () => {
      const { rows } = await sandbox.admin!.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_locks
         WHERE database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND relation = 'ingest_jobs'::regclass AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()`,
      );
      return rows[0]!.n > 0;
    };
    for (let tries = 0; ; tries++) {
      worker.child.kill('SIGSTOP');
      if (!(await holdsJobRow())) break;
      worker.child.kill('SIGCONT');
      if (tries === 100) throw new Error('the worker was inside an update of the job row at each of 100 tries');
      await sleep(15);
    }
    try {
      expect((await post(`/api/job/${jobId}/cancel`)).status).toBe(200);
      expect((await post(`/api/job/${jobId}/retry`)).status).toBe(202);
    } finally {
      worker.child.kill('SIGCONT');
    }
    const resumedAt = Date.now();
    const started = await waitForRow(sandbox, jobId, [api, worker], (r) => r.started_at !== null, 'the retried run started', 5000);
    console.log(`the retried run started ${started.started_at!.getTime() - resumedAt} ms after the worker resumed`);
    await waitForRow(sandbox, jobId, [api, worker], (r) => r.status !== 'queued' && r.status !== 'running', 'the retried run finished');
    const { body } = await getJson(`${api.url}/api/job/${jobId}`);
    expect(body).toMatchObject({ status: 'completed', records_processed: ROWS, error: null });
    expect(await recordStats(sandbox, jobId)).toEqual({ n: ROWS, distinct_n: ROWS });
  }, 120_000);
});
