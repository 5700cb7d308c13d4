import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  CheckpointConflictError,
  incrementProgress,
  markCompleted,
  markFailed,
  markRunning,
  createTracker,
  type Batch,
} from '../src/jobs/tracking.js';
import type { Db } from '../src/storage/db.js';
import { createLocalEvents } from '../src/live/job-events.js';
import { createStage, stageOf } from '../src/storage/datasets.js';
import { findJob, insertJob, type JobRow } from '../src/storage/jobs.js';
import { type LoadOptions } from '../src/datasets/options.js';
import { migrate } from '../src/storage/migrate.js';
import { openPglite } from '../src/storage/pglite.js';
import { openPostgres } from '../src/storage/postgres.js';
import { backends, createSandbox, FAST, getJson, startServer, type Backend, type Sandbox } from './helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

// The tracker of a running Intake with no cache, its events in-process (nobody listens).
const quietTracker = (db: Db) => createTracker(db, undefined, createLocalEvents());
const MIGRATIONS = [
  '001_ingest_jobs',
  '002_ingest_records',
  '003_version_attempts',
  '004_heartbeat',
  '005_row_errors_progress',
  '006_cancel_retry_idempotency',
  '007_list_keyset_indexes',
  '008_datasets',
  '009_read_options',
  '010_import_source',
  '011_connections',
  '012_webhooks_schedules',
  '013_schedule_budget_backoff',
  '014_pre_dataset_jobs',
  '015_dialect_warnings',
  '016_phase',
  '017_sql_login',
];

/** A batch of good records numbered from `from`, each staged whole in one column. */
function batchOf(from: number, records: object[]): Batch {
  const rows = records.map((data, i) => `${from + i}\t${JSON.stringify(data)}\n`).join('');
  return {
    from,
    rows: Buffer.from(rows),
    rowCount: records.length,
    width: 1,
    columns: { from: from === 0 ? 0 : 1, to: 1 },
    errors: [],
    bytesProcessed: 0,
    loadState: '{"columns":[]}',
  };
}

/** The storage Intake itself would open on this sandbox. */
function openDb(backend: Backend, sandbox: Sandbox, poolSize = 4): Promise<Db> {
  return backend.name === 'embedded'
    ? openPglite(sandbox.dataDir)
    : Promise.resolve(openPostgres(sandbox.env.DATABASE_URL!, poolSize, () => {}));
}

/** Everything migrate() may create or touch, to tell that a call changed nothing. */
async function schemaSnapshot(db: Db) {
  const columns = await db.query(
    `SELECT table_name, column_name, ordinal_position, udt_name, character_maximum_length, is_nullable, column_default
     FROM information_schema.columns WHERE table_schema = 'public'
     ORDER BY table_name, ordinal_position`,
  );
  const indexes = await db.query(`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname`);
  const types = await db.query(
    `SELECT t.typname, e.enumlabel FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid ORDER BY t.typname, e.enumsortorder`,
  );
  const applied = await db.query('SELECT version, name, applied_at FROM intake_migrations ORDER BY version');
  return { columns: columns.rows, indexes: indexes.rows, types: types.rows, applied: applied.rows };
}

