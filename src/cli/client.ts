import { openAsBlob } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ApiError, createApi, type Api, type Preview, type SubmittedJob } from '../client/api.js';
import { follow } from '../client/follow.js';
import { JOB_STATUSES, type JobPayload } from '../core/job.js';

/**
 * The client verbs of jobs (CLIENT_COMMANDS: upload, preview, import, status, jobs, cancel, retry, delete), over
 * HTTP to INTAKE_URL, and what every client verb shares (those of datasets are in datasets.ts).
 */

/** Something the user can fix (bad arguments, unreachable server, refused request): one line, exit 2. */
export class ClientError extends Error {}

const POLL_MS = 1000;
const REOPEN_MS = 5000;

export interface ClientIo {
  env: NodeJS.ProcessEnv;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

/** The API at INTAKE_URL, with INTAKE_TOKEN when set. */
export function api(env: NodeJS.ProcessEnv): Api {
  const token = env.INTAKE_TOKEN?.trim() || undefined;
  return createApi({ base: baseUrl(env), token: () => token });
}

function baseUrl(env: NodeJS.ProcessEnv): string {
  const raw = env.INTAKE_URL || 'http://localhost:8000';
  try {
    const url = new URL(raw);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
    return url.href.replace(/\/+$/, '');
  } catch {
    throw new ClientError(`INTAKE_URL must be an http(s) URL such as http://localhost:8000, not "${raw}"`);
  }
}

/** An API error as the one line the user sees. */
function clientError(err: ApiError): ClientError {
  if (err.status === 0) return new ClientError(`${printable(err.message)} (is it running? set INTAKE_URL)`);
  return new ClientError(`${printable(err.message)} (HTTP ${err.status} ${printable(err.code)})`);
}

/** The arguments of a command, with `positionals` of them (or between [min, max]) not options. */
export function parse(
  args: string[],
  options: ParseArgsConfig['options'],
  positionals: number | [number, number],
  usage: string,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    // Node's message goes on to explain `--`; its first sentence is the point.
    throw new ClientError(`${(err as Error).message.split(/\.(?:\s|$)/)[0]}\nusage: ${usage}`);
  }
  const [min, max] = typeof positionals === 'number' ? [positionals, positionals] : positionals;
  if (parsed.positionals.length < min || parsed.positionals.length > max) throw new ClientError(`usage: ${usage}`);
  return parsed;
}

export const count = new Intl.NumberFormat('en');

function seconds(from: string | null, to: string | null): string {
  if (!from || !to) return '';
  return ` in ${((Date.parse(to) - Date.parse(from)) / 1000).toFixed(1)} s`;
}

export function plural(n: number, noun: string): string {
  return `${count.format(n)} ${noun}${n === 1 ? '' : 's'}`;
}

/**
 * Text from the server as the terminal is to show it: control characters (escape sequences a
 * file name or a message could carry) are written as \u escapes, never sent to the terminal.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A time of the API to the second, as the tables show it. */
export function time(iso: string): string {
  return iso.replace(/\.\d+Z$/, 'Z');
}

/** Rows as columns two spaces apart, with no spaces at the end of a line. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => rows.reduce((width, row) => Math.max(width, row[column]!.length), 0));
  return rows
    .map(
      (row) =>
        `${row
          .map((cell, column) => cell.padEnd(widths[column]!))
          .join('  ')
          .trimEnd()}\n`,
    )
    .join('');
}

/** Where a job loads its rows: `orders (merge on id)`. */
function target(job: JobPayload): string {
  const mode = job.mode === 'merge' ? `merge on ${(job.key ?? []).join(', ')}` : (job.mode ?? 'append');
  return printable(`${job.dataset} (${mode})`);
}

