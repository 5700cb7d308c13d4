/**
 * Messy files in, the right table out: every file of test/messy/ through the real API, in
 * every mode, against the table its sidecar `NAME.expect.json` says it gives.
 *
 * A sidecar holds:
 *  - `about`: what the file is (a line of the README's "Messy files" in small);
 *  - `options`: the upload's query parameters (`delimiter`, `quote`, `header_row`, `ragged`,
 *    `locale`, `date_order`, `null_values`, `schema`, `max_errors`, `format` …);
 *  - `columns`: the dataset's columns in order, name → type (GET /api/datasets/{name});
 *    `original`: some of them → their name as the file writes it (joined over a multi-row header);
 *  - `rows`: the dataset's rows in input order, one array per row in the columns' order, read
 *    through POST /api/sql: bigint and numeric as strings with every digit PostgreSQL keeps
 *    (`8493.25`, `1234.50`), booleans as true/false, dates `YYYY-MM-DD`, timestamps in UTC
 *    (`2025-12-31T14:30:00+00:00`), text as it is (`""` an empty string), NULL as null;
 *  - `errors`: the 1-based lines of the row errors (GET /api/job/{id}/errors), none if absent;
 *  - `dialect`: fields the job's `dialect` must hold (delimiter, quote, escape, line_ending,
 *    header_row, header_rows);
 *  - `skipped`: the lines outside the table, `{from, to, why}`. Blank lines are neither here
 *    nor there: a report may start or end a run of skipped lines at a blank line or not;
 *  - `reject`: `{status, mentions}` for an upload refused at once (its detail names each of
 *    `mentions`).
 *
 * Each file is loaded once per mode (all of them at once, a few at a time, when the mode's
 * server starts) and then checked in three tests: the table (columns, rows, row errors, the
 * job's counts), the dialect the job reports, and POST /api/preview (the same columns and
 * dialect, nothing stored). A failure prints the file, the options and a diff of the table.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobPayload } from '../src/core/job.js';
import { backends, createSandbox, getJson, startServer, waitForJob, type Sandbox, type TestServer } from './helpers.js';

const DIR = fileURLToPath(new URL('./messy/', import.meta.url));

interface Skipped {
  from: number;
  to: number;
  why: 'above the table' | 'after the table';
}

interface Expectation {
  about: string;
  options?: Record<string, string>;
  columns?: Record<string, string>;
  original?: Record<string, string>;
  rows?: unknown[][];
  errors?: number[];
  dialect?: Record<string, unknown>;
  skipped?: Skipped[];
  reject?: { status: number; mentions: string[] };
}

interface Case {
  /** The file's name in test/messy/. */
  file: string;
  bytes: Buffer;
  expect: Expectation;
  /** Where it loads: one dataset per file. */
  dataset: string;
}

const NUMERIC = new Set(['bigint', 'numeric']);

function readCorpus(): Case[] {
  const names = readdirSync(DIR).sort();
  const sidecars = new Set(names.filter((name) => name.endsWith('.expect.json')));
  const cases: Case[] = [];
  for (const file of names.filter((name) => !name.endsWith('.expect.json'))) {
    const stem = file.replace(/\.[^.]+$/, '');
    const sidecar = `${stem}.expect.json`;
    if (!sidecars.delete(sidecar)) throw new Error(`test/messy/${file} has no ${sidecar}`);
    cases.push({
      file,
      bytes: readFileSync(DIR + file),
      expect: JSON.parse(readFileSync(DIR + sidecar, 'utf8')) as Expectation,
      dataset: `messy_${stem.replace(/[^a-z0-9]+/g, '_')}`,
    });
  }
  if (sidecars.size > 0) throw new Error(`sidecars without a file in test/messy/: ${[...sidecars].join(', ')}`);
  return cases;
}

const CORPUS = readCorpus();

/** The file as a reader sees it, each line numbered, for a failure's message. */
function shown(c: Case): string {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(c.bytes);
  } catch {
    text = new TextDecoder('windows-1252').decode(c.bytes);
  }
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.at(-1) === '') lines.pop();
  const options = c.expect.options ? ` with ${new URLSearchParams(c.expect.options).toString()}` : '';
  return `test/messy/${c.file}${options} (${c.expect.about})\n${lines.map((line, i) => `${String(i + 1).padStart(3)} | ${line}`).join('\n')}\n`;
}

