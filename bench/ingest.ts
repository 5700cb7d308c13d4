/**
 * npm run bench:ingest [-- ROWS]: how close loading a dataset comes to PostgreSQL's own COPY.
 * Generates a deterministic Jira-like CSV (bench/jira-csv.ts), then, in one run:
 *   (b) Intake, PostgreSQL mode (a real `intake serve`): upload to `completed` into a new
 *       dataset, with the process's peak RSS (FAST_PATH_MAX_BYTES=0: by the checked path);
 *   (c) the plain floor: psql \copy of the CSV itself (FORMAT csv) into a table of the types
 *       (b) inferred, without Intake's columns: PostgreSQL's own parsing and casting;
 *   (a) the same-table floor: psql \copy of the same rows, in the dataset table's own COPY
 *       text format, into a table made LIKE the one (b) made (same columns, types and indexes), empty;
 *   (n) Intake, an append of the same file onto the 1,000,000-row dataset, against (o): the
 *       same COPY (the fast path's, record number first) into a copy of that table, rows and all;
 *   (p) pgloader of the CSV into a typed table, when pgloader is installed;
 *   (j) the JSONB path before datasets (every record a JSON object of strings in one shared
 *       table): the release before datasets, run from a git worktree of BASELINE_COMMIT;
 *   (m) Intake, merge of the same file on `id` onto the dataset (b) loaded (every row updated);
 *   (g) Intake, the same file gzipped, into a new dataset (against (b): the cost of gunzip);
 *   (e) Intake, embedded mode (PGlite), append into a new dataset;
 *   (f) the embedded floor: PGlite's own COPY of (a)'s file into an empty copy of the table (e)
 *       made, in (e)'s database opened as Intake opens it (storage/pglite.ts, pgliteOptions()).
 * Needs DATABASE_URL (a server where it may create and drop databases) and psql.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createGzip } from 'node:zlib';
import { copyRecords } from '../src/formats/csv-copy.js';
import { openPglite } from '../src/storage/pglite.js';
import { jiraCsv } from './jira-csv.js';
import { dropDatabase, freshDatabase, ingestThroughIntake, mb, statusLatency, type IngestRun } from './run-intake.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// The last commit before datasets: its ingestion kept every record as JSONB in ingest_records.
const BASELINE_COMMIT = process.env.BASELINE_COMMIT ?? '9a69291';
const rows = Number(process.argv[2] ?? process.env.BENCH_ROWS ?? 1_000_000);
const base = process.env.DATABASE_URL;
if (!base) {
  console.error('bench:ingest needs DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)');
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), 'intake-bench-'));

async function write(path: string, chunks: Iterable<string>): Promise<void> {
  const out = createWriteStream(path);
  for (const chunk of chunks) if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  await new Promise<void>((resolve) => out.end(() => resolve()));
}

const database = (name: string) => freshDatabase(base, name);

const psql = (url: string, ...commands: string[]) =>
  execFileSync('psql', [url, '-qAt', ...commands.flatMap((c) => ['-c', c])], { encoding: 'utf8' });
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`.padStart(7);
const rate = (ms: number) => `${Math.round((rows / ms) * 1000).toLocaleString('en-US')} rows/s`.padStart(16);
const timed = (fn: () => void) => {
  const start = performance.now();
  fn();
  return performance.now() - start;
};
const intakeLine = (label: string, run: IngestRun, floorMs: number) =>
  `${label} ${seconds(run.ms)} ${rate(run.ms)}  × floor ${(run.ms / floorMs).toFixed(2)}  (upload ${(run.uploadMs / 1000).toFixed(1)} s)  ` +
  `peak RSS ${mb(run.peakRss)} (idle ${mb(run.idleRss)})\n      ${statusLatency(run)}`;

try {
  const csv = join(work, 'jira.csv');
  await write(csv, jiraCsv(rows));
  const size = statSync(csv).size;
  console.log(`${rows.toLocaleString('en-US')} rows, ${mb(size)} CSV (${(size / rows).toFixed(0)} bytes a row)`);

  // (b) Intake, PostgreSQL mode: a new dataset.
  const pgUrl = database('intake_bench_pg');
  const env = {
    DATABASE_URL: pgUrl,
    DATA_DIR: join(work, 'pg-data'),
    ...(process.env.FAST_PATH_MAX_BYTES && { FAST_PATH_MAX_BYTES: process.env.FAST_PATH_MAX_BYTES }),
  };
  const append = await ingestThroughIntake(env, csv, 'jira.csv', '?dataset=jira');
  const columns = psql(
    pgUrl,
    `SELECT string_agg(quote_ident(attname), ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'datasets.jira'::regclass AND attnum > 0 AND NOT attisdropped AND attname <> '_intake_id'`,
  ).trim();
  const userColumns = psql(
    pgUrl,
    `SELECT string_agg(quote_ident(attname) || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'datasets.jira'::regclass AND attnum > 0 AND NOT attisdropped AND attname NOT LIKE '\\_intake\\_%'`,
  ).trim();

  // (c) The plain floor: PostgreSQL parses the CSV itself into a table of the inferred types, no Intake columns.
  psql(pgUrl, 'CREATE SCHEMA plain', `CREATE TABLE plain.jira (${userColumns})`);
  const plainMs = timed(() => psql(pgUrl, `\\copy plain.jira FROM '${csv}' (FORMAT csv, HEADER true)`));
  psql(pgUrl, 'DROP SCHEMA plain CASCADE');

  // (a) The floor: the rows (b) loaded, in the table's COPY text format, into an empty copy of its table.
  const copyFile = join(work, 'rows.copy');
  psql(pgUrl, `\\copy (SELECT ${columns} FROM datasets.jira ORDER BY _intake_id) TO '${copyFile}'`);
  psql(pgUrl, 'CREATE SCHEMA floor', 'CREATE TABLE floor.jira (LIKE datasets.jira INCLUDING ALL)');
  const floorMs = timed(() => psql(pgUrl, `\\copy floor.jira (${columns}) FROM '${copyFile}'`));
  psql(pgUrl, 'DROP SCHEMA floor CASCADE');
  console.log(
    `(a) psql \\copy floor      ${seconds(floorMs)} ${rate(floorMs)}  (typed rows into the dataset's table, same columns and indexes)`,
  );
  console.log(
    `(c) psql \\copy CSV plain  ${seconds(plainMs)} ${rate(plainMs)}  (the CSV parsed by PostgreSQL into a table of the same types, no Intake columns)`,
  );
  console.log(
    `${intakeLine('(b) Intake new dataset, PG', append, floorMs)}\n      × the plain COPY (c) ${(append.ms / plainMs).toFixed(2)}`,
  );

  // (m) Merge the same rows on id: every row is updated.
  const merge = await ingestThroughIntake(env, csv, 'jira.csv', '?dataset=jira&mode=merge&key=id');
  console.log(intakeLine('(m) Intake merge, PG    ', merge, floorMs));

  // (n) Append the same file onto the 1,000,000-row dataset, against (o): the same COPY (the
  // fast path's own: record number first) into a copy of that table, rows, indexes and all.
  // (A dataset of its own: the merge above gave jira a unique key on id.)
  await ingestThroughIntake(env, csv, 'jira.csv', '?dataset=jira_onto');
  const onto = await ingestThroughIntake(env, csv, 'jira.csv', '?dataset=jira_onto');
  const prefixed = join(work, 'prefixed.csv');
  await pipeline(copyRecords(createReadStream(csv), { delimiter: 44, quote: 34 }), createWriteStream(prefixed));
  const typed = psql(
    pgUrl,
    `SELECT string_agg(quote_ident(attname), ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'datasets.jira_onto'::regclass AND attnum > 0 AND NOT attisdropped AND attname NOT LIKE '\\_intake\\_%' AND atttypid <> 'text'::regtype`,
  ).trim();
  const userNames = userColumns
    .split(', ')
    .map((c) => c.split(' ')[0])
    .join(',');
  psql(
    pgUrl,
    'CREATE SCHEMA floor',
    'CREATE TABLE floor.jira (LIKE datasets.jira_onto INCLUDING ALL)',
    'INSERT INTO floor.jira OVERRIDING SYSTEM VALUE SELECT * FROM datasets.jira_onto LIMIT ' + rows,
    "SELECT setval(pg_get_serial_sequence('floor.jira', '_intake_id'), max(_intake_id)) FROM floor.jira",
    'VACUUM ANALYZE floor.jira',
  );
  const ontoFloorMs = timed(() =>
    execFileSync(
      'psql',
      [pgUrl, '-qAt', '-c', `\\copy floor.jira (_intake_record_no,${userNames}) FROM '${prefixed}' (FORMAT csv, FORCE_NULL (${typed}))`],
      { env: { ...process.env, PGOPTIONS: '-c intake.job_id=00000000-0000-0000-0000-000000000001' } },
    ),
  );
  psql(pgUrl, 'DROP SCHEMA floor CASCADE');
  console.log(
    `(o) psql \\copy onto 1M    ${seconds(ontoFloorMs)} ${rate(ontoFloorMs)}  (the same COPY into a copy of the dataset's table, its 1,000,000 rows and indexes)`,
  );
  console.log(
    `${intakeLine('(n) Intake append onto 1M', onto, floorMs)}\n      × the same COPY onto 1M (o) ${(onto.ms / ontoFloorMs).toFixed(2)}`,
  );

  // (g) The same rows gzipped, into a new dataset.
  const gz = join(work, 'jira.csv.gz');
  await pipeline(createReadStream(csv), createGzip(), createWriteStream(gz));
  const gzipped = await ingestThroughIntake(env, gz, 'jira.csv.gz', '?dataset=jira_gz');
  console.log(
    `${intakeLine('(g) Intake gzip, PG     ', gzipped, floorMs)}\n      ${mb(statSync(gz).size)} gzipped; × the plain file (b) ${(gzipped.ms / append.ms).toFixed(2)}`,
  );
  dropDatabase(base, 'intake_bench_pg');

  // (p) pgloader, when installed: the CSV into a typed table.
  if (spawnSync('pgloader', ['--version']).status === 0) {
    const url = database('intake_bench_pgloader');
    psql(
      url,
      'CREATE TABLE jira (id bigint, key text, summary text, status text, priority text, assignee text, created timestamptz, updated timestamptz, story_points bigint, labels text)',
    );
    const load = join(work, 'load.pgl');
    await write(load, [
      `LOAD CSV FROM '${csv}' (id, key, summary, status, priority, assignee, created, updated, story_points, labels)\n` +
        `INTO ${url}?tablename=jira (id, key, summary, status, priority, assignee, created, updated, story_points, labels)\n` +
        `WITH skip header = 1, fields optionally enclosed by '"', fields escaped by double-quote, fields terminated by ',';\n`,
    ]);
    const ms = timed(() => execFileSync('pgloader', ['--quiet', load], { stdio: 'ignore' }));
    const loaded = psql(url, 'SELECT count(*) FROM jira').trim();
    dropDatabase(base, 'intake_bench_pgloader');
    console.log(`(p) pgloader              ${seconds(ms)} ${rate(ms)}  × floor ${(ms / floorMs).toFixed(2)}  (${loaded} rows)`);
  } else console.log('(p) pgloader              not installed (apt-get install pgloader)');

  // (j) The JSONB path before datasets, from a worktree of the baseline commit.
  const tree = join(work, 'baseline');
  if (spawnSync('git', ['-C', ROOT, 'worktree', 'add', '--detach', tree, BASELINE_COMMIT], { stdio: 'ignore' }).status === 0) {
    try {
      symlinkSync(join(ROOT, 'node_modules'), join(tree, 'node_modules'));
      const url = database('intake_bench_jsonb');
      const run = await ingestThroughIntake({ DATABASE_URL: url, DATA_DIR: join(work, 'jsonb-data') }, csv, 'jira.csv', '', tree);
      dropDatabase(base, 'intake_bench_jsonb');
      console.log(intakeLine(`(j) JSONB path (${BASELINE_COMMIT})`, run, floorMs));
    } finally {
      spawnSync('git', ['-C', ROOT, 'worktree', 'remove', '--force', tree], { stdio: 'ignore' });
    }
  } else console.log(`(j) JSONB path            skipped: no git worktree of ${BASELINE_COMMIT}`);

  // (e) Embedded mode.
  const embedded = await ingestThroughIntake({ DATA_DIR: join(work, 'embedded-data') }, csv, 'jira.csv', '?dataset=jira');

  // (f) The embedded floor: (a)'s file by PGlite's COPY into an empty copy of the table (e) made.
  const pglite = await openPglite(join(work, 'embedded-data'));
  let embeddedFloorMs: number;
  try {
    await pglite.exec('CREATE SCHEMA floor; CREATE TABLE floor.jira (LIKE datasets.jira INCLUDING ALL)');
    const start = performance.now();
    await pglite.copyFrom(`COPY floor.jira (${columns}) FROM STDIN`, readFileSync(copyFile));
    embeddedFloorMs = performance.now() - start;
  } finally {
    await pglite.close();
  }
  console.log(
    `(f) PGlite COPY floor     ${seconds(embeddedFloorMs)} ${rate(embeddedFloorMs)}  × floor ${(embeddedFloorMs / floorMs).toFixed(2)}  (the same file, typed rows into (e)'s table)`,
  );
  console.log(
    `${intakeLine('(e) Intake append, PGlite', embedded, floorMs)}\n      × the embedded floor (f) ${(embedded.ms / embeddedFloorMs).toFixed(2)}`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