/** The last line of `upload --wait`. */
function summary(job: JobPayload): string {
  const bad = job.records_failed > 0 ? `, ${plural(job.records_failed, 'bad row')} reported` : '';
  if (job.status === 'completed') {
    const loaded =
      job.dataset !== null && job.rows_inserted !== null
        ? `; dataset ${printable(job.dataset)}: ${plural(job.rows_inserted, 'row')} inserted, ${count.format(job.rows_updated ?? 0)} updated`
        : '';
    return `completed: ${plural(job.records_processed, 'record')}${bad}${seconds(job.started_at, job.completed_at)}${loaded}`;
  }
  // A failed or canceled job writes nothing to its dataset; one from before datasets kept what it had committed.
  const kept =
    job.dataset === null
      ? `${plural(job.records_processed, 'record')} kept${bad}`
      : `${plural(job.records_processed, 'record')} read${bad}; dataset ${printable(job.dataset)} unchanged`;
  if (job.status === 'canceled') return `canceled: ${kept}`;
  return `failed: ${printable(job.error ?? 'no error given')} (${kept})`;
}

function progressLine(job: JobPayload, width = 30): string {
  const fraction = job.status === 'completed' ? 1 : job.bytes_total ? Math.min(1, job.bytes_processed / job.bytes_total) : 0;
  const filled = Math.round(fraction * width);
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}%`;
  return `${bar}  ${job.status.padEnd(9)} ${count.format(job.records_processed)} records, ${count.format(job.records_failed)} failed`;
}

/** Follows a job to its end (see follow): its event stream, or its status URL while the stream is down. */
function waitFor(client: Api, jobId: string, onJob: (job: JobPayload) => void): Promise<JobPayload> {
  return follow({
    openStream: (signal) => client.events(jobId, signal),
    read: () => client.job(jobId),
    // Gone, or refused: waiting longer cannot help. Anything else (Intake restarting) is waited out until the user stops us.
    isFatal: (err) => err instanceof ApiError && [401, 403, 404].includes(err.status),
    onJob,
    pollMs: POLL_MS,
    reopenMs: REOPEN_MS,
  });
}

/** Shows progress on stderr: a bar redrawn in place on a terminal, a line per change of status otherwise. */
function progressDisplay(stderr: NodeJS.WriteStream): { update(job: JobPayload): void; end(): void } {
  let lastStatus = '';
  let drawn = false;
  return {
    update(job) {
      if (stderr.isTTY) {
        stderr.write(`\r${progressLine(job, 30)}\x1b[K`);
        drawn = true;
      } else if (job.status !== lastStatus) {
        stderr.write(`${progressLine(job, 30)}\n`);
      }
      lastStatus = job.status;
    },
    end() {
      if (drawn) stderr.write('\n');
    },
  };
}

const READ_USAGE =
  '[--delimiter D] [--quote Q] [--escape double|backslash] [--header-row N] [--skip-lines N] [--ragged error|pad|ignore_extra] [--no-header] [--encoding E] [--locale L] [--date-order DMY|MDY] [--null-values V] [--sheet S] [--format F]';
const UPLOAD_USAGE = `intake upload FILE [--dataset NAME] [--mode append|replace|merge] [--key COLUMNS] [--schema JSON] [--widen] ${READ_USAGE} [--callback-url URL] [--max-errors N] [--wait] [--json]`;

/** How a file is read: an upload, an import and a preview share them. */
const READ_FLAGS = {
  schema: { type: 'string' },
  format: { type: 'string' },
  delimiter: { type: 'string' },
  quote: { type: 'string' },
  escape: { type: 'string' },
  'header-row': { type: 'string' },
  'skip-lines': { type: 'string' },
  ragged: { type: 'string' },
  'no-header': { type: 'boolean' },
  encoding: { type: 'string' },
  locale: { type: 'string' },
  'date-order': { type: 'string' },
  'null-values': { type: 'string' },
  sheet: { type: 'string' },
} as const;

/** The options an upload and an import share: how the file is read and where it loads. */
const LOAD_FLAGS = {
  ...READ_FLAGS,
  dataset: { type: 'string' },
  mode: { type: 'string' },
  key: { type: 'string' },
  widen: { type: 'boolean' },
  'callback-url': { type: 'string' },
  'max-errors': { type: 'string' },
  wait: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

/** LOAD_FLAGS as the API's fields, in the order given; --max-errors checked. */
function loadFields(values: Record<string, unknown>): [string, string][] {
  const maxErrors = values['max-errors'] as string | undefined;
  if (maxErrors !== undefined && !/^\d+$/.test(maxErrors))
    throw new ClientError(`--max-errors must be a whole number, 0 or more, not "${maxErrors}"`);
  const fields: [string, string][] = maxErrors === undefined ? [] : [['max_errors', maxErrors]];
  for (const name of [
    'format',
    'dataset',
    'mode',
    'key',
    'schema',
    'delimiter',
    'quote',
    'escape',
    'ragged',
    'encoding',
    'locale',
    'sheet',
  ] as const)
    if (values[name] !== undefined) fields.push([name, values[name] as string]);
  for (const name of ['header-row', 'skip-lines', 'date-order', 'null-values'] as const)
    if (values[name] !== undefined) fields.push([name.replace('-', '_'), values[name] as string]);
  if (values.widen) fields.push(['schema_update', 'widen']);
  if (values['no-header']) fields.push(['header', 'false']);
  if (values['callback-url'] !== undefined) fields.push(['callback_url', values['callback-url'] as string]);
  return fields;
}

/** The file at `path` after the form fields (Intake reads the fields before the file: they have to come first). */
async function formWith(path: string, fields: [string, string][]): Promise<FormData> {
  let file: Blob;
  try {
    if (!(await stat(path)).isFile()) throw new Error('not a file');
    file = await openAsBlob(path); // read from disk as it is sent, never held in memory
  } catch (err) {
    throw new ClientError(
      `cannot read ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
    );
  }
  const form = new FormData();
  for (const [name, value] of fields) form.append(name, value);
  form.append('file', file, basename(path));
  return form;
}

