/**
 * Upgrading in place: a database made by the release before datasets (migrations 001–007,
 * jobs with their records in ingest_records) is migrated by Intake at start and loses nothing.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { JobPayload } from '../src/core/job.js';
import type { Db } from '../src/storage/db.js';
import { loadMigrations, migrate } from '../src/storage/migrate.js';
import { openPglite } from '../src/storage/pglite.js';
import { openPostgres } from '../src/storage/postgres.js';
import { backends, createSandbox, getJson, recordsOf, startServer, waitForJob, type Sandbox } from './helpers.js';

describe.each(backends().filter((b) => b.name !== 'scale-out'))('upgrade from migrations 001–007 ($name)', (backend) => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  /** The sandbox's database as the release before datasets left it: migrated to 007, with jobs of every kind. */
  async function oldDatabase(sandbox: Sandbox) {
    let db: Db;
    if (backend.name === 'embedded') {
      rmSync(join(sandbox.dataDir, 'pgdata'), { recursive: true, force: true }); // the sandbox's copy is migrated already
      db = await openPglite(sandbox.dataDir);
    } else db = openPostgres(sandbox.env.DATABASE_URL!, 2, () => {});
    try {
      expect(
        await migrate(
          db,
          loadMigrations().filter((m) => m.version <= 7),
        ),
      ).toHaveLength(7);
      const completed = randomUUID();
      const failed = randomUUID();
      const queued = randomUUID();
      await db.query(
        `INSERT INTO ingest_jobs (job_id, source_type, file_name, format, status, records_processed, records_failed, max_errors, bytes_total, bytes_processed, started_at, completed_at, error, version, attempts)
         VALUES ($1, 'csv_upload', 'Old Orders.csv', 'csv', 'completed', 3, 0, 0, 40, 40, NOW(), NOW(), NULL, 4, 1),
                ($2, 'json_api', NULL, 'json', 'failed', 1, 1, 0, 30, 30, NOW(), NOW(), 'invalid JSON in record 1', 4, 1),
                ($3, 'csv_upload', 'later.csv', 'csv', 'queued', 0, 0, 0, 20, 0, NULL, NULL, NULL, 1, 0)`,
        [completed, failed, queued],
      );
      // The old release kept each record as a JSON object of strings (CSV) or as posted (JSON).
      await db.query(
        `INSERT INTO ingest_records (job_id, record_no, data) VALUES
           ($1, 0, '{"id": "1", "Unit Price": "9.90"}'), ($1, 1, '{"id": "2", "Unit Price": "12"}'), ($1, 2, '{"id": "3", "Unit Price": ""}'),
           ($2, 0, '{"n": 123456789012345678901234567890}')`,
        [completed, failed],
      );
      await db.query(
        `INSERT INTO ingest_errors (job_id, record_no, line, message, excerpt) VALUES ($1, 1, 1, 'invalid JSON in record 1', '{"n":')`,
        [failed],
      );
      const uploads = join(sandbox.dataDir, 'uploads');
      mkdirSync(uploads, { recursive: true });
      writeFileSync(join(uploads, queued), 'id,v\n1,a\n2,b\n');
      return { completed, failed, queued };
    } finally {
      await db.close();
    }
  }

  it('migrates in place: old jobs and their records stay readable; a job still queued loads into a dataset', async () => {
    const sandbox = await createSandbox(backend);
    cleanup.push(() => sandbox.dispose());
    const { completed, failed, queued } = await oldDatabase(sandbox);

    const server = await startServer(sandbox);
    cleanup.push(() => server.close());
    const old = (await getJson<JobPayload>(`${server.url}/api/job/${completed}`)).body;
    expect(old).toMatchObject({
      status: 'completed',
      records_processed: 3,
      dataset: null,
      mode: null,
      key: null,
      rows_inserted: null,
      rows_updated: null,
      version: 4,
    });
    expect(await recordsOf(server.url, completed)).toEqual([
      { record_no: 0, data: { id: '1', 'Unit Price': '9.90' } },
      { record_no: 1, data: { id: '2', 'Unit Price': '12' } },
      { record_no: 2, data: { id: '3', 'Unit Price': '' } },
    ]);
    const exact = await (await fetch(`${server.url}/api/job/${failed}/records`)).text();
    expect(exact).toBe('{"results":[{"record_no":0,"data":{"n": 123456789012345678901234567890}}],"next_cursor":null}');
    expect((await getJson(`${server.url}/api/job/${failed}/errors`)).body.results).toEqual([
      { line: 1, record_no: 1, message: 'invalid JSON in record 1', excerpt: '{"n":' },
    ]);
    expect((await getJson(`${server.url}/api/jobs`)).body.results.map((j: JobPayload) => j.job_id).sort()).toEqual(
      [completed, failed, queued].sort(),
    );

    // Queued before the upgrade: it runs now, into the dataset its file names.
    const ran = await waitForJob(server.url, queued);
    expect(ran).toMatchObject({ status: 'completed', dataset: 'later', mode: 'append', rows_inserted: 2 });
    expect(await recordsOf(server.url, queued)).toEqual([
      { record_no: 0, data: { id: 1, v: 'a' } },
      { record_no: 1, data: { id: 2, v: 'b' } },
    ]);
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
  });
});
