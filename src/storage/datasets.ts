/**
 * Every SQL statement about datasets: a job's stage table (its rows until it completes), the
 * publish that moves them into the dataset in the job's completing transaction, and the reads.
 *
 * A dataset is the table <schema>.<name> with one column per field and three of Intake's own,
 * last: `_intake_id` (identity, the order rows arrived in, the rows pages' key),
 * `_intake_job_id` and `_intake_record_no` (the job and input position that wrote the row).
 * Names are checked by the naming rule before they get here (letters, digits, _), and quoted
 * all the same. The other objects of a dataset (its indexes, primary key and identity
 * sequence) are named by `objectName`, never a dataset's name.
 */
import { widenExpression } from '../datasets/casts.js';
import { topLevelFields } from '../datasets/json-fields.js';
import { stageColumn, type LoadState } from '../datasets/loader.js';
import { conflicts, objectName, planPublish, quoteName as ident, type DatasetColumn, type PublishPlan } from '../datasets/plan.js';
import type { Format, WriteMode } from '../core/job.js';
import { DATASET_LOCK_CLASS, LOCK_KEYS } from '../core/lock-keys.js';
import type { Queryable, TextRow } from './db.js';

export type { DatasetColumn } from '../datasets/plan.js';

export const STAGE_SCHEMA = 'intake_stage';

export const tableOf = (schema: string, dataset: string) => `${ident(schema)}.${ident(dataset)}`;
/**
 * Gives the objects of datasets made by an older Intake (which named them `<name>_pkey`,
 * `<name>__intake_id_seq`, `<name cut to 40>_intake_job`, `…_intake_key_<hash>`: names that
 * can be another dataset's) their `objectName`. Run at start, under the migrations' lock;
 * once done it finds nothing. Returns how many objects it renamed.
 */
export async function renameLegacyObjects(tx: Queryable, schema: string): Promise<number> {
  const { rows } = await tx.query<{ dataset: string; name: string; kind: 'pk' | 'seq' | 'job' | 'key'; detail: string }>(
    `WITH t AS (
       SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN intake_datasets d ON d.name = c.relname
       WHERE n.nspname = $1 AND c.relkind IN ('r', 'p'))
     SELECT t.relname AS dataset, k.conname AS name, 'pk' AS kind, '' AS detail
       FROM t JOIN pg_constraint k ON k.conrelid = t.oid AND k.contype = 'p'
     UNION ALL
     SELECT t.relname, s.relname, 'seq', ''
       FROM t JOIN pg_attribute a ON a.attrelid = t.oid AND a.attname = '_intake_id'
       JOIN pg_depend d ON d.refobjid = t.oid AND d.refobjsubid = a.attnum AND d.classid = 'pg_class'::regclass
       JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
     UNION ALL
     SELECT t.relname, i.relname, CASE WHEN x.indisunique THEN 'key' ELSE 'job' END,
            (SELECT string_agg(a.attname, ',' ORDER BY array_position(x.indkey::int2[], a.attnum)) FROM pg_attribute a
             WHERE a.attrelid = t.oid AND a.attnum = ANY (x.indkey::int2[]))
       FROM t JOIN pg_index x ON x.indrelid = t.oid JOIN pg_class i ON i.oid = x.indexrelid
       WHERE NOT x.indisprimary AND (i.relname ~ '_intake_job$' OR i.relname ~ '_intake_key_[0-9a-f]{8}$')`,
    [schema],
  );
  let renamed = 0;
  for (const { dataset, name, kind, detail } of rows) {
    const target = objectName(kind, dataset, kind === 'key' ? detail : '');
    if (name === target) continue;
    if (kind === 'pk') await tx.query(`ALTER TABLE ${tableOf(schema, dataset)} RENAME CONSTRAINT ${ident(name)} TO ${ident(target)}`);
    else await tx.query(`ALTER ${kind === 'seq' ? 'SEQUENCE' : 'INDEX'} ${tableOf(schema, name)} RENAME TO ${ident(target)}`);
    renamed++;
  }
  return renamed;
}

export const stageOf = (jobId: string) => `${STAGE_SCHEMA}.${ident(`job_${jobId.replaceAll('-', '').toLowerCase()}`)}`;