async function upload(args: string[], io: ClientIo): Promise<number> {
  const { values, positionals } = parse(args, LOAD_FLAGS, 1, UPLOAD_USAGE);
  const form = await formWith(positionals[0]!, loadFields(values));
  const client = api(io.env);
  return submitted(client, await client.upload(form), values, io);
}

const PREVIEW_USAGE = `intake preview FILE [--schema JSON] ${READ_USAGE} [--json]`;

/** How a preview's dialect reads, on one line. */
function dialectLine(dialect: NonNullable<Preview['dialect']>): string {
  const names: Record<string, string> = { ',': 'comma', ';': 'semicolon', '\t': 'tab', '|': 'pipe', ' ': 'space', ', ': 'comma and space' };
  const header =
    dialect.header_row === null
      ? 'no header row'
      : `header on line ${dialect.header_row}${dialect.header_rows > 1 ? ` (over ${dialect.header_rows} rows)` : ''}`;
  return `delimiter ${names[dialect.delimiter] ?? dialect.delimiter}, quote ${dialect.quote}, escape ${dialect.escape}, line ending ${dialect.line_ending}, ${header}`;
}

/** `intake preview FILE`: how Intake would read the file (its dialect, columns and types, first rows); nothing is stored. */
async function preview(args: string[], io: ClientIo): Promise<number> {
  const { values, positionals } = parse(args, { ...READ_FLAGS, json: { type: 'boolean' } }, 1, PREVIEW_USAGE);
  const form = await formWith(positionals[0]!, loadFields(values));
  const answer = await api(io.env).preview(form);
  if (values.json) {
    io.stdout.write(`${JSON.stringify(answer)}\n`);
    return 0;
  }
  const out: string[] = [`format    ${answer.format} (${answer.encoding})\n`];
  if (answer.dialect) {
    out.push(`dialect   ${printable(dialectLine(answer.dialect))}\n`);
    for (const run of answer.dialect.skipped)
      out.push(`skipped   lines ${run.from}–${run.to} ${run.why}: ${printable(JSON.stringify(run.text))}\n`);
  }
  out.push(
    '\n',
    table([
      ['COLUMN', 'TYPE', 'NAME IN FILE', 'EVIDENCE'],
      ...answer.columns.map((c) => [c.name, c.type, c.original, c.evidence.join('; ')].map(printable)),
    ]),
  );
  if (answer.columns.length > 0 && answer.rows.length > 0) {
    const cell = (value: string | null) => printable(value === null ? 'NULL' : value.length > 40 ? `${value.slice(0, 39)}…` : value);
    out.push('\n', table([answer.columns.map((c) => printable(c.name)), ...answer.rows.map((row) => row.map(cell))]));
  }
  out.push(`\n${plural(answer.rows.length, 'row')} shown${answer.truncated ? ' (the file goes on: only its start was read)' : ''}\n`);
  for (const e of answer.row_errors) out.push(`row error on line ${e.line}: ${printable(e.error)}\n`);
  for (const warning of answer.warnings) out.push(`warning: ${printable(warning)}\n`);
  io.stdout.write(out.join(''));
  return 0;
}

