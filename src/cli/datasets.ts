import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import type { Dataset, SqlResult } from '../client/api.js';
import { api, ClientError, count, parse, plural, printable, shown, table, time, type ClientIo, type Command } from './client.js';
import { Exact, parseExact, toJson } from './exact-json.js';

/** The client verbs of datasets (DATASET_COMMANDS: datasets, export, sql), over HTTP to INTAKE_URL. */

const PAGE_SIZE = 1000; // the most the API gives at once

async function datasets(args: string[], io: ClientIo): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, [0, 1], 'intake datasets [NAME] [--json]');
  const client = api(io.env);
  if (positionals[0] !== undefined) return showDataset(await client.dataset(positionals[0]), values.json === true, io);
  const all: Dataset[] = [];
  let cursor: string | null = null;
  do {
    const page = await client.datasets({ limit: PAGE_SIZE, cursor });
    all.push(...page.results);
    cursor = page.next_cursor;
  } while (cursor !== null);
  if (values.json) {
    io.stdout.write(all.map((dataset) => `${JSON.stringify(dataset)}\n`).join(''));
    return 0;
  }
  if (all.length === 0) {
    io.stderr.write('no datasets\n');
    return 0;
  }
  const rows = [['NAME', 'ROWS', 'COLUMNS', 'LAST_LOADED', 'LAST_JOB']];
  for (const dataset of all) {
    rows.push([
      printable(dataset.name),
      count.format(dataset.row_count),
      count.format(dataset.columns.length),
      time(dataset.updated_at),
      dataset.last_job_id ?? '-',
    ]);
  }
  io.stdout.write(table(rows));
  return 0;
}

function showDataset(dataset: Dataset, json: boolean, io: ClientIo): number {
  if (json) {
    io.stdout.write(`${JSON.stringify(dataset)}\n`);
    return 0;
  }
  const facts: [string, string][] = [
    ['dataset', dataset.name],
    ['rows', count.format(dataset.row_count)],
    ['columns', count.format(dataset.columns.length)],
    ['created', time(dataset.created_at)],
    ['loaded', `${time(dataset.updated_at)}${dataset.last_job_id ? ` by job ${dataset.last_job_id}` : ''}`],
  ];
  const columns = [
    ['COLUMN', 'TYPE', 'ORIGINAL_NAME'],
    ...dataset.columns.map((column) => [column.name, column.type, column.original_name].map(printable)),
  ];
  io.stdout.write(`${facts.map(([key, value]) => `${key.padEnd(10)} ${printable(value)}\n`).join('')}\n${table(columns)}`);
  return 0;
}

const EXPORT_USAGE = 'intake export NAME [--format csv|ndjson]';

async function exportDataset(args: string[], io: ClientIo): Promise<number> {
  const { values, positionals } = parse(args, { format: { type: 'string' } }, 1, EXPORT_USAGE);
  const name = positionals[0]!;
  const format = (values.format as string | undefined) ?? 'csv';
  if (format !== 'csv' && format !== 'ndjson') throw new ClientError(`--format is csv or ndjson, not "${printable(format)}"`);
  const res = await api(io.env).exportDataset(name, format);
  if (!res.body) throw new ClientError(`Intake answered the export of ${printable(name)} with no body`);
  // Chunk by chunk, as fast as stdout takes them: the export is never held in memory. A reader
  // that stops early (`| head`) ends the process quietly instead (see main.ts).
  try {
    await pipeline(Readable.fromWeb(res.body as NodeReadableStream<Uint8Array>), io.stdout);
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message;
    throw new ClientError(
      `the export of ${printable(name)} broke off: ${printable((err as Error).message)}${cause ? ` (${printable(cause)})` : ''}`,
    );
  }
  return 0;
}

const SQL_USAGE = 'intake sql "SELECT …" [--json]';

async function sql(args: string[], io: ClientIo): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1, SQL_USAGE);
  // Read as text, not with api.sql: its JSON.parse would round a bigint or numeric to a double.
  const res = await api(io.env).send('/api/sql', {
    method: 'POST',
    body: JSON.stringify({ sql: positionals[0] }),
    headers: { 'content-type': 'application/json' },
  });
  let answer: SqlResult;
  try {
    answer = parseExact(await res.text()) as SqlResult;
  } catch (err) {
    throw new ClientError(`Intake's answer could not be read: ${printable((err as Error).message)}`);
  }
  const { columns, rows, truncated } = answer;
  if (values.json) io.stdout.write(`${toJson(answer)}\n`);
  else if (columns.length > 0) io.stdout.write(table([columns.map((c) => printable(c.name)), ...rows.map((row) => row.map(cell))]));
  if (truncated)
    io.stderr.write(`truncated: the query has more rows than the ${count.format(rows.length)} here (narrow it, or add a LIMIT)\n`);
  else if (!values.json) io.stderr.write(`${plural(rows.length, 'row')}\n`);
  return 0;
}

/** A value of a row as a table shows it: NULL as nothing, JSON (jsonb) as its text. */
function cell(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return printable(value);
  if (value instanceof Exact || typeof value !== 'object') return toJson(value);
  return printable(toJson(value));
}

export const DATASET_COMMANDS: Record<string, Command> = Object.fromEntries(
  Object.entries({ datasets, export: exportDataset, sql }).map(([name, command]) => [name, shown(command)]),
);