/** The multipart body of an upload (or preview) of the file. */
function formOf(c: Case): FormData {
  const form = new FormData();
  form.append('file', new Blob([new Uint8Array(c.bytes)]), c.file);
  return form;
}

function queryOf(c: Case, dataset: string): string {
  return new URLSearchParams({ dataset, ...c.expect.options }).toString();
}

/** What a load of one file gave: the upload's answer and, once accepted, the finished job. */
interface Loaded {
  status: number;
  body: any;
  job?: JobPayload;
}

/** Runs at most n of the functions given at once, in the order given. */
function limiter(n: number): <T>(run: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (run) => {
    if (running >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
    try {
      return await run();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}

/** The lines of `from`..`to` that are not blank in the file. */
function nonBlankLines(c: Case, runs: Skipped[]): string[] {
  const lines = c.bytes.toString('latin1').split(/\r\n|\r|\n/);
  const out: string[] = [];
  for (const run of runs) {
    for (let line = run.from; line <= run.to; line++) if ((lines[line - 1] ?? '').trim() !== '') out.push(`${line}: ${run.why}`);
  }
  return out;
}

describe('the messy corpus', () => {
  it('has a sidecar for every file, each small and described', () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(45);
    for (const c of CORPUS) {
      expect(c.bytes.length, c.file).toBeLessThan(2048);
      expect(c.expect.about, c.file).toBeTruthy();
      expect(Boolean(c.expect.reject) !== Boolean(c.expect.columns && c.expect.rows), `${c.file}: either reject or columns and rows`).toBe(
        true,
      );
      for (const row of c.expect.rows ?? [])
        expect(row.length, `${c.file}: a row of ${JSON.stringify(row)}`).toBe(Object.keys(c.expect.columns!).length);
    }
  });
});

describe.each(backends())('messy files ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  const loads = new Map<string, Promise<Loaded>>();

  async function load(c: Case): Promise<Loaded> {
    const res = await fetch(`${server.url}/api/upload?${queryOf(c, c.dataset)}`, { method: 'POST', body: formOf(c) });
    const body = await res.json();
    if (res.status !== 202) return { status: res.status, body };
    return { status: res.status, body, job: await waitForJob(server.url, body.job_id, 60_000) };
  }

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { WORKER_CONCURRENCY: '4' });
    // Every file at once, four at a time: each test then waits for its own.
    const slot = limiter(4);
    for (const c of CORPUS) {
      const started = slot(() => load(c));
      started.catch(() => {}); // its test reports the failure
      loads.set(c.file, started);
    }
  });
  afterAll(async () => {
    await Promise.allSettled(loads.values());
    await server?.close();
    await sandbox?.dispose();
  });

  const loaded = (c: Case): Promise<Loaded> => loads.get(c.file)!;

  /** A dataset's rows through POST /api/sql, in input order, numbers as text (every digit). */
  async function rowsOf(dataset: string, columns: { name: string; type: string }[]): Promise<unknown[][]> {
    if (columns.length === 0) return [];
    const list = columns.map(({ name, type }) => (NUMERIC.has(type) ? `"${name}"::text AS "${name}"` : `"${name}"`)).join(', ');
    const res = await fetch(`${server.url}/api/sql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sql: `SELECT ${list} FROM "${dataset}" ORDER BY _intake_record_no` }),
    });
    const body = (await res.json()) as { rows: unknown[][] };
    if (res.status !== 200) throw new Error(`POST /api/sql answered ${res.status}: ${JSON.stringify(body)}`);
    return body.rows;
  }

  async function errorLinesOf(jobId: string): Promise<number[]> {
    const lines: number[] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: any } = await getJson(
        `${server.url}/api/job/${jobId}/errors?limit=1000${cursor === null ? '' : `&cursor=${cursor}`}`,
      );
      if (page.status !== 200) throw new Error(`GET /errors answered ${page.status}`);
      lines.push(...page.body.results.map((e: { line: number }) => e.line));
      cursor = page.body.next_cursor;
    } while (cursor !== null);
    return lines;
  }

  describe.each(CORPUS)('$file', (c) => {
    const e = c.expect;

    it('loads the table it should', async () => {
      const { status, body, job } = await loaded(c);
      if (e.reject) {
        expect(status, `${shown(c)}answered ${JSON.stringify(body)}`).toBe(e.reject.status);
        const detail = JSON.stringify(body.detail);
        for (const word of e.reject.mentions) expect(detail, `${shown(c)}the refusal names ${word}`).toContain(word);
        return;
      }
      expect(status, `${shown(c)}the upload answered ${JSON.stringify(body)}`).toBe(202);
      expect(job!.status, `${shown(c)}the job ended ${job!.status}: ${job!.error}`).toBe('completed');
      const columns = ((await getJson(`${server.url}/api/datasets/${c.dataset}`)).body.columns ?? []) as {
        name: string;
        type: string;
        original_name: string;
      }[];
      const actual = {
        columns: columns.map(({ name, type }) => `${name} ${type}`),
        original: Object.fromEntries(
          Object.keys(e.original ?? {}).map((name) => [name, columns.find((col) => col.name === name)?.original_name]),
        ),
        rows: await rowsOf(c.dataset, columns),
        errors: await errorLinesOf(job!.job_id),
        counts: { records_processed: job!.records_processed, records_failed: job!.records_failed },
      };
      const expected = {
        columns: Object.entries(e.columns!).map(([name, type]) => `${name} ${type}`),
        original: e.original ?? {},
        rows: e.rows,
        errors: e.errors ?? [],
        counts: { records_processed: e.rows!.length, records_failed: (e.errors ?? []).length },
      };
      expect(actual, shown(c)).toEqual(expected);
    });

    // A sidecar that names no dialect field is about the table alone.
    if (e.dialect || e.skipped)
      it('reports the dialect it read', async () => {
        const { status, body, job } = await loaded(c);
        expect(status, `${shown(c)}the upload answered ${JSON.stringify(body)}`).toBe(202);
        const dialect = (job as unknown as { dialect?: Record<string, unknown> & { skipped?: Skipped[] } }).dialect;
        expect(dialect, `${shown(c)}the job has no dialect`).toBeTruthy();
        expect(dialect, shown(c)).toMatchObject(e.dialect ?? {});
        expect(nonBlankLines(c, dialect!.skipped ?? []), `${shown(c)}skipped: ${JSON.stringify(dialect!.skipped)}`).toEqual(
          nonBlankLines(c, e.skipped ?? []),
        );
      });
  });

  // Preview answers at once and keeps nothing; for these small files it sees the whole file,
  // so its columns, types and dialect are the load's.
  describe.each(CORPUS)('POST /api/preview $file', (c) => {
    const e = c.expect;
    it('answers the columns and dialect the load finds, storing nothing', async () => {
      const dataset = `${c.dataset}_preview`.slice(0, 63);
      const res = await fetch(`${server.url}/api/preview?${queryOf(c, dataset)}`, { method: 'POST', body: formOf(c) });
      const preview = await res.json();
      expect(res.status, `${shown(c)}answered ${JSON.stringify(preview)}`).toBe(200);
      if (e.reject) {
        // A preview shows what an upload would refuse, with the file's columns to set it right.
        const warnings = (preview.warnings as string[]).join('\n');
        for (const word of e.reject.mentions) expect(warnings, `${shown(c)}the warning names ${word}`).toContain(word);
        return;
      }
      const actual = {
        format: preview.format,
        columns: (preview.columns ?? []).map(({ name, type }: { name: string; type: string }) => `${name} ${type}`),
        rows: preview.rows?.length,
        row_errors: (preview.row_errors ?? []).map((error: { line: number }) => error.line),
        skipped: nonBlankLines(c, preview.dialect?.skipped ?? []),
      };
      expect(actual, shown(c)).toEqual({
        format: 'csv',
        columns: Object.entries(e.columns!).map(([name, type]) => `${name} ${type}`),
        rows: e.rows!.length,
        row_errors: e.errors ?? [],
        skipped: nonBlankLines(c, e.skipped ?? []),
      });
      expect(preview.dialect, shown(c)).toMatchObject(e.dialect ?? {});
      expect((await getJson(`${server.url}/api/datasets/${dataset}`)).status, 'a preview stores nothing').toBe(404);
    });
  });

  it('never answered 5xx', async () => {
    await Promise.allSettled(loads.values());
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
  });
});