const IMPORT_USAGE = `intake import URL|jira [--connection ID --jql JQL] [--dataset NAME] [--mode append|replace|merge] [--key COLUMNS] [--schema JSON] [--widen] ${READ_USAGE} [--callback-url URL] [--max-errors N] [--wait] [--json]`;

/** `intake import https://…|s3://bucket/key`, or `intake import jira --connection ID --jql …`: the server's worker reads the source itself. */
async function importUrl(args: string[], io: ClientIo): Promise<number> {
  const { values, positionals } = parse(args, { ...LOAD_FLAGS, connection: { type: 'string' }, jql: { type: 'string' } }, 1, IMPORT_USAGE);
  const body: Record<string, unknown> =
    positionals[0] === 'jira' ? { source: 'jira', connection: values.connection, jql: values.jql } : { url: positionals[0] };
  for (const [name, value] of loadFields(values)) body[name] = name === 'max_errors' ? Number(value) : value;
  const client = api(io.env);
  return submitted(client, await client.import(body), values, io);
}

/** After an upload or a retry: prints the job, or with --wait follows it to its end. */
async function submitted(client: Api, job: SubmittedJob, values: Record<string, unknown>, io: ClientIo): Promise<number> {
  // Relative unless the server has a PUBLIC_URL: shown as the address it was reached at.
  const statusUrl = printable(new URL(job.status_url, `${client.base}/`).href);
  const queued = `queued: ${statusUrl}${job.dataset === null ? '' : ` into ${target(job)}`}\n`;
  if (!values.wait) {
    if (values.json) io.stdout.write(`${JSON.stringify(job)}\n`);
    else {
      io.stdout.write(`${job.job_id}\n`);
      io.stderr.write(queued);
    }
    return 0;
  }
  // With --json, stdout carries the final job and nothing else is written.
  if (!values.json) io.stderr.write(queued);
  const display = values.json ? undefined : progressDisplay(io.stderr);
  const final = await waitFor(client, job.job_id, (update) => display?.update(update));
  display?.end();
  if (values.json) io.stdout.write(`${JSON.stringify(final)}\n`);
  else {
    io.stdout.write(`${final.job_id}\n`);
    io.stderr.write(`${summary(final)}\n`);
  }
  return final.status === 'completed' ? 0 : 1;
}

async function status(args: string[], io: ClientIo): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1, 'intake status JOB_ID [--json]');
  const job = await api(io.env).job(positionals[0]!);
  if (values.json) {
    io.stdout.write(`${JSON.stringify(job)}\n`);
    return 0;
  }
  const rows: [string, string][] = [
    ['job', job.job_id],
    ['status', job.status],
    ['source', `${job.source_type}${job.file_name ? ` (${job.file_name})` : ''}`],
    ...(job.dataset === null ? [] : [['dataset', target(job)] as [string, string]]),
    [
      'records',
      `${count.format(job.records_processed)} ingested, ${count.format(job.records_failed)} failed (${count.format(job.max_errors)} allowed)`,
    ],
    ...(job.rows_inserted === null
      ? []
      : [['loaded', `${plural(job.rows_inserted, 'row')} inserted, ${count.format(job.rows_updated ?? 0)} updated`] as [string, string]]),
    [
      'read',
      job.bytes_total
        ? `${count.format(job.bytes_processed)} of ${count.format(job.bytes_total)} bytes`
        : `${count.format(job.bytes_processed)} bytes`,
    ],
    ['submitted', job.submitted_at],
    ['started', job.started_at ?? '-'],
    ['finished', job.completed_at ?? '-'],
    ['attempts', String(job.attempts)],
  ];
  if (job.error) rows.push(['error', job.error]);
  io.stdout.write(rows.map(([key, value]) => `${key.padEnd(10)} ${printable(value)}\n`).join(''));
  return 0;
}