/**
 * The job's stage, empty: any stage left by an earlier run is dropped first. On a PostgreSQL
 * server it is UNLOGGED (no WAL for rows copied once more at publish): a crash of the server
 * empties it, which a resumed run notices (stageRowCount) and starts the job over. PGlite
 * lives in Intake's process, so any kill of Intake is such a crash: there it is logged.
 */
export async function createStage(db: Queryable, jobId: string, unlogged: boolean): Promise<void> {
  await db.exec(
    `DROP TABLE IF EXISTS ${stageOf(jobId)}; CREATE ${unlogged ? 'UNLOGGED ' : ''}TABLE ${stageOf(jobId)} (_intake_record_no BIGINT NOT NULL)`,
  );
}

/** Rows in the job's stage, or null when it has none. */
export async function stageRowCount(db: Queryable, jobId: string): Promise<number | null> {
  const { rows } = await db.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [stageOf(jobId)]);
  if (!rows[0]?.exists) return null;
  const counted = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${stageOf(jobId)}`);
  return Number(counted.rows[0]!.n);
}

export async function dropStage(db: Queryable, jobId: string): Promise<void> {
  await db.query(`DROP TABLE IF EXISTS ${stageOf(jobId)}`);
}

/** Stages whose job is no longer queued or running (or gone): left by a crash between a job's end and its stage's drop. */
export async function dropOrphanStages(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT t.tablename AS name FROM pg_tables t
     WHERE t.schemaname = $1 AND t.tablename ~ '^job_[0-9a-f]{32}$'
       AND NOT EXISTS (SELECT 1 FROM ingest_jobs j WHERE j.job_id = substr(t.tablename, 5)::uuid AND j.status IN ('queued', 'running'))`,
    [STAGE_SCHEMA],
  );
  for (const { name } of rows) await db.query(`DROP TABLE IF EXISTS ${STAGE_SCHEMA}.${ident(name)}`);
  return rows.length;
}

/**
 * A batch into the stage: the loader's columns `add.from` to `add.to` (exclusive) added first,
 * then the rows, each filling the first `width` columns (the rest are NULL).
 */
export async function copyStage(
  tx: Queryable,
  jobId: string,
  add: { from: number; to: number },
  width: number,
  text: Uint8Array<ArrayBuffer>,
): Promise<void> {
  if (add.to > add.from) {
    const adds = [];
    for (let i = add.from; i < add.to; i++) adds.push(`ADD COLUMN IF NOT EXISTS ${stageColumn(i)} TEXT`);
    await tx.query(`ALTER TABLE ${stageOf(jobId)} ${adds.join(', ')}`);
  }
  if (text.length === 0) return;
  const columns = ['_intake_record_no'];
  for (let i = 0; i < width; i++) columns.push(stageColumn(i));
  await tx.copyFrom(`COPY ${stageOf(jobId)} (${columns.join(', ')}) FROM STDIN`, text);
}

const TYPE_NAMES: Record<string, string> = { 'timestamp with time zone': 'timestamptz' };

