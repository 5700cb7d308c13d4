/**
 * Upgrading in place: a database made by the release before datasets (migrations 001–007,
 * jobs with their records in ingest_records) is migrated by Intake at start and loses nothing:
 * each finished job's records move into a dataset of its own and read back as they were, a
 * job left queued or running loads into the dataset its file names, and ingest_records is gone.
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
      const posted = randomUUID();
      const running = randomUUID();
      const empty = randomUUID();
      await db.query(
        `INSERT INTO ingest_jobs (job_id, source_type, file_name, format, status, records_processed, records_failed, max_errors, bytes_total, bytes_processed, started_at, completed_at, error, version, attempts, heartbeat_at)
         VALUES ($1, 'csv_upload', 'Old Orders.csv', 'csv', 'completed', 3, 0, 0, 40, 40, NOW(), NOW(), NULL, 4, 1, NULL),
                ($2, 'json_api', NULL, 'json', 'failed', 1, 1, 0, 30, 30, NOW(), NOW(), 'invalid JSON in record 1', 4, 1, NULL),
                ($3, 'csv_upload', 'later.csv', 'csv', 'queued', 0, 0, 0, 20, 0, NULL, NULL, NULL, 1, 0, NULL),
                ($4, 'json_upload', 'select.json', 'json', 'completed', 3, 0, 0, 200, 200, NOW(), NOW(), NULL, 4, 1, NULL),
                ($5, 'csv_upload', 'Half Done.csv', 'csv', 'running', 2, 1, 5, 24, 12, NOW() - INTERVAL '1 hour', NULL, NULL, 3, 1, NOW() - INTERVAL '1 hour'),
                ($6, 'csv_upload', 'nothing.csv', 'csv', 'completed', 0, 0, 0, 0, 0, NOW(), NOW(), NULL, 3, 1, NULL)`,
        [completed, failed, queued, posted, running, empty],
      );
      // The old release kept each record as a JSON object of strings (CSV) or as posted (JSON).
      await db.query(
        `INSERT INTO ingest_records (job_id, record_no, data) VALUES
           ($1, 0, '{"id": "1", "Unit Price": "9.90"}'), ($1, 1, '{"id": "2", "Unit Price": "12"}'), ($1, 2, '{"id": "3", "Unit Price": ""}'),
           ($2, 0, '{"n": 123456789012345678901234567890}'),
           ($3, 2, '{"code": "007", "n": 1.50, "ok": true, "tags": ["a"], "mixed": 1, "when": "2026-01-31", "Ünit": null, "": "blank"}'),
           ($3, 0, '{"code": "042", "n": 2, "ok": false, "tags": {"b": [1, 2]}, "mixed": "one", "when": "2026-02-01", "Ünit": "x", "": ""}'),
           ($3, 5, '{"code": "9", "n": -3e2, "ok": null, "tags": null, "mixed": [1], "when": "not a date", "Ünit": "y"}'),
           ($4, 0, '{"id": "1", "v": "x"}'), ($4, 1, '{"id": "2", "v": "y"}')`,
        [completed, failed, posted, running],
      );
      await db.query(
        `INSERT INTO ingest_errors (job_id, record_no, line, message, excerpt) VALUES
           ($1, 1, 1, 'invalid JSON in record 1', '{"n":'), ($2, 2, 4, 'wrong number of fields', '3')`,
        [failed, running],
      );
      const uploads = join(sandbox.dataDir, 'uploads');
      mkdirSync(uploads, { recursive: true });
      writeFileSync(join(uploads, queued), 'id,v\n1,a\n2,b\n');
      writeFileSync(join(uploads, running), 'id,v\n1,x\n2,y\n3,z\n');
      return { completed, failed, queued, posted, running, empty };
    } finally {
      await db.close();
    }
  }

  it('migrates in place: old records move into datasets and read back as they were; jobs left unfinished load into a dataset', async () => {
    const sandbox = await createSandbox(backend);
    cleanup.push(() => sandbox.dispose());
    const { completed, failed, queued, posted, running, empty } = await oldDatabase(sandbox);
    const own = (base: string, jobId: string) => `${base}_${jobId.replaceAll('-', '').slice(0, 8)}`;

    const server = await startServer(sandbox);
    cleanup.push(() => server.close());
    const job = async (jobId: string) => (await getJson<JobPayload>(`${server.url}/api/job/${jobId}`)).body;

    // A finished job: its records in a dataset of its own, the same as the old release showed them.
    expect(await job(completed)).toMatchObject({
      status: 'completed',
      records_processed: 3,
      dataset: own('old_orders', completed),
      mode: 'append',
      key: null,
      rows_inserted: 3,
      rows_updated: 0,
      version: 5,
    });
    expect(await recordsOf(server.url, completed)).toEqual([
      { record_no: 0, data: { id: '1', 'Unit Price': '9.90' } },
      { record_no: 1, data: { id: '2', 'Unit Price': '12' } },
      { record_no: 2, data: { id: '3', 'Unit Price': '' } },
    ]);
    // Paged by record_no as before, in the old order of the keys; a long number keeps every digit.
    const page = await (await fetch(`${server.url}/api/job/${completed}/records?limit=2`)).text();
    expect(page).toBe(
      '{"results":[{"record_no":0,"data":{"id":"1","Unit Price":"9.90"}},{"record_no":1,"data":{"id":"2","Unit Price":"12"}}],"next_cursor":"1"}',
    );
    expect(await (await fetch(`${server.url}/api/job/${failed}/records`)).text()).toBe(
      '{"results":[{"record_no":0,"data":{"n":123456789012345678901234567890}}],"next_cursor":null}',
    );
    // A failed one keeps what it had; a retry would redo it over its own dataset (replace).
    expect(await job(failed)).toMatchObject({
      status: 'failed',
      dataset: own('records', failed),
      mode: 'replace',
      rows_inserted: null,
      version: 5,
    });
    expect((await getJson(`${server.url}/api/job/${failed}/errors`)).body.results).toEqual([
      { line: 1, record_no: 1, message: 'invalid JSON in record 1', excerpt: '{"n":' },
    ]);

    // JSON as posted: every value as it was (nothing inferred: "007" and "2026-01-31" stay strings),
    // a field whose values are of several kinds is jsonb; a key a record lacked reads as null.
    expect(await job(posted)).toMatchObject({ dataset: own('select', posted), rows_inserted: 3 });
    expect(await recordsOf(server.url, posted)).toEqual([
      { record_no: 0, data: { '': '', n: 2, ok: false, code: '042', tags: { b: [1, 2] }, when: '2026-02-01', mixed: 'one', Ünit: 'x' } },
      { record_no: 2, data: { '': 'blank', n: 1.5, ok: true, code: '007', tags: ['a'], when: '2026-01-31', mixed: 1, Ünit: null } },
      { record_no: 5, data: { '': null, n: -300, ok: null, code: '9', tags: null, when: 'not a date', mixed: [1], Ünit: 'y' } },
    ]);
    const exact = await (await fetch(`${server.url}/api/job/${posted}/records?limit=1&cursor=0`)).text();
    expect(exact).toBe(
      '{"results":[{"record_no":2,"data":{"":"blank","n":1.50,"ok":true,"code":"007","tags":["a"],"when":"2026-01-31","mixed":1,"Ünit":null}}],"next_cursor":"2"}',
    );
    const columns = (await getJson(`${server.url}/api/datasets/${own('select', posted)}`)).body.columns;
    expect(columns).toEqual([
      { name: 'column_1', type: 'text', original_name: '' },
      { name: 'n', type: 'numeric', original_name: 'n' },
      { name: 'ok', type: 'boolean', original_name: 'ok' },
      { name: 'code', type: 'text', original_name: 'code' },
      { name: 'tags', type: 'jsonb', original_name: 'tags' },
      { name: 'when_', type: 'text', original_name: 'when' },
      { name: 'mixed', type: 'jsonb', original_name: 'mixed' },
      { name: 'unit', type: 'text', original_name: 'Ünit' },
    ]);
    // A completed job that had no records: an empty dataset, as a job completing now leaves.
    expect(await job(empty)).toMatchObject({ dataset: own('nothing', empty), rows_inserted: 0 });
    expect(await recordsOf(server.url, empty)).toEqual([]);

    expect((await getJson(`${server.url}/api/jobs?limit=100`)).body.results.map((j: JobPayload) => j.job_id).sort()).toEqual(
      [completed, failed, queued, posted, running, empty].sort(),
    );

    // Queued or running before the upgrade: it runs now, into the dataset its file names, from its first record.
    const ran = await waitForJob(server.url, queued);
    expect(ran).toMatchObject({ status: 'completed', dataset: 'later', mode: 'append', rows_inserted: 2 });
    expect(await recordsOf(server.url, queued)).toEqual([
      { record_no: 0, data: { id: 1, v: 'a' } },
      { record_no: 1, data: { id: 2, v: 'b' } },
    ]);
    const resumed = await waitForJob(server.url, running);
    expect(resumed).toMatchObject({ status: 'completed', dataset: 'half_done', mode: 'append', records_processed: 3, records_failed: 0 });
    expect(await recordsOf(server.url, running)).toEqual([
      { record_no: 0, data: { id: 1, v: 'x' } },
      { record_no: 1, data: { id: 2, v: 'y' } },
      { record_no: 2, data: { id: 3, v: 'z' } },
    ]);
    expect((await getJson(`${server.url}/api/job/${running}/errors`)).body.results).toEqual([]);

    const { rows } = await server.intake.db.query(`SELECT to_regclass('public.ingest_records') AS records, count(*)::int AS pending
       FROM ingest_jobs WHERE dataset IS NULL`);
    expect(rows).toEqual([{ records: null, pending: 0 }]);
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
  });
});