async function jobs(args: string[], io: ClientIo): Promise<number> {
  const usage = `intake jobs [--status ${JOB_STATUSES.join('|')}] [--dataset NAME] [--limit N] [--cursor C] [--json]`;
  const { values } = parse(
    args,
    {
      status: { type: 'string' },
      dataset: { type: 'string' },
      limit: { type: 'string' },
      cursor: { type: 'string' },
      json: { type: 'boolean' },
    },
    0,
    usage,
  );
  const filter = { status: values.status as string | undefined, dataset: values.dataset as string | undefined };
  const list = await api(io.env).jobs({
    ...filter,
    limit: values.limit as string | undefined,
    cursor: values.cursor as string | undefined,
  });
  if (values.json) {
    io.stdout.write(`${JSON.stringify(list)}\n`);
    return 0;
  }
  if (list.results.length === 0) {
    io.stderr.write(
      `no ${filter.status ? `${filter.status} ` : ''}jobs${filter.dataset ? ` of dataset ${printable(filter.dataset)}` : ''}\n`,
    );
    return 0;
  }
  const rows = [['JOB_ID', 'STATUS', 'RECORDS', 'FAILED', 'SUBMITTED', 'DATASET', 'SOURCE']];
  for (const job of list.results) {
    rows.push([
      job.job_id,
      job.status,
      count.format(job.records_processed),
      count.format(job.records_failed),
      time(job.submitted_at),
      printable(job.dataset ?? '-'),
      printable(job.file_name ?? job.source_type),
    ]);
  }
  io.stdout.write(table(rows));
  // The cursor is base64url, the status one the API took, the dataset (it has jobs) a name of a-z, 0-9 and _: all safe to paste into a shell.
  const more = Object.entries(filter)
    .map(([name, value]) => (value ? ` --${name} ${value}` : ''))
    .join('');
  if (list.next_cursor !== null) io.stderr.write(`more: intake jobs --cursor ${list.next_cursor}${more}\n`);
  return 0;
}

async function cancel(args: string[], io: ClientIo): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1, 'intake cancel JOB_ID [--json]');
  const job = await api(io.env).cancel(positionals[0]!);
  if (values.json) io.stdout.write(`${JSON.stringify(job)}\n`);
  else io.stderr.write(`${summary(job)}\n`);
  return 0;
}

async function retry(args: string[], io: ClientIo): Promise<number> {
  const { values, positionals } = parse(
    args,
    { 'max-errors': { type: 'string' }, encoding: { type: 'string' }, wait: { type: 'boolean' }, json: { type: 'boolean' } },
    1,
    'intake retry JOB_ID [--max-errors N] [--encoding E] [--wait] [--json]',
  );
  const maxErrors = values['max-errors'] as string | undefined;
  if (maxErrors !== undefined && !/^\d+$/.test(maxErrors))
    throw new ClientError(`--max-errors must be a whole number, 0 or more, not "${maxErrors}"`);
  const client = api(io.env);
  return submitted(client, await client.retry(positionals[0]!, maxErrors, values.encoding as string | undefined), values, io);
}

async function remove(args: string[], io: ClientIo): Promise<number> {
  const { positionals } = parse(args, {}, 1, 'intake delete JOB_ID');
  await api(io.env).remove(positionals[0]!);
  io.stderr.write(`deleted ${positionals[0]}\n`);
  return 0;
}

export type Command = (args: string[], io: ClientIo) => Promise<number>;

/** A command whose API errors are shown as one line each (see clientError). */
export const shown =
  (command: Command): Command =>
  (args, io) =>
    command(args, io).catch((err: unknown) => {
      throw err instanceof ApiError ? clientError(err) : err;
    });

export const CLIENT_COMMANDS: Record<string, Command> = Object.fromEntries(
  Object.entries({ upload, preview, import: importUrl, status, jobs, cancel, retry, delete: remove }).map(([name, command]) => [
    name,
    shown(command),
  ]),
);