/** The user's columns of a dataset table, in table order (none when it does not exist). */
export async function datasetColumns(db: Queryable, schema: string, dataset: string): Promise<DatasetColumn[]> {
  const { rows } = await db.query<DatasetColumn>(
    // By name through pg_class, not to_regclass(): that resolves the name in the latest catalog
    // state, which can be a table a replace created after this statement's snapshot (then it
    // would have no columns here).
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, COALESCE(c.original_name, a.attname) AS original_name
     FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_attribute a ON a.attrelid = t.oid
       LEFT JOIN intake_dataset_columns c ON c.dataset = $2 AND c.name = a.attname
     WHERE n.nspname = $1 AND t.relname = $2 AND t.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND left(a.attname, 8) <> '_intake_'
     ORDER BY a.attnum`,
    [schema, dataset],
  );
  return rows.map((row) => ({ ...row, type: TYPE_NAMES[row.type] ?? row.type }));
}

export interface Publish {
  schema: string;
  dataset: string;
  jobId: string;
  format: Format;
  mode: WriteMode;
  key: string[];
  widen: boolean;
  state: LoadState;
  /** Datasets Intake may hold (MAX_DATASETS): a publish that would create one more fails. */
  maxDatasets?: number;
  /**
   * Moves an append's or a replace's rows this many stage pages at a time (PGlite: it runs on
   * Node's thread, and one statement moving a million rows would hold it for seconds).
   */
  chunkPages?: number;
  /** The fast path: the rows come from the input by COPY (not from the stage), read as `copy` says. */
  copy?: CopyRows;
}

/** A CSV file's records as COPY reads them (formats/csv-copy.ts): each its record number, then its fields. */
export interface CopyRows {
  /** Opened as the COPY starts (nothing is open when the publish stops before it). */
  records: () => AsyncIterable<Uint8Array>;
  delimiter: string;
  quote: string;
}

/** The fast path cannot load this job (a column must widen, a value is read Intake's own way…): why. */
export class NotCopyable extends Error {}

/** A string as an SQL literal, any character in it (a tab delimiter) as itself. */
const literal = (s: string) => `E'${s.replaceAll('\\', '\\\\').replaceAll("'", "''").replaceAll('\t', '\\t')}'`;

/** The application_name of an export's transaction: a publish that must change its table ends it (see takeTable). */
export const EXPORT_APPLICATION_NAME = 'intake-export';
// How long a publish waits for the table before it ends the exports holding it, and tries again.
const TABLE_LOCK_WAIT_MS = 1000;

/**
 * Takes the dataset's table for a change (DROP, ALTER) before it is made, in the caller's
 * transaction: an export holds the table (ACCESS SHARE) for as long as its client takes to read
 * it, so a publish that waits more than a moment ends the exports holding it and tries again.
 * A load never waits on a reader's pace; other holders (a query, bounded by SQL_TIMEOUT_MS)
 * are waited for.
 */
async function takeTable(tx: Queryable, table: string): Promise<void> {
  const { rows } = await tx.query<{ wait: string }>(`SELECT current_setting('lock_timeout') AS wait`);
  await tx.query('SAVEPOINT intake_take_table');
  try {
    await tx.query(`SELECT set_config('lock_timeout', $1, true)`, [`${TABLE_LOCK_WAIT_MS}ms`]);
    await tx.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
    await tx.query(`SELECT set_config('lock_timeout', $1, true)`, [rows[0]!.wait]);
    await tx.query('RELEASE SAVEPOINT intake_take_table');
    return;
  } catch (err) {
    if ((err as { code?: string }).code !== '55P03') throw err; // lock_not_available
    await tx.query('ROLLBACK TO SAVEPOINT intake_take_table'); // the caller's lock_timeout again
  }
  await tx.query(
    `SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'relation' AND l.relation = $1::regclass AND a.application_name = $2 AND l.pid <> pg_backend_pid()`,
    [table, EXPORT_APPLICATION_NAME],
  );
  // The exports are ended; whatever else holds the table is waited for as the caller waits for
  // any lock (a worker's publish: until it is free; an API write: API_LOCK_TIMEOUT_MS, then 503).
  await tx.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
}

/** A load that cannot be published as asked: the job fails with this message. */
export class PublishConflict extends Error {}

export const tooManyDatasets = (max: number, name: string) => new PublishConflict(conflicts.tooManyDatasets(max, name));

/** Whether Intake holds `max` datasets or more and none named `name`: a load into it would make one too many. */
export async function datasetCapReached(db: Queryable, name: string, max: number): Promise<boolean> {
  const { rows } = await db.query<{ n: number; found: boolean | null }>(
    'SELECT count(*)::int AS n, bool_or(name = $1) AS found FROM intake_datasets',
    [name],
  );
  return rows[0]!.n >= max && rows[0]!.found !== true;
}

/**
 * Moves a job's staged rows into its dataset, in the caller's transaction (the job's
 * completing one), so they appear together or not at all: runs the statements of its plan
 * (datasets/plan.ts: the table created or evolved, then the rows appended, replaced or merged
 * on the key). One job at a time publishes to a dataset (an advisory lock, taken first and held
 * to COMMIT). Returns how many rows were inserted and updated.
 */
export async function publishStage(tx: Queryable, p: Publish): Promise<{ inserted: number; updated: number }> {
  await tx.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [DATASET_LOCK_CLASS, p.dataset]);
  // Times without an offset are read as UTC, and dates widened to times are UTC midnight.
  await tx.query("SET LOCAL TimeZone = 'UTC'");
  const table = tableOf(p.schema, p.dataset);
  const exists = await datasetExists(tx, p.schema, p.dataset);
  const existing = exists && p.mode !== 'replace' ? await datasetColumns(tx, p.schema, p.dataset) : null;
  const plan = planPublish({ ...p, existing });
  if (plan.conflict !== undefined) throw new PublishConflict(plan.conflict);
  if (p.copy) {
    const not = plan.columns.find((c) => c.copies === undefined);
    if (not) throw new NotCopyable(`column "${not.name}" is read otherwise than PostgreSQL reads it`);
    if (plan.widen.length > 0) throw new NotCopyable(`column "${plan.widen[0]!.column}" must be widened`);
    if (plan.merge !== undefined && !('key' in plan.merge)) throw new NotCopyable('the key is not in the input');
    if (p.chunkPages) throw new NotCopyable('PGlite');
  }

  if (plan.mode === 'replace') {
    if (exists) await takeTable(tx, table);
    await tx.query(`DROP TABLE IF EXISTS ${table}`);
    await tx.query('DELETE FROM intake_dataset_columns WHERE dataset = $1', [p.dataset]);
  }
  await tx.query(
    `INSERT INTO intake_datasets (name, last_job_id) VALUES ($1, $2)
     ON CONFLICT (name) DO UPDATE SET last_job_id = EXCLUDED.last_job_id`,
    [p.dataset, p.jobId],
  );
  if (plan.create) await createDataset(tx, p, plan.create, p.copy !== undefined);
  else if (plan.widen.length > 0 || plan.addColumns.length > 0) await takeTable(tx, table);
  for (const { column, from, to } of plan.widen) {
    await tx.query(`ALTER TABLE ${table} ALTER COLUMN ${ident(column)} TYPE ${to} USING ${widenExpression(ident(column), from, to)}`);
  }
  if (plan.addColumns.length > 0) {
    const adds = plan.addColumns.map((c) => `ADD COLUMN ${ident(c.name)} ${c.type}`);
    await tx.query(`ALTER TABLE ${table} ${adds.join(', ')}`).catch((err: unknown) => {
      if ((err as { code?: string }).code === '54011') throw new PublishConflict(conflicts.tooManyColumns(p.dataset));
      throw err;
    });
  }
  // The name as written is the first input's that brought the column.
  await tx.query(
    `INSERT INTO intake_dataset_columns (dataset, name, original_name) SELECT $1, * FROM unnest($2::text[], $3::text[])
     ON CONFLICT (dataset, name) DO NOTHING`,
    [p.dataset, plan.columns.map((c) => c.name), plan.columns.map((c) => c.original)],
  );

  const stage = stageOf(p.jobId);
  const targets = plan.columns.map((c) => ident(c.name));
  const columns = [...targets, '_intake_job_id', '_intake_record_no'].join(', ');
  const selects = plan.columns.map((c) => `${c.value} AS ${ident(c.name)}`);
  const rows = `SELECT ${[...selects, `'${p.jobId}'::uuid AS _intake_job_id`, 's._intake_record_no'].join(', ')} FROM ${stage} s`;
  let inserted: number;
  let updated = 0;
  if (p.copy) {
    ({ inserted, updated } = await copyRows(tx, p, plan, p.copy, table));
  } else if (plan.merge === undefined && p.chunkPages) {
    // The stage's pages a slice at a time (a TID range scan each), in order, with the event
    // loop let in between: all in the one transaction, so the rows still appear together.
    const { rows: size } = await tx.query<{ pages: number }>(
      `SELECT (pg_relation_size($1::regclass) / current_setting('block_size')::int)::int AS pages`,
      [stage],
    );
    inserted = 0;
    for (let first = 0; first < size[0]!.pages; first += p.chunkPages) {
      const slice = `s.ctid >= '(${first},0)'::tid AND s.ctid < '(${first + p.chunkPages},0)'::tid`;
      inserted += (await tx.query(`INSERT INTO ${table} (${columns}) ${rows} WHERE ${slice}`)).rowCount;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } else if (plan.merge === undefined) {
    inserted = (await tx.query(`INSERT INTO ${table} (${columns}) ${rows}`)).rowCount;
  } else if ('key' in plan.merge) {
    ({ inserted, updated } = await mergeRows(tx, p, plan.merge, targets, rows));
  } else {
    // Each staged record has a value for the key (one without is a row error), so an input
    // without the key's column has no record at all (a Jira pull that found no issue):
    // there is nothing to merge.
    const { rows: staged } = await tx.query<{ any: boolean }>(`SELECT EXISTS (SELECT FROM ${stage}) AS any`);
    if (staged[0]!.any) throw new PublishConflict(conflicts.keyNotInInput(plan.merge.missingKey));
    inserted = 0;
  }
  // Stamped once the rows are in (NOW() is when the job's completing transaction began); a
  // dataset this transaction created (its created_at is that NOW()) is created now too.
  await tx.query(
    `UPDATE intake_datasets SET row_count = ${plan.mode === 'replace' ? '' : 'row_count + '}$2, updated_at = clock_timestamp(),
       created_at = CASE WHEN created_at = NOW() THEN clock_timestamp() ELSE created_at END
     WHERE name = $1`,
    [p.dataset, inserted],
  );
  await tx.query(`DROP TABLE ${stage}`);
  return { inserted, updated };
}

// The job column's default: the job whose COPY is running (a fast-path load sets it in its transaction).
const JOB_ID_DEFAULT = `current_setting('intake.job_id')::uuid`;

/**
 * The fast path's rows: COPY of the input's records straight into the dataset's table, each
 * value read by PostgreSQL as the cast at publish reads it (FORCE_NULL: in a typed column a
 * field written `""` is NULL too, as NULLIF makes it). The job's id comes from the column's
 * default, the setting `intake.job_id`. A table this transaction created gets its primary key
 * and the job index once its rows are in (one sort each instead of an index insert a row).
 */
async function copyRows(
  tx: Queryable,
  p: Publish,
  plan: PublishPlan,
  copy: CopyRows,
  table: string,
): Promise<{ inserted: number; updated: number }> {
  const merge = plan.merge !== undefined && 'key' in plan.merge ? plan.merge : undefined;
  // A merge's rows go to a table of this transaction first, for one INSERT … ON CONFLICT.
  const into = merge ? 'pg_temp.intake_copy' : table;
  await tx.query(`SELECT set_config('intake.job_id', $1, true)`, [p.jobId]);
  if (merge) {
    const columns = plan.columns.map((c) => `${ident(c.name)} ${c.copies!}`);
    await tx.query(`CREATE TEMP TABLE intake_copy (_intake_record_no BIGINT NOT NULL, ${columns.join(', ')}) ON COMMIT DROP`);
  } else if (!plan.create) {
    const { rows } = await tx.query<{ set: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
         WHERE d.adrelid = $1::regclass AND a.attname = '_intake_job_id') AS set`,
      [table],
    );
    if (!rows[0]!.set) {
      // A table made before the fast path: its job column learns the default once.
      await takeTable(tx, table);
      await tx.query(`ALTER TABLE ${table} ALTER COLUMN _intake_job_id SET DEFAULT ${JOB_ID_DEFAULT}`);
    }
  }
  const columns = ['_intake_record_no', ...plan.columns.map((c) => ident(c.name))];
  const typed = plan.columns.filter((c) => c.copies !== 'text').map((c) => ident(c.name));
  const options = [
    'FORMAT csv',
    `DELIMITER ${literal(copy.delimiter)}`,
    `QUOTE ${literal(copy.quote)}`,
    `ESCAPE ${literal(copy.quote)}`,
    ...(typed.length > 0 ? [`FORCE_NULL (${typed.join(', ')})`] : []),
  ];
  const copied = await tx.copyFrom(`COPY ${into} (${columns.join(', ')}) FROM STDIN (${options.join(', ')})`, copy.records());
  let rows = { inserted: copied, updated: 0 };
  if (merge) {
    const targets = plan.columns.map((c) => ident(c.name));
    const select = `SELECT ${[...targets, `'${p.jobId}'::uuid AS _intake_job_id`, 's._intake_record_no'].join(', ')} FROM ${into} s`;
    rows = await mergeRows(tx, p, merge, targets, select);
  }
  if (plan.create) {
    await tx.query(`ALTER TABLE ${table} ALTER COLUMN _intake_job_id SET DEFAULT ${JOB_ID_DEFAULT}`);
    await tx.query(`ALTER TABLE ${table} ADD CONSTRAINT ${ident(plan.create.primaryKey)} PRIMARY KEY (_intake_id)`);
    await tx.query(`CREATE INDEX ${ident(plan.create.jobIndex)} ON ${table} (_intake_job_id, _intake_record_no)`);
  }
  return rows;
}

/**
 * Makes a new dataset's table (none of that name exists), within MAX_DATASETS; with `copy`,
 * without its primary key and job index, which copyRows makes once the rows are in.
 */
async function createDataset(tx: Queryable, p: Publish, create: NonNullable<PublishPlan['create']>, copy = false): Promise<void> {
  if (p.maxDatasets !== undefined) {
    // One new dataset at a time, so that concurrent publishes cannot pass the cap together.
    await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEYS.datasetCount]);
    const { rows } = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM intake_datasets'); // this one's row included
    if (rows[0]!.n > p.maxDatasets) throw tooManyDatasets(p.maxDatasets, p.dataset);
  }
  // The user's columns first, Intake's last, out of the way of SELECT *. Every object named,
  // none left to PostgreSQL (`<name>_pkey` could be another dataset's name).
  const sequence = `${ident(p.schema)}.${ident(create.sequence)}`;
  await tx.query(
    `CREATE TABLE ${tableOf(p.schema, p.dataset)} (${[
      ...create.columns.map((c) => `${ident(c.name)} ${c.type}`),
      `_intake_id BIGINT GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME ${sequence} CACHE 1000)${copy ? '' : ` CONSTRAINT ${ident(create.primaryKey)} PRIMARY KEY`}`,
      // (A table the fast path fills in this transaction takes its job as a constant while its
      // COPY runs, which saves reading the setting a row.)
      `_intake_job_id UUID NOT NULL DEFAULT ${copy ? `'${p.jobId}'::uuid` : JOB_ID_DEFAULT}`,
      '_intake_record_no BIGINT NOT NULL',
    ].join(', ')})`,
  );
  // A job's rows (GET /api/job/{id}/records) are found by this index, however big the dataset.
  if (!copy)
    await tx.query(`CREATE INDEX ${ident(create.jobIndex)} ON ${tableOf(p.schema, p.dataset)} (_intake_job_id, _intake_record_no)`);
  await tx.query('DELETE FROM intake_dataset_columns WHERE dataset = $1', [p.dataset]);
}

/**
 * Upserts the staged rows (`rows`, a SELECT of them as the table's `targets`) on the key's
 * columns, adding the key's unique index first when the dataset has none.
 */
async function mergeRows(
  tx: Queryable,
  p: Publish,
  merge: { key: string[]; keyIndex: string },
  targets: string[],
  rows: string,
): Promise<{ inserted: number; updated: number }> {
  const table = tableOf(p.schema, p.dataset);
  const keys = merge.key.map(ident);
  if (!(await hasUniqueIndex(tx, p.schema, p.dataset, merge.key))) {
    await tx.query(`CREATE UNIQUE INDEX ${ident(merge.keyIndex)} ON ${table} (${keys.join(', ')})`).catch((err: unknown) => {
      if ((err as { code?: string }).code === '23505') throw new PublishConflict(conflicts.keyNotUnique(p.dataset, merge.key));
      throw err;
    });
  }
  const columns = [...targets, '_intake_job_id', '_intake_record_no'];
  const set = columns.map((c) => `${c} = EXCLUDED.${c}`).join(', ');
  // A key given twice in one input: its last record wins.
  const { rows: counts } = await tx.query<{ inserted: string; updated: string }>(
    `WITH upserted AS (
       INSERT INTO ${table} AS d (${columns.join(', ')})
       SELECT DISTINCT ON (${keys.join(', ')}) * FROM (${rows}) r ORDER BY ${keys.join(', ')}, _intake_record_no DESC
       ON CONFLICT (${keys.join(', ')}) DO UPDATE SET ${set}
       RETURNING (xmax = 0) AS inserted)
     SELECT count(*) FILTER (WHERE inserted)::text AS inserted, count(*) FILTER (WHERE NOT inserted)::text AS updated FROM upserted`,
  );
  return { inserted: Number(counts[0]!.inserted), updated: Number(counts[0]!.updated) };
}

/**
 * Whether the dataset has a unique index on exactly these columns (what ON CONFLICT needs),
 * whatever its name: a dataset made by an older Intake named its key's index otherwise.
 */
async function hasUniqueIndex(tx: Queryable, schema: string, dataset: string, columns: string[]): Promise<boolean> {
  const { rows } = await tx.query<{ found: boolean }>(
    `SELECT EXISTS (
       SELECT 1 FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
       WHERE n.nspname = $1 AND t.relname = $2 AND t.relkind IN ('r', 'p') AND i.indisunique AND i.indimmediate AND i.indisvalid
         AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnkeyatts = cardinality($3::text[])
         AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
              WHERE a.attrelid = t.oid AND a.attnum = ANY (i.indkey::int2[])) = (SELECT array_agg(c ORDER BY c) FROM unnest($3::text[]) c)
     ) AS found`,
    [schema, dataset, columns],
  );
  return rows[0]?.found === true;
}

/** The user's columns of a row as one JSON object, in table order (values as PostgreSQL writes them: numbers exact). */
// `r.*`, not `r`: a bare `r` would mean the user's column when one is named so.
const rowJson = (columns: DatasetColumn[]) =>
  columns.length === 0 ? `'{}'` : `(SELECT row_to_json(r.*) FROM (SELECT ${columns.map((c) => `t.${ident(c.name)}`).join(', ')}) r)::text`;

/**
 * A page of a job's rows in its dataset after `after` (its input position), each as
 * [record_no, the row's JSON]. A dataset that is gone has none.
 */
export async function listDatasetRecords(
  db: Queryable,
  schema: string,
  dataset: string,
  jobId: string,
  after: number,
  limit: number,
): Promise<TextRow[]> {
  return whileStable(db, schema, dataset, (columns) => recordsPage(db, schema, dataset, columns, jobId, after, limit));
}

/**
 * Reads with the dataset's columns as they are now, once more if a load or a delete changed
 * the table between reading its columns and reading its rows (a column or the table gone);
 * a table that is gone has no rows.
 */
async function whileStable(
  db: Queryable,
  schema: string,
  dataset: string,
  read: (columns: DatasetColumn[]) => Promise<TextRow[]>,
): Promise<TextRow[]> {
  for (let attempt = 0; ; attempt++) {
    const columns = await datasetColumns(db, schema, dataset);
    if (columns.length === 0 && !(await datasetExists(db, schema, dataset))) return [];
    try {
      return await read(columns);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if ((code !== '42P01' && code !== '42703') || attempt > 0) throw err;
    }
  }
}

async function recordsPage(
  db: Queryable,
  schema: string,
  dataset: string,
  columns: DatasetColumn[],
  jobId: string,
  after: number,
  limit: number,
): Promise<TextRow[]> {
  const rows = await db.queryText(
    `SELECT t._intake_record_no, ${rowJson(columns)} FROM ${tableOf(schema, dataset)} t
     WHERE t._intake_job_id = $1 AND t._intake_record_no > $2 ORDER BY t._intake_record_no LIMIT $3`,
    [jobId, after, limit],
  );
  // Keyed by the names as the input wrote them; each value's JSON as PostgreSQL wrote it.
  const keys = new Map(columns.map((c) => [c.name, JSON.stringify(c.original_name)]));
  return rows.map(([recordNo, json]) => {
    const fields = [...topLevelFields(json!)].map(([name, value]) => `${keys.get(name) ?? JSON.stringify(name)}:${value}`);
    return [recordNo ?? null, `{${fields.join(',')}}`];
  });
}

/** A page of a dataset's rows in the order they arrived, after `after` (an `_intake_id`), each as [_intake_id, the row's JSON]. */
export async function listDatasetRows(db: Queryable, schema: string, dataset: string, after: string, limit: number): Promise<TextRow[]> {
  return whileStable(db, schema, dataset, (columns) =>
    db.queryText(
      `SELECT t._intake_id, ${rowJson(columns)} FROM ${tableOf(schema, dataset)} t WHERE t._intake_id > $1 ORDER BY t._intake_id LIMIT $2`,
      [after, limit],
    ),
  );
}

/** Whether the dataset's table exists (a table: an index or a sequence of that name is not one). */
export async function datasetExists(db: Queryable, schema: string, dataset: string): Promise<boolean> {
  const { rows } = await db.query<{ exists: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')) AS exists`,
    [schema, dataset],
  );
  return rows[0]?.exists === true;
}

export interface DatasetRow {
  name: string;
  created_at: Date;
  updated_at: Date;
  row_count: number;
  last_job_id: string | null;
}

const DATASET_COLUMNS = 'name, created_at, updated_at, row_count, last_job_id';

/** Datasets by name after `after`, at most `limit`. */
export async function listDatasets(db: Queryable, after: string | undefined, limit: number): Promise<DatasetRow[]> {
  const { rows } = await db.query<DatasetRow>(
    `SELECT ${DATASET_COLUMNS} FROM intake_datasets WHERE $1::text IS NULL OR name > $1 ORDER BY name LIMIT $2`,
    [after ?? null, limit],
  );
  return rows;
}

export async function findDataset(db: Queryable, name: string): Promise<DatasetRow | undefined> {
  const { rows } = await db.query<DatasetRow>(`SELECT ${DATASET_COLUMNS} FROM intake_datasets WHERE name = $1`, [name]);
  return rows[0];
}

/**
 * Drops a dataset and forgets it, under its publish lock: 'busy' (nothing done) while a job
 * that writes it is queued or running, 'missing' when Intake has no such dataset.
 */
export async function deleteDataset(tx: Queryable, schema: string, name: string): Promise<'deleted' | 'busy' | 'missing'> {
  const writing = async () =>
    (await tx.query(`SELECT 1 FROM ingest_jobs WHERE dataset = $1 AND status IN ('queued', 'running') LIMIT 1`, [name])).rows.length > 0;
  // Asked first without the lock, which a fast-path load holds for as long as it reads its file.
  if ((await findDataset(tx, name)) && (await writing())) return 'busy';
  await tx.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [DATASET_LOCK_CLASS, name]);
  if (!(await findDataset(tx, name))) return 'missing';
  if (await writing()) return 'busy';
  if (await datasetExists(tx, schema, name)) await takeTable(tx, tableOf(schema, name));
  await tx.query(`DROP TABLE IF EXISTS ${tableOf(schema, name)}`);
  await tx.query('DELETE FROM intake_datasets WHERE name = $1', [name]);
  return 'deleted';
}

