/**
 * npm run bench:ingest [-- ROWS]: how close Intake's ingestion comes to PostgreSQL's own
 * COPY. Generates a deterministic Jira-like CSV (bench/jira-csv.ts), then, in one run:
 *   (a) the floor: psql \copy of the same records, pre-converted to the records table's
 *       COPY format, into the same (migrated, empty) table;
 *   (b) Intake end to end in PostgreSQL mode (a real `intake serve` process): upload to
 *       `completed`, with the process's peak RSS;
 *   (c) the same in embedded mode (PGlite).
 * Needs DATABASE_URL (a server where it may create and drop databases) and psql.
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseCsv } from '../src/ingest/csv.js';
import { decodeUtf8 } from '../src/ingest/decode.js';
import { jiraCsv } from './jira-csv.js';
import { ingestThroughIntake, mb, statusLatency } from './run-intake.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const rows = Number(process.argv[2] ?? process.env.BENCH_ROWS ?? 1_000_000);
const base = process.env.DATABASE_URL;
if (!base) {
  console.error('bench:ingest needs DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)');
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), 'intake-bench-'));
const JOB = '00000000-0000-4000-8000-000000000000';

async function write(path: string, chunks: Iterable<string> | AsyncIterable<string>): Promise<void> {
  const out = createWriteStream(path);
  for await (const chunk of chunks) if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
  await new Promise<void>((resolve) => out.end(() => resolve()));
}

function database(name: string): string {
  execFileSync('psql', [base!, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, '-c', `CREATE DATABASE ${name}`], { stdio: 'ignore' });
  const url = new URL(base!);
  url.pathname = `/${name}`;
  return url.toString();
}

function dropDatabase(name: string): void {
  execFileSync('psql', [base!, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'ignore' });
}

const rate = (ms: number) => `${Math.round((rows / ms) * 1000).toLocaleString('en-US')} rows/s`;

try {
  const csv = join(work, 'jira.csv');
  await write(csv, jiraCsv(rows));
  const size = statSync(csv).size;
  console.log(`${rows.toLocaleString('en-US')} rows, ${mb(size)} CSV (${(size / rows).toFixed(0)} bytes a row)`);

  // (a) the floor: the same records in the records table's COPY format, loaded by psql.
  const copyFile = join(work, 'records.copy');
  let n = 0;
  await write(
    copyFile,
    (async function* () {
      for await (const record of parseCsv(decodeUtf8(createReadStream(csv)))) {
        yield `${JOB}\t${n++}\t${JSON.stringify(record.data).replaceAll('\\', '\\\\')}\n`;
      }
    })(),
  );
  const floorUrl = database('intake_bench_floor');
  execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'migrate'], { cwd: ROOT, env: { ...process.env, DATABASE_URL: floorUrl }, stdio: 'ignore' });
  execFileSync('psql', [floorUrl, '-qc', `INSERT INTO ingest_jobs (job_id, source_type, status, format) VALUES ('${JOB}', 'csv_upload', 'running', 'csv')`]);
  const floorStart = performance.now();
  execFileSync('psql', [floorUrl, '-qc', `\\copy ingest_records (job_id, record_no, data) FROM '${copyFile}'`]);
  const floorMs = performance.now() - floorStart;
  dropDatabase('intake_bench_floor');
  rmSync(copyFile);
  console.log(`(a) psql \\copy floor        ${(floorMs / 1000).toFixed(1)} s  ${rate(floorMs)}`);

  // (b) Intake, PostgreSQL mode.
  const pgUrl = database('intake_bench_pg');
  const pgRun = await ingestThroughIntake({ DATABASE_URL: pgUrl, DATA_DIR: join(work, 'pg-data') }, csv, 'jira.csv');
  dropDatabase('intake_bench_pg');
  console.log(
    `(b) Intake, PostgreSQL mode  ${(pgRun.ms / 1000).toFixed(1)} s  ${rate(pgRun.ms)}  ratio b/a ${(pgRun.ms / floorMs).toFixed(2)}  ` +
      `(upload ${(pgRun.uploadMs / 1000).toFixed(1)} s)  peak RSS ${mb(pgRun.peakRss)} (idle ${mb(pgRun.idleRss)})\n    ${statusLatency(pgRun)}`,
  );

  // (c) Intake, embedded mode.
  const embedded = await ingestThroughIntake({ DATA_DIR: join(work, 'embedded-data') }, csv, 'jira.csv');
  console.log(
    `(c) Intake, embedded mode    ${(embedded.ms / 1000).toFixed(1)} s  ${rate(embedded.ms)}  ratio c/a ${(embedded.ms / floorMs).toFixed(2)}  ` +
      `(upload ${(embedded.uploadMs / 1000).toFixed(1)} s)  peak RSS ${mb(embedded.peakRss)} (idle ${mb(embedded.idleRss)})\n    ${statusLatency(embedded)}`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