describe.each(backends())('storage ($name)', (backend) => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  // PGlite's backend fails at COMMIT ("bad buffer ID: 0") after a query nested past its stack
  // (here 400 chained WITH queries, which the SQL guard refuses); its transaction() did not
  // roll back a failed COMMIT, and every later statement was refused until a restart.
  it('a transaction whose COMMIT fails is rolled back: the database answers the next statement', async () => {
    const sandbox = await createSandbox(backend);
    cleanup.push(() => sandbox.dispose());
    const db = await openDb(backend, sandbox);
    cleanup.push(() => db.close());
    const ctes = ['c0 AS (SELECT 1 AS x)'];
    for (let i = 1; i < 400; i++) ctes.push(`c${i} AS (SELECT x FROM c${i - 1})`);
    const deep = `SELECT * FROM (WITH ${ctes.join(', ')} SELECT * FROM c399) q LIMIT 0`;
    // On PostgreSQL it simply runs; on PGlite it fails, at the query or at COMMIT.
    const outcome = await db
      .transaction((tx) => tx.query(deep))
      .then(
        () => 'ran',
        (err: Error) => err.message,
      );
    if (backend.name !== 'embedded') expect(outcome).toBe('ran');
    expect((await db.query<{ ok: number }>('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    await db.transaction(async (tx) => {
      await tx.exec('CREATE TABLE after_failure (a int)');
      await tx.exec('INSERT INTO after_failure SELECT generate_series(1, 1000)');
    });
    expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM after_failure')).rows).toEqual([{ n: 1000 }]);
  });

  it('a transaction that swallowed a failed statement is reported as rolled back, not as committed', async () => {
    const sandbox = await createSandbox(backend);
    cleanup.push(() => sandbox.dispose());
    const db = await openDb(backend, sandbox);
    cleanup.push(() => db.close());
    await db.exec('CREATE TABLE kept (a int)');
    const outcome = db.transaction(async (tx) => {
      await tx.exec('INSERT INTO kept VALUES (1)');
      await tx.query('SELECT 1 / 0').catch(() => {});
    });
    await expect(outcome).rejects.toThrow();
    expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM kept')).rows).toEqual([{ n: 0 }]);
  });

  // Behind the SQL guard: what statements from outside could leave on a session (a role, a
  // setting, a session-level advisory lock, which would stop Intake's own locks of that key)
  // is undone before the connection serves Intake again, whether their transaction failed or not.
  it('an untrusted transaction leaves no role, setting or lock on the session, failed or not', async () => {
    const sandbox = await createSandbox(backend);
    cleanup.push(() => sandbox.dispose());
    const db = await openDb(backend, sandbox, 1); // one connection: the next statement runs where they ran
    cleanup.push(() => db.close());
    const state = `SELECT current_user AS who, current_setting('work_mem') AS work_mem,
      (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242) AS locks`;
    const before = (await db.query(state)).rows[0];
    await db.exec('CREATE ROLE intake_storage_test NOLOGIN').catch(() => {});
    for (const fail of [false, true]) {
      const outcome = db.transaction(
        async (tx) => {
          await tx.query('SELECT pg_advisory_lock(424242)');
          await tx.query("SELECT set_config('work_mem', '77MB', false), set_config('role', 'intake_storage_test', false)");
          if (fail) await tx.query('SELECT 1 / 0');
        },
        { untrusted: true },
      );
      if (fail) await expect(outcome).rejects.toThrow(/division by zero/);
      else await outcome;
      expect((await db.query(state)).rows[0]).toEqual(before);
    }
    // Without it, the lock and the role outlive the transaction.
    await db.transaction((tx) => tx.query("SELECT pg_advisory_lock(424242), set_config('role', 'intake_storage_test', false)"));
    expect((await db.query(state)).rows[0]).toMatchObject({ who: 'intake_storage_test', locks: 1 });
    await db.exec('RESET ROLE; SELECT pg_advisory_unlock_all()');
  });

  it('migrate() applies 001 and 002 once, then nothing; the schema is exactly the migrations', async () => {
    const sandbox = await createSandbox(backend);
    cleanup.push(() => sandbox.dispose());
    const db = await openDb(backend, sandbox);
    cleanup.push(() => db.close());

    const before = await db.query(`SELECT to_regclass('public.ingest_jobs') AS jobs, to_regclass('public.intake_migrations') AS m`);
    expect(before.rows[0]).toEqual({ jobs: null, m: null }); // really a fresh database

    expect(await migrate(db)).toEqual(MIGRATIONS);
    const first = await schemaSnapshot(db);
    expect(first.applied.map((row) => [row.version, row.name])).toEqual([
      [1, '001_ingest_jobs'],
      [2, '002_ingest_records'],
      [3, '003_version_attempts'],
      [4, '004_heartbeat'],
      [5, '005_row_errors_progress'],
      [6, '006_cancel_retry_idempotency'],
      [7, '007_list_keyset_indexes'],
      [8, '008_datasets'],
      [9, '009_read_options'],
      [10, '010_import_source'],
      [11, '011_connections'],
      [12, '012_webhooks_schedules'],
      [13, '013_schedule_budget_backoff'],
      [14, '014_pre_dataset_jobs'],
      [15, '015_dialect_warnings'],
      [16, '016_phase'],
      [17, '017_sql_login'],
    ]);

    expect(await migrate(db)).toEqual([]);
    expect(await schemaSnapshot(db)).toEqual(first);

    const jobColumns = first.columns
      .filter((c) => c.table_name === 'ingest_jobs')
      .map((c) => [c.column_name, c.udt_name, c.character_maximum_length, c.is_nullable]);
    expect(jobColumns).toEqual([
      ['job_id', 'uuid', null, 'NO'],
      ['source_type', 'varchar', 20, 'NO'],
      ['file_name', 'varchar', 255, 'YES'],
      ['status', 'ingest_job_status', null, 'NO'],
      ['submitted_at', 'timestamptz', null, 'NO'],
      ['started_at', 'timestamptz', null, 'YES'],
      ['completed_at', 'timestamptz', null, 'YES'],
      ['records_processed', 'int4', null, 'NO'],
      ['error', 'text', null, 'YES'],
      ['format', 'varchar', 10, 'NO'],
      ['version', 'int4', null, 'NO'],
      ['attempts', 'int4', null, 'NO'],
      ['heartbeat_at', 'timestamptz', null, 'YES'],
      ['records_failed', 'int4', null, 'NO'],
      ['max_errors', 'int4', null, 'NO'],
      ['bytes_total', 'int8', null, 'YES'],
      ['bytes_processed', 'int8', null, 'NO'],
      ['attempts_before_retry', 'int4', null, 'NO'],
      ['dataset', 'text', null, 'YES'],
      ['mode', 'text', null, 'YES'],
      ['merge_key', '_text', null, 'YES'],
      ['declared_types', 'jsonb', null, 'YES'],
      ['widen', 'bool', null, 'NO'],
      ['load_state', 'jsonb', null, 'YES'],
      ['rows_inserted', 'int8', null, 'YES'],
      ['rows_updated', 'int8', null, 'YES'],
      ['read_options', 'jsonb', null, 'YES'],
      ['source_url', 'text', null, 'YES'],
      ['source', 'jsonb', null, 'YES'],
      ['callback_url', 'text', null, 'YES'],
      ['schedule_id', 'uuid', null, 'YES'],
      ['dialect', 'json', null, 'YES'],
      ['warnings', '_text', null, 'YES'],
      ['phase', 'varchar', 20, 'YES'],
    ]);
    // 002 adds format with a default only to fill existing rows, then drops it.
    expect(first.columns.find((c) => c.table_name === 'ingest_jobs' && c.column_name === 'format')!.column_default).toBeNull();

    expect(first.types.filter((t) => t.typname === 'ingest_job_status').map((t) => t.enumlabel)).toEqual([
      'queued',
      'running',
      'completed',
      'failed',
      'canceled',
    ]);

    // The story's (status, submitted_at DESC) index became the keyset indexes of the list (007).
    expect(first.indexes.find((i) => i.indexname === 'idx_ingest_jobs_status_submitted_at')).toBeUndefined();
    expect(first.indexes.find((i) => i.indexname === 'idx_ingest_jobs_status_submitted_at_job_id')?.indexdef).toMatch(
      /ON public\.ingest_jobs USING btree \(status, submitted_at DESC, job_id DESC\)/,
    );
    expect(first.indexes.find((i) => i.indexname === 'idx_ingest_jobs_submitted_at_job_id')?.indexdef).toMatch(
      /ON public\.ingest_jobs USING btree \(submitted_at DESC, job_id DESC\)/,
    );
  });

  describe('tracking transitions', () => {
    let sandbox: Sandbox;
    let db: Db;

    beforeAll(async () => {
      sandbox = await createSandbox(backend);
      db = await openDb(backend, sandbox);
      await migrate(db);
    });

    afterAll(async () => {
      await db?.close();
      await sandbox?.dispose();
    });

    const load: LoadOptions = { dataset: 'people', mode: 'append', key: [], types: {}, widen: false, read: {} };
    const newJob = async () => {
      const job = await insertJob(db, {
        jobId: randomUUID(),
        sourceType: 'csv_upload',
        fileName: 'people.csv',
        format: 'csv',
        maxErrors: 0,
        bytesTotal: 100,
        load,
      });
      await createStage(db, job.job_id, db.kind === 'postgres');
      return job;
    };

    async function runningJob(): Promise<JobRow> {
      const job = await newJob();
      const running = await markRunning(quietTracker(db), job.job_id);
      expect(running?.status).toBe('running');
      return running!;
    }

    /** The job's staged records (see batchOf). */
    async function recordsOf(jobId: string) {
      const { rows } = await db
        .query<{ record_no: number; data: string }>(`SELECT _intake_record_no AS record_no, c0 AS data FROM ${stageOf(jobId)} ORDER BY 1`)
        .catch(() => ({ rows: [] }));
      return rows.map((r) => ({ record_no: r.record_no, data: JSON.parse(r.data) as unknown }));
    }

    const row = async (jobId: string) => (await findJob(db, jobId))!;

    it('markRunning: queued → running with started_at; again keeps started_at (resume)', async () => {
      const job = await newJob();
      expect(job).toMatchObject({ status: 'queued', started_at: null, records_processed: 0 });

      const running = await markRunning(quietTracker(db), job.job_id);
      expect(running).toMatchObject({ job_id: job.job_id, status: 'running', records_processed: 0, completed_at: null });
      expect(running!.started_at).toBeInstanceOf(Date);
      expect(running!.started_at!.getTime()).toBeGreaterThanOrEqual(job.submitted_at.getTime());
      expect(await row(job.job_id)).toEqual(running);

      await incrementProgress(quietTracker(db), job.job_id, batchOf(0, [{ n: 0 }, { n: 1 }]));
      await sleep(5); // a new NOW() would differ
      const resumed = await markRunning(quietTracker(db), job.job_id);
      expect(resumed).toMatchObject({ status: 'running', records_processed: 2 });
      expect(resumed!.started_at).toEqual(running!.started_at);
    });

    it('markRunning: null for a completed, a failed or an unknown job, which stay as they are', async () => {
      const completed = await runningJob();
      expect(await markCompleted(quietTracker(db), completed.job_id)).toBe(true);
      const failed = await newJob();
      expect(await markFailed(quietTracker(db), failed.job_id, 'broken')).toBe(true);

      for (const jobId of [completed.job_id, failed.job_id]) {
        const before = await row(jobId);
        expect(await markRunning(quietTracker(db), jobId)).toBeNull();
        expect(await row(jobId)).toEqual(before);
      }
      expect((await row(completed.job_id)).status).toBe('completed');
      expect((await row(failed.job_id)).status).toBe('failed');

      const unknown = randomUUID();
      expect(await markRunning(quietTracker(db), unknown)).toBeNull();
      expect(await findJob(db, unknown)).toBeUndefined();
    });

    it('incrementProgress: commits a batch, and rejects a stale or foreign checkpoint writing nothing', async () => {
      const job = await runningJob();
      const batch = [{ a: 1 }, { a: 2, nested: { b: [1, 2] } }, { a: 3 }];
      expect((await incrementProgress(quietTracker(db), job.job_id, batchOf(0, batch))).records_processed).toBe(3);
      expect((await row(job.job_id)).records_processed).toBe(3);
      expect(await recordsOf(job.job_id)).toEqual(batch.map((data, i) => ({ record_no: i, data })));

      // Stale: another worker already committed from 0.
      await expect(incrementProgress(quietTracker(db), job.job_id, batchOf(0, [{ stale: 0 }, { stale: 1 }]))).rejects.toThrow(
        CheckpointConflictError,
      );
      // Ahead of the real checkpoint: numbers 10, 11 are free, so only the guard stops the write.
      await expect(incrementProgress(quietTracker(db), job.job_id, batchOf(10, [{ ahead: 0 }, { ahead: 1 }]))).rejects.toThrow(
        CheckpointConflictError,
      );
      expect((await row(job.job_id)).records_processed).toBe(3);
      expect(await recordsOf(job.job_id)).toEqual(batch.map((data, i) => ({ record_no: i, data })));

      expect((await incrementProgress(quietTracker(db), job.job_id, batchOf(3, [{ a: 4 }]))).records_processed).toBe(4);
      expect((await recordsOf(job.job_id)).map((r) => r.record_no)).toEqual([0, 1, 2, 3]);
    });

    it('incrementProgress: rejects a job that is not running (queued, completed)', async () => {
      const queued = await newJob();
      await expect(incrementProgress(quietTracker(db), queued.job_id, batchOf(0, [{ a: 1 }]))).rejects.toThrow(CheckpointConflictError);
      expect(await row(queued.job_id)).toEqual(queued);
      expect(await recordsOf(queued.job_id)).toEqual([]);

      const completed = await runningJob();
      expect(await markCompleted(quietTracker(db), completed.job_id)).toBe(true);
      await expect(incrementProgress(quietTracker(db), completed.job_id, batchOf(0, [{ a: 1 }]))).rejects.toThrow(CheckpointConflictError);
      expect((await row(completed.job_id)).records_processed).toBe(0);
      expect(await recordsOf(completed.job_id)).toEqual([]);

      await expect(incrementProgress(quietTracker(db), randomUUID(), batchOf(0, [{ a: 1 }]))).rejects.toThrow(CheckpointConflictError);
    });

    it('incrementProgress: two workers from the same checkpoint at once → exactly one wins', async () => {
      for (let round = 0; round < 5; round++) {
        const job = await runningJob();
        const results = await Promise.allSettled([
          incrementProgress(
            quietTracker(db),
            job.job_id,
            batchOf(0, [
              { w: 'a', i: 0 },
              { w: 'a', i: 1 },
              { w: 'a', i: 2 },
            ]),
          ),
          incrementProgress(
            quietTracker(db),
            job.job_id,
            batchOf(0, [
              { w: 'b', i: 0 },
              { w: 'b', i: 1 },
            ]),
          ),
        ]);
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(won).toHaveLength(1);
        expect(lost).toHaveLength(1);
        expect(lost[0]!.reason).toBeInstanceOf(CheckpointConflictError);

        const counter = (await row(job.job_id)).records_processed;
        const records = await recordsOf(job.job_id);
        expect(counter).toBe((won[0] as PromiseFulfilledResult<{ records_processed: number }>).value.records_processed);
        expect(records).toHaveLength(counter);
        expect(new Set(records.map((r) => (r.data as { w: string }).w)).size).toBe(1); // one worker's batch only
      }
    });

    it('markCompleted: only from running, only once', async () => {
      const queued = await newJob();
      expect(await markCompleted(quietTracker(db), queued.job_id)).toBe(false);
      expect(await row(queued.job_id)).toEqual(queued);

      const running = await runningJob();
      expect(await markCompleted(quietTracker(db), running.job_id)).toBe(true);
      const done = await row(running.job_id);
      expect(done).toMatchObject({ status: 'completed', started_at: running.started_at, error: null });
      expect(done.completed_at).toBeInstanceOf(Date);
      expect(done.completed_at!.getTime()).toBeGreaterThanOrEqual(running.started_at!.getTime());

      await sleep(5);
      expect(await markCompleted(quietTracker(db), running.job_id)).toBe(false);
      expect(await row(running.job_id)).toEqual(done);
      expect(await markCompleted(quietTracker(db), randomUUID())).toBe(false);
    });

    it('markFailed: from queued or running, never from a finished job', async () => {
      const completed = await runningJob();
      expect(await markCompleted(quietTracker(db), completed.job_id)).toBe(true);
      const done = await row(completed.job_id);
      expect(await markFailed(quietTracker(db), completed.job_id, 'too late')).toBe(false);
      expect(await row(completed.job_id)).toEqual(done);
      expect(done.error).toBeNull();

      const queued = await newJob();
      expect(await markFailed(quietTracker(db), queued.job_id, 'line 4: expected 2 fields, got 1')).toBe(true);
      const failed = await row(queued.job_id);
      expect(failed).toMatchObject({ status: 'failed', error: 'line 4: expected 2 fields, got 1', started_at: null });
      expect(failed.completed_at).toBeInstanceOf(Date);
      expect(await markFailed(quietTracker(db), queued.job_id, 'again')).toBe(false);
      expect((await row(queued.job_id)).error).toBe('line 4: expected 2 fields, got 1');

      const running = await runningJob();
      expect(await markFailed(quietTracker(db), running.job_id, 'worker gave up')).toBe(true);
      expect(await row(running.job_id)).toMatchObject({ status: 'failed', error: 'worker gave up', started_at: running.started_at });
      expect(await markFailed(quietTracker(db), randomUUID(), 'nobody')).toBe(false);
    });
  });
});