/**
 * A column as text for an export, the same whatever the session's settings: times in ISO 8601
 * UTC, booleans as true/false, the rest as PostgreSQL writes it (numbers exactly).
 */
function exportExpression(column: DatasetColumn): string {
  const c = `t.${ident(column.name)}`;
  switch (column.type) {
    case 'timestamptz':
      return `to_char(${c} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
    case 'date':
      return `to_char(${c}, 'YYYY-MM-DD')`;
    default:
      return `${c}::text`;
  }
}

/**
 * A dataset's rows in the order they arrived, `batch` at a time (keyset on `_intake_id`): each
 * as its values' text (null for NULL), for a CSV export; or with `json`, each as the row's JSON.
 */
export async function* readDataset(
  db: Queryable,
  schema: string,
  name: string,
  columns: DatasetColumn[],
  batch: number,
  json: boolean,
): AsyncGenerator<TextRow[]> {
  const select = json ? rowJson(columns) : columns.map(exportExpression).join(', ') || 'NULL';
  let after = '0';
  for (;;) {
    const rows = await db.queryText(
      `SELECT t._intake_id, ${select} FROM ${tableOf(schema, name)} t WHERE t._intake_id > $1 ORDER BY t._intake_id LIMIT ${batch}`,
      [after],
    );
    if (rows.length === 0) return;
    after = rows.at(-1)![0]!;
    yield rows.map((row) => row.slice(1));
    if (rows.length < batch) return;
  }
}

/** The tables of the datasets' schema that Intake made (the datasets a query may read). */
export async function listDatasetNames(db: Queryable, schema: string): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT d.name FROM intake_datasets d WHERE EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = d.name AND c.relkind IN ('r', 'p'))`,
    [schema],
  );
  return rows.map((row) => row.name);
}
