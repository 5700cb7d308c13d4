/**
 * npm run bench:memory [-- MiB]: peak RSS of an `intake serve` process (PostgreSQL mode)
 * while it ingests a large CSV and a large JSON array (default 1024 MiB each), a gzipped CSV of
 * 1,000,000 rows and an Excel workbook of 200,000 rows, against the same process's RSS when
 * idle. Streams mean the peak should not grow with the file. Then embedded mode (PGlite): a
 * fresh `intake serve` on a new data directory (its start-up peak includes initdb), its idle
 * RSS once settled, and its peak while it loads a CSV of 1,000,000 rows.
 * Needs DATABASE_URL (a server where it may create and drop a database).
 */
import { execFileSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { xlsxOf, type Cell } from '../test/files.js';
import { parse } from 'csv-parse/sync';
import { jiraCsv } from './jira-csv.js';
import { ingestThroughIntake, mb } from './run-intake.js';

const targetBytes = Number(process.argv[2] ?? 1024) * 1024 ** 2;
const base = process.env.DATABASE_URL;
if (!base) {
  console.error('bench:memory needs DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)');
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), 'intake-memory-'));

async function write(path: string, chunks: Iterable<string>): Promise<void> {
  const out = createWriteStream(path);
  for (const chunk of chunks) if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  await new Promise<void>((resolve) => out.end(() => resolve()));
}

/** The CSV's rows as a JSON array of objects, streamed. */
function* jsonArray(rows: number): Generator<string> {
  let first = true;
  yield '[';
  for (const chunk of jiraCsv(rows)) {
    for (const line of chunk.split('\n')) {
      if (!line || line.startsWith('id,')) continue;
      const [id, key, ...rest] = line.split(',');
      yield `${first ? '' : ','}\n{"id":${id},"key":${JSON.stringify(key)},"fields":${JSON.stringify(rest)},"nested":{"points":[1,2,3],"ok":true}}`;
      first = false;
    }
  }
  yield '\n]\n';
}

/** The CSV's rows as a workbook: numbers as numbers, the rest as (shared) strings. */
function workbook(rows: number): Uint8Array {
  const records: string[][] = parse([...jiraCsv(rows)].join(''));
  return xlsxOf({
    Issues: records.map((record) =>
      record.map((value): Cell => (/^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value === '' ? null : value)),
    ),
  });
}

/** One upload; without databaseUrl, in embedded mode on a new data directory. */
async function run(file: string, name: string, databaseUrl?: string): Promise<void> {
  const env: Record<string, string> = databaseUrl
    ? { DATABASE_URL: databaseUrl, DATA_DIR: join(work, 'data'), MAX_UPLOAD_BYTES: String(4 * 1024 ** 3) }
    : { DATA_DIR: mkdtempSync(join(work, 'embedded-')), MAX_UPLOAD_BYTES: String(4 * 1024 ** 3) };
  const result = await ingestThroughIntake(env, file, name, `?dataset=${name.replace(/\W/g, '_')}`);
  console.log(
    `${(databaseUrl ? name : `${name}, PGlite`).padEnd(10)} ${mb(statSync(file).size).padStart(8)}  ${result.records.toLocaleString('en-US')} records in ` +
      `${(result.ms / 1000).toFixed(0)} s  peak RSS ${mb(result.peakRss)} (idle ${mb(result.idleRss)}, start-up peak ${mb(result.startPeakRss)})`,
  );
}

try {
  const rows = Math.round(targetBytes / 151); // bench/jira-csv.ts writes about 151 bytes a row
  const csv = join(work, 'big.csv');
  const json = join(work, 'big.json');
  await write(csv, jiraCsv(rows));
  await write(json, jsonArray(Math.round(rows * 0.75)));
  const gz = join(work, 'rows.csv.gz');
  await pipeline(Readable.from(jiraCsv(1_000_000)), createGzip(), createWriteStream(gz));
  const xlsx = join(work, 'rows.xlsx');
  writeFileSync(xlsx, workbook(200_000));
  const embeddedCsv = join(work, 'rows.csv');
  await write(embeddedCsv, jiraCsv(1_000_000));
  const name = 'intake_bench_memory';
  execFileSync('psql', [base, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, '-c', `CREATE DATABASE ${name}`], { stdio: 'ignore' });
  const url = new URL(base);
  url.pathname = `/${name}`;
  try {
    await run(csv, 'big.csv', url.toString());
    await run(json, 'big.json', url.toString());
    await run(gz, 'rows.csv.gz', url.toString());
    await run(xlsx, 'rows.xlsx', url.toString());
  } finally {
    execFileSync('psql', [base, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'ignore' });
  }
  await run(embeddedCsv, 'rows.csv');
} finally {
  rmSync(work, { recursive: true, force: true });
}