const hasPostgres = Boolean(process.env.DATABASE_URL);
if (!hasPostgres) {
  console.warn('DATABASE_URL is not set: the PostgreSQL-only storage tests (concurrent migrate, database unavailable → 503) are skipped');
}

describe.skipIf(!hasPostgres)('storage (PostgreSQL only)', () => {
  const postgres: Backend = { name: 'postgres' };
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn().catch((err: unknown) => console.error('cleanup failed', err));
  });

  it('several processes migrating one fresh database at once apply each migration exactly once', async () => {
    for (let round = 0; round < 3; round++) {
      const sandbox = await createSandbox(postgres);
      cleanup.push(() => sandbox.dispose());
      const dbs = Array.from({ length: 4 }, () => openPostgres(sandbox.env.DATABASE_URL!, 4, () => {}));
      cleanup.push(() => Promise.all(dbs.map((db) => db.close())));

      const results = await Promise.allSettled(dbs.map((db) => migrate(db)));
      expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
      const applied = results.flatMap((r) => (r as PromiseFulfilledResult<string[]>).value);
      expect([...applied].sort()).toEqual(MIGRATIONS);
      // One process did all the work; the others waited on the lock and found nothing to do.
      expect(results.map((r) => (r as PromiseFulfilledResult<string[]>).value.length).sort()).toEqual([0, 0, 0, MIGRATIONS.length]);

      const { rows } = await dbs[0]!.query<{ version: number; name: string }>(
        'SELECT version, name FROM intake_migrations ORDER BY version',
      );
      expect(rows).toEqual([
        { version: 1, name: '001_ingest_jobs' },
        { version: 2, name: '002_ingest_records' },
        { version: 3, name: '003_version_attempts' },
        { version: 4, name: '004_heartbeat' },
        { version: 5, name: '005_row_errors_progress' },
        { version: 6, name: '006_cancel_retry_idempotency' },
        { version: 7, name: '007_list_keyset_indexes' },
        { version: 8, name: '008_datasets' },
        { version: 9, name: '009_read_options' },
        { version: 10, name: '010_import_source' },
        { version: 11, name: '011_connections' },
        { version: 12, name: '012_webhooks_schedules' },
        { version: 13, name: '013_schedule_budget_backoff' },
        { version: 14, name: '014_pre_dataset_jobs' },
        { version: 15, name: '015_dialect_warnings' },
        { version: 16, name: '016_phase' },
        { version: 17, name: '017_sql_login' },
      ]);
      for (const fn of cleanup.splice(0).reverse()) await fn();
    }
  });

  it('answers 503 {detail, code: database_unavailable} while the database refuses connections, and recovers without a restart', async () => {
    const sandbox = await createSandbox(postgres);
    cleanup.push(() => sandbox.dispose());
    sandbox.admin!.on('error', () => {}); // its idle connections (if any) are terminated below
    const server = await startServer(sandbox, { WORKER_CONCURRENCY: '0' });
    cleanup.push(() => server.close());
    const name = new URL(sandbox.env.DATABASE_URL!).pathname.slice(1);
    expect(name).toMatch(/^intake_test_\w+$/);

    expect((await getJson(`${server.url}/api/jobs`)).status).toBe(200);

    // Through the server's default database, as an operator would.
    const operator = new pg.Client({ connectionString: process.env.DATABASE_URL });
    operator.on('error', () => {});
    await operator.connect();
    cleanup.push(() => operator.end());
    const reopen = () => operator.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true CONNECTION LIMIT -1`);
    cleanup.push(reopen); // runs first on the way out, even when an assertion below fails

    // CONNECTION LIMIT 0 alone does not stop a superuser (Intake connects as whoever DATABASE_URL
    // names, here postgres); ALLOW_CONNECTIONS false refuses every new connection.
    await operator.query(`ALTER DATABASE ${name} CONNECTION LIMIT 0 ALLOW_CONNECTIONS false`);
    await operator.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [name]);
    // Wait until the backends are gone, so the next request needs a new connection.
    for (let i = 0; i < 100; i++) {
      const { rows } = await operator.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [name]);
      if (rows[0].n === 0) break;
      await sleep(20);
    }
    // A direct connection is refused: the outage is real.
    const probe = new pg.Client({ connectionString: sandbox.env.DATABASE_URL });
    probe.on('error', () => {});
    await expect(probe.connect()).rejects.toMatchObject({ code: '55000' });

    const list = await getJson(`${server.url}/api/jobs`);
    const one = await getJson(`${server.url}/api/job/${randomUUID()}`);
    await reopen();

    for (const [what, res] of [
      ['GET /api/jobs', list],
      ['GET /api/job/:id', one],
    ] as const) {
      expect.soft(res.status, what).toBe(503);
      expect.soft(res.body, what).toEqual({ detail: expect.any(String), code: 'database_unavailable' });
      const text = JSON.stringify(res.body);
      expect(text, what).not.toMatch(/select|ingest_jobs|intake_test|accepting connections|55000|\bat \S+:\d+|\.ts\b|\.js\b|stack/i);
    }

    // The pool makes new connections once the database takes them again: no restart needed.
    let status = 0;
    for (const deadline = Date.now() + 5000; Date.now() < deadline; await sleep(100)) {
      status = (await getJson(`${server.url}/api/jobs`)).status;
      if (status === 200) break;
    }
    expect(status).toBe(200);
    expect((await getJson(`${server.url}/api/job/${randomUUID()}`)).status).toBe(404);
  });
});

// What reaches the disk when the embedded database commits, read off the system calls (strace:
// .ci/run installs it; the fast suite, run where it may not be, leaves this to the full one). (PGlite's
// own Node filesystem never flushed: 20 commits made 21 writes and no fsync or fdatasync.)
describe.skipIf(FAST)('embedded commits reach the disk', () => {
  const script = (dataDir: string, fsync: boolean) => `
    import { openPglite } from './src/storage/pglite.ts';
    const db = await openPglite(${JSON.stringify(dataDir)}, { fsync: ${fsync} });
    await db.exec('CREATE TABLE t (n int)');
    await new Promise((resolve) => setTimeout(resolve, 200));
    process.stdout.write('commits start\\n');
    for (let n = 0; n < 20; n++) await db.query('INSERT INTO t VALUES ($1)', [n]);
    process.stdout.write('commits end\\n');
    await db.close();`;

  /** The fdatasync calls made between the two marks, under strace. */
  function syncsDuringCommits(fsync: boolean): number {
    const dir = mkdtempSync(join(tmpdir(), 'intake-fsync-'));
    try {
      const trace = join(dir, 'trace');
      execFileSync(
        'strace',
        [
          '-f',
          '-qq',
          '-e',
          'trace=fsync,fdatasync,write',
          '-o',
          trace,
          process.execPath,
          '--import',
          'tsx',
          '--input-type=module',
          '-e',
          script(join(dir, 'data'), fsync),
        ],
        { cwd: ROOT },
      );
      const lines = readFileSync(trace, 'utf8').split('\n');
      const start = lines.findIndex((line) => line.includes('"commits start\\n"'));
      const end = lines.findIndex((line) => line.includes('"commits end\\n"'));
      expect(start).toBeGreaterThan(-1);
      expect(end).toBeGreaterThan(start);
      return lines.slice(start, end).filter((line) => /\b(fsync|fdatasync)\(/.test(line)).length;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('with EMBEDDED_FSYNC (the default) each commit is flushed before it returns', () => {
    expect(syncsDuringCommits(true)).toBeGreaterThanOrEqual(20);
  }, 60_000);

  it('with EMBEDDED_FSYNC=false nothing is flushed at commit', () => {
    expect(syncsDuringCommits(false)).toBe(0);
  }, 60_000);
});
