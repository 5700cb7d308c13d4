/**
 * Migration 014: the jobs from before datasets (dataset NULL), whose records an older Intake
 * kept as JSON objects in ingest_records, given the form every job has now, once; then
 * ingest_records is dropped and no code knows about them.
 *
 * - A finished job (completed, failed, canceled) gets a dataset of its own,
 *   `<the name its file gives>_<first 8 hex digits of its id>`, holding exactly its records, so
 *   its rows page (GET /api/job/{id}/records) shows what it showed: the same record_no, keys
 *   and values. A column's type keeps the values as the JSON showed them (strings text, numbers
 *   numeric, booleans boolean, objects and arrays, or a mix of kinds, jsonb): nothing is
 *   inferred, so "007" stays a string and a long number keeps its digits. Its own dataset,
 *   because records from before datasets were never checked against any other job's columns.
 *   A failed or canceled one is retried in mode replace: a retry redoes the whole job, as it
 *   always has, rather than adding to the records its failed run had kept.
 * - A job still queued or running is given the dataset its file names and mode append, and
 *   starts from its first record, as a job submitted now would: what an older Intake had
 *   committed of it is dropped with its row errors.
 */
import { datasetNameFor, uniqueColumnName } from '../datasets/names.js';
import type { ColumnType } from '../datasets/types.js';
import { stageColumn, type LoadColumn } from '../datasets/loader.js';
import { createStage, publishStage, stageOf } from './datasets.js';
import type { Queryable } from './db.js';

export async function migratePreDatasetJobs(tx: Queryable, datasetSchema: string | undefined): Promise<void> {
  const { rows: unfinished } = await tx.query<{ job_id: string; file_name: string | null }>(
    `SELECT job_id, file_name FROM ingest_jobs WHERE dataset IS NULL AND status IN ('queued', 'running')`,
  );
  for (const job of unfinished) {
    await tx.query(
      `UPDATE ingest_jobs SET dataset = $2, mode = 'append', records_processed = 0, records_failed = 0, bytes_processed = 0,
           load_state = NULL, version = version + 1
       WHERE job_id = $1`,
      [job.job_id, datasetNameFor(job.file_name)],
    );
    await tx.query('DELETE FROM ingest_errors WHERE job_id = $1', [job.job_id]);
  }

  const { rows: finished } = await tx.query<{ job_id: string; file_name: string | null; status: string; records: number }>(
    `SELECT j.job_id, j.file_name, j.status, (SELECT count(*)::int FROM ingest_records r WHERE r.job_id = j.job_id) AS records
     FROM ingest_jobs j WHERE j.dataset IS NULL ORDER BY j.submitted_at, j.job_id`,
  );
  if (finished.length > 0) {
    if (datasetSchema === undefined) throw new Error('migration 014 moves records into datasets: it needs the datasets schema');
    await tx.query(`CREATE SCHEMA IF NOT EXISTS "${datasetSchema.replaceAll('"', '""')}"`);
  }
  const taken = await takenNames(tx, datasetSchema);
  for (const job of finished) {
    const dataset = ownName(job.file_name, job.job_id, taken);
    const completed = job.status === 'completed';
    let inserted: number | null = null;
    // A failed or canceled job that had kept nothing has nothing to show: like one failing now, it leaves no table.
    if (job.records > 0 || completed) inserted = await moveRecords(tx, datasetSchema!, dataset, job.job_id);
    await tx.query(
      `UPDATE ingest_jobs SET dataset = $2, mode = $3, rows_inserted = $4, rows_updated = $5, version = version + 1 WHERE job_id = $1`,
      [job.job_id, dataset, completed ? 'append' : 'replace', completed ? inserted : null, completed ? 0 : null],
    );
  }
  await tx.query('DROP TABLE ingest_records');
}

/** The names of the datasets and of every other object of their schema: a job's own dataset must be none of them. */
async function takenNames(tx: Queryable, schema: string | undefined): Promise<Set<string>> {
  const { rows } = await tx.query<{ name: string }>(
    `SELECT name FROM intake_datasets
     UNION SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1`,
    [schema ?? null],
  );
  return new Set(rows.map((row) => row.name));
}

/** `<the name datasetNameFor gives>_<8 hex digits of the id>`, or all 32 in the unlikely case that is taken. */
function ownName(fileName: string | null, jobId: string, taken: Set<string>): string {
  const base = datasetNameFor(fileName);
  const hex = jobId.replaceAll('-', '').toLowerCase();
  for (const id of [hex.slice(0, 8), hex]) {
    const name = `${base.slice(0, 62 - id.length).replace(/_+$/, '')}_${id}`;
    if (!taken.has(name)) {
      taken.add(name);
      return name;
    }
  }
  throw new Error(`migration 014: no free dataset name for job ${jobId}`);
}

/** The JSON kinds of a field's values → the column that shows every one of them as it was. */
function columnType(kinds: string[]): ColumnType | null {
  if (kinds.length === 0) return null; // only nulls: text, as for any column without a value
  if (kinds.length > 1) return 'jsonb';
  return ({ string: 'text', number: 'numeric', boolean: 'boolean' } as Record<string, ColumnType>)[kinds[0]!] ?? 'jsonb';
}

/**
 * The job's records staged as the loader stages JSON (each value as its JSON text, null or
 * absent as NULL) and published into a new dataset as an append. Returns the rows inserted.
 */
async function moveRecords(tx: Queryable, schema: string, dataset: string, jobId: string): Promise<number> {
  // Fields in the order the records first show them: the rows page writes them in column order.
  const { rows: fields } = await tx.query<{ key: string; kinds: string[] }>(
    `SELECT e.key, COALESCE(array_agg(DISTINCT jsonb_typeof(e.value)) FILTER (WHERE jsonb_typeof(e.value) <> 'null'), '{}') AS kinds
     FROM ingest_records r CROSS JOIN LATERAL jsonb_each(r.data) WITH ORDINALITY AS e(key, value, ord)
     WHERE r.job_id = $1
     GROUP BY e.key ORDER BY min(ARRAY[r.record_no::bigint, e.ord])`,
    [jobId],
  );
  const used = new Set<string>();
  const columns: LoadColumn[] = fields.map(({ key, kinds }, i) => {
    const type = columnType(kinds);
    return { name: uniqueColumnName(key, i, used), original: key, target: type, seen: type };
  });
  await createStage(tx, jobId, false);
  const stage = stageOf(jobId);
  if (columns.length > 0) {
    await tx.query(`ALTER TABLE ${stage} ${columns.map((_, i) => `ADD COLUMN ${stageColumn(i)} TEXT`).join(', ')}`);
  }
  const values = fields.map((_, i) => `NULLIF(r.data -> $${i + 2}::text, 'null')::text`);
  await tx.query(
    `INSERT INTO ${stage} (${['_intake_record_no', ...columns.map((_, i) => stageColumn(i))].join(', ')})
     SELECT ${['r.record_no', ...values].join(', ')} FROM ingest_records r WHERE r.job_id = $1 ORDER BY r.record_no`,
    [jobId, ...fields.map((f) => f.key)],
  );
  const { inserted } = await publishStage(tx, {
    schema,
    dataset,
    jobId,
    format: 'json',
    mode: 'append',
    key: [],
    widen: false,
    state: { columns },
  });
  return inserted;
}
