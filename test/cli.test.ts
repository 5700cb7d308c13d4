import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NODE_FLAGS } from '../src/cli/node-flags.js';
import { loadConfig } from '../src/config.js';
import { prettyLine } from '../src/core/pretty-log.js';
import { backends, createSandbox, getJson, makeCsv, startServer, waitForJob, type Sandbox, type TestServer } from './helpers.js';
import { runCommand } from './process.js';

const BIN = fileURLToPath(new URL('../bin/intake.js', import.meta.url));

/** The `intake` command, as installed (bin/intake.js), run in a folder of files to upload. */
function intake(cwd: string, args: string[], intakeUrl: string) {
  return intakeWith({ INTAKE_URL: intakeUrl }, args, cwd);
}

/** The installed command with an environment of its own. */
function intakeWith(env: Record<string, string>, args: string[], cwd?: string) {
  return runCommand(process.execPath, [BIN, ...args], { cwd, env });
}

describe.each(backends())('intake CLI ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  let dir: string;
  const run = (...args: string[]) => intake(dir, args, server.url);

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox);
    dir = mkdtempSync(join(tmpdir(), 'intake-cli-'));
    writeFileSync(join(dir, 'people.csv'), makeCsv(5_000));
    writeFileSync(join(dir, 'one-bad.ndjson'), '{"a":1}\n{"a":2}\nnot json\n{"a":4}\n');
    writeFileSync(join(dir, 'bad.csv'), 'id,name\n1,a\n2\n3,c\n');
    writeFileSync(join(dir, 'notes.txt'), 'hello\n');
    writeFileSync(join(dir, 'orders.csv'), 'id,qty,Unit Price,note\n1,2,10.50,first\n2,3,0.5,second\n');
    writeFileSync(join(dir, 'orders-update.csv'), 'id,qty,Unit Price,note\n2,5,9.99,changed\n3,1,12345678901234567890.5,new\n');
    writeFileSync(join(dir, 'orders-wider.csv'), 'id,qty\n4,2.5\n');
    writeFileSync(join(dir, 'many.csv'), makeCsv(50_000));
  });

  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('upload --wait follows a job to completed and exits 0; status and jobs show it', async () => {
    const { code, stdout, stderr } = await run('upload', 'people.csv', '--wait');
    expect(stderr).toMatch(/^queued: http:\/\/127\.0\.0\.1:\d+\/api\/job\/[0-9a-f-]{36} into people \(append\)\n/);
    expect(stderr).toMatch(/\[#{30}\] 100% {2}completed 5,000 records, 0 failed\n/);
    expect(stderr).toMatch(/\ncompleted: 5,000 records in \d+\.\d s; dataset people: 5,000 rows inserted, 0 updated\n$/);
    expect(code).toBe(0);
    const jobId = stdout.trim();
    expect((await getJson(`${server.url}/api/job/${jobId}`)).body).toMatchObject({ status: 'completed', records_processed: 5000 });

    const status = await run('status', jobId);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(
      `job        ${jobId}\nstatus     completed\nsource     csv_upload (people.csv)\ndataset    people (append)\nrecords    5,000 ingested, 0 failed (0 allowed)\nloaded     5,000 rows inserted, 0 updated\n`,
    );
    const asJson = await run('status', jobId, '--json');
    expect(JSON.parse(asJson.stdout)).toMatchObject({ job_id: jobId, status: 'completed', records_processed: 5000 });

    const jobs = await run('jobs', '--status', 'completed');
    expect(jobs.code).toBe(0);
    const lines = jobs.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^JOB_ID\s+STATUS\s+RECORDS\s+FAILED\s+SUBMITTED\s+DATASET\s+SOURCE$/);
    expect(lines.some((line) => line.startsWith(jobId) && /completed\s+5,000\s+0\s+\S+Z\s+people\s+people\.csv$/.test(line))).toBe(true);
  });

  it('never sends control characters from the server to the terminal', async () => {
    // Rows written before file names were cleaned on upload could hold any character.
    const jobId = '00000000-0000-4000-8000-00000000e5c0';
    await server.intake.db.query(
      `INSERT INTO ingest_jobs (job_id, source_type, file_name, format, status, error, completed_at)
       VALUES ($1, 'csv_upload', $2, 'csv', 'failed', $3, NOW())`,
      [jobId, 'evil\u001b[2J\u001b]0;pwned\u0007.csv', 'bad \u001b[31mred\u009b line'],
    );
    for (const args of [['jobs'], ['status', jobId]]) {
      const { code, stdout } = await run(...args);
      expect(code).toBe(0);
      expect(stdout).toContain('evil\\u001b[2J\\u001b]0;pwned\\u0007.csv');
      expect(stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    }
  });

  it('upload --wait exits 1 when the job fails, and says why in one line', async () => {
    const { code, stdout, stderr } = await run('upload', 'bad.csv', '--wait');
    expect(code).toBe(1);
    expect(stdout.trim()).toMatch(/^[0-9a-f-]{36}$/);
    expect(stderr.trim().split('\n').at(-1)).toBe(
      'failed: CSV error on line 3: expected 2 fields as in the header, found 1 (1 record read, 1 bad row reported; dataset bad unchanged)',
    );
  });

  it('upload --max-errors lets a job skip bad rows and complete', async () => {
    const { code, stdout, stderr } = await run('upload', 'one-bad.ndjson', '--max-errors', '1', '--wait', '--json');
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ status: 'completed', records_processed: 3, records_failed: 1, max_errors: 1 });
    expect(stderr).toBe(''); // --json: nothing but the job, for scripts
  });

  it('preview prints the dialect, the columns with their types and the first rows; --json the answer; nothing is stored', async () => {
    writeFileSync(join(dir, 'euro.csv'), 'id;name;note\n1;anna;\n2;bo;x\n');
    const { code, stdout, stderr } = await run('preview', 'euro.csv');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(
      /^format {4}csv \(utf-8\)\ndialect {3}delimiter semicolon, quote ", escape double, line ending LF, header on line 1\n/,
    );
    expect(stdout).toContain(
      '\nCOLUMN  TYPE    NAME IN FILE  EVIDENCE\nid      bigint  id\nname    text    name          text: "anna" on line 2\nnote    text    note          text: "x" on line 3\n',
    );
    expect(stdout).toContain('\nid  name  note\n1   anna  NULL\n2   bo    x\n\n2 rows shown\n');
    const json = await run('preview', 'euro.csv', '--delimiter', 'pipe', '--json');
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ columns: [{ name: 'id_name_note' }], rows: [['1;anna;'], ['2;bo;x']] });
    const refused = await run('preview', 'euro.csv', '--ragged', 'sometimes');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^intake: body\.ragged: ragged is error .* \(HTTP 422 validation_error\)\n$/);
    expect((await getJson(`${server.url}/api/datasets/euro`)).status).toBe(404);
  });

  it('upload without --wait answers at once with the job id', async () => {
    const { code, stdout, stderr } = await run('upload', 'people.csv');
    expect(code).toBe(0);
    const jobId = stdout.trim();
    expect(stderr).toBe(`queued: ${server.url}/api/job/${jobId} into people (append)\n`);
    expect((await waitForJob(server.url, jobId)).status).toBe('completed');
  });

  it('jobs pages by cursor: each page says how to get the next', async () => {
    const all = (await getJson(`${server.url}/api/jobs?limit=100`)).body.results.map((job: { job_id: string }) => job.job_id);
    expect(all.length).toBeGreaterThanOrEqual(3);
    const seen: string[] = [];
    let args = ['jobs', '--limit', '2'];
    for (let page = 0; page < 100; page++) {
      const { code, stdout, stderr } = await run(...args);
      expect(code).toBe(0);
      seen.push(
        ...stdout
          .trim()
          .split('\n')
          .slice(1)
          .map((line) => line.split(/\s+/)[0]!),
      );
      const more = /^more: intake jobs --cursor ([A-Za-z0-9_-]+)$/m.exec(stderr);
      if (!more) break;
      args = ['jobs', '--limit', '2', '--cursor', more[1]!];
    }
    expect(seen).toEqual(all);
  });

  it('retry, cancel and delete a job', async () => {
    const failed = await run('upload', 'bad.csv', '--wait');
    expect(failed.code).toBe(1);
    const jobId = failed.stdout.trim();
    const retried = await run('retry', jobId, '--max-errors', '5', '--wait');
    expect(retried.code).toBe(0);
    expect(retried.stdout.trim()).toBe(jobId);
    expect(retried.stderr.trim().split('\n').at(-1)).toMatch(
      /^completed: 2 records, 1 bad row reported in \d+\.\d s; dataset bad: 2 rows inserted, 0 updated$/,
    );
    const cancel = await run('cancel', jobId);
    expect(cancel.code).toBe(2);
    expect(cancel.stderr).toBe(
      'intake: The job is already completed: only a queued or running job can be canceled (HTTP 409 job_finished)\n',
    );
    const removed = await run('delete', jobId);
    expect(removed).toEqual({ code: 0, stdout: '', stderr: `deleted ${jobId}\n` });
    expect((await run('status', jobId)).code).toBe(2);
  });

  it('upload reads a CSV with the delimiter and header it is given (--delimiter, --no-header)', async () => {
    writeFileSync(join(dir, 'bare.csv'), '1|Ada\n2|Grace\n');
    const done = await run('upload', 'bare.csv', '--dataset', 'bare', '--delimiter', '|', '--no-header', '--wait');
    expect(done.code).toBe(0);
    const jobId = done.stdout.trim();
    expect((await getJson(`${server.url}/api/job/${jobId}/records`)).body.results.map((r: { data: unknown }) => r.data)).toEqual([
      { column_1: 1, column_2: 'Ada' },
      { column_1: 2, column_2: 'Grace' },
    ]);
    const bad = await run('upload', 'bare.csv', '--delimiter', ':');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^intake: body\.delimiter: delimiter is one of , ; \| a tab, a space or ", "/);
  });

  it('upload loads into a dataset: --dataset, --mode merge --key, --schema, --widen; the job lines say where and what was loaded', async () => {
    const args = ['--dataset', 'orders', '--mode', 'merge', '--key', 'id'];
    const first = await run('upload', 'orders.csv', ...args, '--schema', '{"qty":"bigint"}', '--wait');
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/^queued: http:\/\/127\.0\.0\.1:\d+\/api\/job\/[0-9a-f-]{36} into orders \(merge on id\)\n/);
    expect(first.stderr).toMatch(/\ncompleted: 2 records in \d+\.\d s; dataset orders: 2 rows inserted, 0 updated\n$/);

    const second = await run('upload', 'orders-update.csv', ...args);
    expect(second.code).toBe(0);
    const jobId = second.stdout.trim();
    expect(second.stderr).toBe(`queued: ${server.url}/api/job/${jobId} into orders (merge on id)\n`);
    expect(await waitForJob(server.url, jobId)).toMatchObject({
      status: 'completed',
      dataset: 'orders',
      mode: 'merge',
      key: ['id'],
      rows_inserted: 1,
      rows_updated: 1,
    });
    const status = await run('status', jobId);
    expect(status.stdout).toContain(
      'dataset    orders (merge on id)\nrecords    2 ingested, 0 failed (0 allowed)\nloaded     1 row inserted, 1 updated\n',
    );
    const jobs = await run('jobs', '--dataset', 'orders');
    expect(
      jobs.stdout
        .trim()
        .split('\n')
        .slice(1)
        .map((line) => line.split(/\s+/).slice(-2)),
    ).toEqual([
      ['orders', 'orders-update.csv'],
      ['orders', 'orders.csv'],
    ]);

    // A value wider than its column (qty is bigint) fails the job, which writes nothing; --widen widens the column.
    const narrow = await run('upload', 'orders-wider.csv', '--dataset', 'orders', '--wait');
    expect(narrow.code).toBe(1);
    expect(narrow.stderr.trim().split('\n').at(-1)).toMatch(
      /^failed: .*column "qty" is bigint and cannot hold "2\.5".*; dataset orders unchanged\)$/,
    );
    const widened = await run('upload', 'orders-wider.csv', '--dataset', 'orders', '--widen', '--wait');
    expect(widened.code).toBe(0);
    expect(widened.stderr.trim().split('\n').at(-1)).toMatch(/; dataset orders: 1 row inserted, 0 updated$/);
  });

  it('datasets lists every dataset; datasets NAME shows one with its columns', async () => {
    const { code, stdout, stderr } = await run('datasets');
    expect(code).toBe(0);
    expect(stderr).toBe('');
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+ROWS\s+COLUMNS\s+LAST_LOADED\s+LAST_JOB$/);
    const all = (await getJson(`${server.url}/api/datasets?limit=1000`)).body.results as { name: string; last_job_id: string }[];
    expect(lines.slice(1).map((line) => line.split(/\s+/)[0])).toEqual(all.map((dataset) => dataset.name));
    const lastJob = all.find((dataset) => dataset.name === 'orders')!.last_job_id;
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^orders\\s+4\\s+4\\s+\\S+Z\\s+${lastJob}$`)));
    const asJson = await run('datasets', '--json');
    expect(
      asJson.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line).name),
    ).toEqual(all.map((dataset) => dataset.name));

    const one = await run('datasets', 'orders');
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(
      new RegExp(
        `^dataset    orders\nrows       4\ncolumns    4\ncreated    \\S+Z\nloaded     \\S+Z by job ${lastJob}\n\n` +
          'COLUMN      TYPE     ORIGINAL_NAME\nid          bigint   id\nqty         numeric  qty\nunit_price  numeric  Unit Price\nnote        text     note\n$',
      ),
    );
    expect(JSON.parse((await run('datasets', 'orders', '--json')).stdout)).toMatchObject({
      name: 'orders',
      row_count: 4,
      last_job_id: lastJob,
    });
  });

  it('export streams a dataset to stdout, as CSV or NDJSON with every digit', async () => {
    const csv = await run('export', 'orders');
    expect(csv).toEqual({ code: 0, stdout: await (await fetch(`${server.url}/api/datasets/orders/export`)).text(), stderr: '' });
    expect(csv.stdout.split('\r\n')[0]).toBe('id,qty,unit_price,note');
    const ndjson = await run('export', 'orders', '--format', 'ndjson');
    expect(ndjson.code).toBe(0);
    expect(ndjson.stdout.trim().split('\n').sort()).toEqual([
      '{"id":1,"qty":2,"unit_price":10.50,"note":"first"}',
      '{"id":2,"qty":5,"unit_price":9.99,"note":"changed"}',
      '{"id":3,"qty":1,"unit_price":12345678901234567890.5,"note":"new"}',
      '{"id":4,"qty":2.5,"unit_price":null,"note":null}',
    ]);
  });

  it('export stops quietly, exit 0, when the reader closes early (| head)', async () => {
    expect((await run('upload', 'many.csv', '--wait')).code).toBe(0);
    const child = spawn(process.execPath, [BIN, 'export', 'many'], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', INTAKE_URL: server.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [first] = (await once(child.stdout, 'data')) as [Buffer];
    expect(first.toString()).toMatch(/^id,name,note\r\n/);
    child.stdout.destroy(); // 3.5 MB still to come: the next write finds the pipe closed (EPIPE)
    const [code] = (await once(child, 'close')) as [number | null];
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  });

  it('sql prints the rows as a table or the answer as JSON, every digit kept, and says when the answer was truncated', async () => {
    const query = 'SELECT id, qty, unit_price, note FROM orders ORDER BY id';
    expect(await run('sql', query)).toEqual({
      code: 0,
      stdout:
        'id  qty  unit_price              note\n' +
        '1   2    10.50                   first\n' +
        '2   5    9.99                    changed\n' +
        '3   1    12345678901234567890.5  new\n' +
        '4   2.5\n',
      stderr: '4 rows\n',
    });
    expect(await run('sql', query, '--json')).toEqual({
      code: 0,
      stdout:
        '{"columns":[{"name":"id","type":"bigint"},{"name":"qty","type":"numeric"},{"name":"unit_price","type":"numeric"},{"name":"note","type":"text"}],' +
        '"rows":[[1,2,10.50,"first"],[2,5,9.99,"changed"],[3,1,12345678901234567890.5,"new"],[4,2.5,null,null]],"truncated":false}\n',
      stderr: '',
    });
    // Columns in the query's order, a name given twice shown twice.
    expect((await run('sql', 'SELECT 1 AS a, 2 AS a, id FROM orders WHERE id = 1')).stdout).toBe('a  a  id\n1  2  1\n');
    const control = await run('sql', "SELECT chr(27) || '[2J' AS evil, json_build_object('n', 12345678901234567890) AS doc");
    expect(control.stdout).toBe('evil       doc\n\\u001b[2J  {"n":12345678901234567890}\n');

    // SQL_MAX_ROWS is 1,000 by default; many has 50,000 rows.
    const many = await run('sql', 'SELECT id FROM many');
    expect(many.code).toBe(0);
    expect(many.stdout.trim().split('\n')).toHaveLength(1001);
    expect(many.stderr).toBe('truncated: the query has more rows than the 1,000 here (narrow it, or add a LIMIT)\n');
    const manyJson = await run('sql', 'SELECT id FROM many', '--json');
    expect(JSON.parse(manyJson.stdout)).toMatchObject({ rows: expect.any(Array), truncated: true });
    expect(JSON.parse(manyJson.stdout).rows).toHaveLength(1000);
    expect(manyJson.stderr).toBe(many.stderr);

    const refused = await run('sql', 'DELETE FROM orders');
    expect(refused.code).toBe(2);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/^intake: [^\n]+ \(HTTP 422 sql_refused\)\n$/);
  });

  it.each([
    [['upload', 'missing.csv'], 'intake: cannot read missing.csv: no such file'],
    [
      ['upload', 'notes.txt'],
      'intake: Unsupported file type "notes.txt": send a .csv, .tsv, .json, .ndjson, .jsonl or .xlsx file (gzip, zstd or zip as well), or say format= (HTTP 415 unsupported_file_type)',
    ],
    [['upload', 'people.csv', '--max-errors', '-1'], "intake: Option '--max-errors' argument is ambiguous"],
    [['upload', 'people.csv', '--max-errors', 'many'], 'intake: --max-errors must be a whole number, 0 or more, not "many"'],
    [
      ['upload'],
      'intake: usage: intake upload FILE [--dataset NAME] [--mode append|replace|merge] [--key COLUMNS] [--schema JSON] [--widen] [--delimiter D] [--quote Q] [--escape double|backslash] [--header-row N] [--skip-lines N] [--ragged error|pad|ignore_extra] [--no-header] [--encoding E] [--locale L] [--date-order DMY|MDY] [--null-values V] [--sheet S] [--format F] [--callback-url URL] [--max-errors N] [--wait] [--json]',
    ],
    [
      ['upload', 'people.csv', '--mode', 'merge'],
      'intake: body.key: mode=merge needs key: the column (or comma-separated columns) rows are matched on (HTTP 422 validation_error)',
    ],
    [
      ['import', 'http://169.254.169.254/latest/meta-data/'],
      'intake: 169.254.169.254, a loopback, private, link-local or metadata address: imports may not reach it (IMPORT_ALLOW_PRIVATE=true allows it) (HTTP 422 import_refused)',
    ],
    [
      ['import', 'ftp://example.com/a.csv'],
      'intake: body.url: ftp:// URLs cannot be imported: use http, https or s3 (HTTP 422 validation_error)',
    ],
    [
      ['import'],
      'intake: usage: intake import URL|jira [--connection ID --jql JQL] [--dataset NAME] [--mode append|replace|merge] [--key COLUMNS] [--schema JSON] [--widen] [--delimiter D] [--quote Q] [--escape double|backslash] [--header-row N] [--skip-lines N] [--ragged error|pad|ignore_extra] [--no-header] [--encoding E] [--locale L] [--date-order DMY|MDY] [--null-values V] [--sheet S] [--format F] [--callback-url URL] [--max-errors N] [--wait] [--json]',
    ],
    [['datasets', 'nope'], 'intake: No dataset named "nope" (HTTP 404 dataset_not_found)'],
    [['export', 'nope'], 'intake: No dataset named "nope" (HTTP 404 dataset_not_found)'],
    [['export', 'orders', '--format', 'xml'], 'intake: --format is csv or ndjson, not "xml"'],
    [['sql'], 'intake: usage: intake sql "SELECT …" [--json]'],
    [['status', '00000000-0000-4000-8000-000000000000'], 'intake: Job not found (HTTP 404 job_not_found)'],
    [
      ['jobs', '--status', 'done'],
      'intake: query.status: status must be one of: queued, running, completed, failed, canceled (HTTP 422 validation_error)',
    ],
    [['jobs', '--verbose'], "intake: Unknown option '--verbose'"],
    [['frobnicate'], 'intake: unknown command "frobnicate"'],
  ])('%j fails with one clear line and exit code 2', async (args, message) => {
    const { code, stdout, stderr } = await run(...args);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr.split('\n')[0]).toBe(message);
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('says plainly when Intake cannot be reached', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve)); // a port where nothing listens
    const { code, stderr } = await intake(dir, ['jobs'], `http://127.0.0.1:${port}`);
    expect(code).toBe(2);
    expect(stderr).toBe(`intake: cannot reach Intake at http://127.0.0.1:${port}: ECONNREFUSED (is it running? set INTAKE_URL)\n`);
    const bad = await intake(dir, ['jobs'], 'localhost:8000');
    expect(bad.stderr).toBe('intake: INTAKE_URL must be an http(s) URL such as http://localhost:8000, not "localhost:8000"\n');
  });
});

describe('the V8 flags of an Intake process', () => {
  it('are the same wherever it starts: npm start, npm run worker, the installed command', () => {
    const scripts = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> })
      .scripts;
    // exec: npm's child is Intake itself, so a SIGTERM npm passes on reaches it (not only the shell).
    for (const name of ['start', 'worker']) expect(scripts[name], name).toMatch(new RegExp(`^exec node ${NODE_FLAGS.join(' ')} `));
    expect(readFileSync(BIN, 'utf8').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`);
  });
});

describe('logs', () => {
  it('read as lines on a terminal (LOG_FORMAT=pretty), as JSON lines otherwise', () => {
    const time = Date.UTC(2026, 11, 1, 12, 0, 1);
    const clock = new Date(time).toTimeString().slice(0, 8);
    expect(
      prettyLine(
        JSON.stringify({ level: 30, time, pid: 1, hostname: 'h', msg: 'job run ended', jobId: 'ab', outcome: 'completed' }),
        false,
      ),
    ).toBe(`${clock} INFO  job run ended jobId=ab outcome=completed`);
    expect(
      prettyLine(
        JSON.stringify({ level: 50, time, msg: 'failed', path: 'a b', err: { message: 'boom', stack: 'Error: boom\n    at x' } }),
        false,
      ),
    ).toBe(`${clock} ERROR failed path="a b"\n  Error: boom\n    at x`);
    expect(prettyLine('not json', false)).toBe('not json');
    expect(() => loadConfig({ LOG_FORMAT: 'xml' })).toThrow(/LOG_FORMAT/);
    expect(loadConfig({}).logFormat).toBe('auto');
  });
});

describe('intake --version and intake doctor', () => {
  const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  let dataDir: string;
  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'intake-doctor-'));
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('prints the version', async () => {
    for (const flag of ['--version', '-V', 'version']) {
      const { code, stdout } = await intakeWith({}, [flag]);
      expect(code).toBe(0);
      expect(stdout).toBe(`intake ${version} (Node.js ${process.versions.node})\n`);
    }
  });

  it('checks the machine and the configuration, a line each, and exits 1 when something fails', async () => {
    const embedded = await intakeWith({ DATA_DIR: join(dataDir, 'new') }, ['doctor']);
    expect(embedded.code).toBe(0);
    expect(embedded.stdout).toMatch(new RegExp(`^ok {4}Intake ${version.replace(/\./g, '\\.')}\n`));
    expect(embedded.stdout).toMatch(/^(ok|warn) +Node\.js \d+\.\d+\.\d+/m);
    expect(embedded.stdout).toMatch(/^ok {4}configuration: valid; mode embedded/m);
    expect(embedded.stdout).toMatch(
      new RegExp(`^ok {4}DATA_DIR ${join(dataDir, 'new')} \\(made at the first start, in ${dataDir}\\): writable, [\\d.]+ GiB free$`, 'm'),
    );
    expect(embedded.stdout).toMatch(/^ok {4}EMBEDDED_FSYNC: each commit is flushed to disk/m);
    expect(embedded.stdout).toMatch(/Nothing failed\.\n$/);
    const unflushed = await intakeWith({ DATA_DIR: join(dataDir, 'new'), EMBEDDED_FSYNC: 'false' }, ['doctor']);
    expect(unflushed.code).toBe(0);
    expect(unflushed.stdout).toMatch(/^warn {2}EMBEDDED_FSYNC=false: a power failure can lose the last commits$/m);

    const refused = await intakeWith({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' }, ['doctor']);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(/^FAIL {2}PostgreSQL at 127\.0\.0\.1:1\/none: connect ECONNREFUSED/m);

    // PostgreSQL mode on a DATA_DIR that holds an embedded Intake: their default UPLOAD_DIR is one folder.
    mkdirSync(join(dataDir, 'shared', 'pgdata'), { recursive: true });
    writeFileSync(join(dataDir, 'shared', 'pgdata', 'PG_VERSION'), '17\n');
    const shared = await intakeWith({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', DATA_DIR: join(dataDir, 'shared') }, [
      'doctor',
    ]);
    expect(shared.stdout).toContain(
      `warn  UPLOAD_DIR ${join(dataDir, 'shared', 'uploads')} (the default) is also where the embedded Intake in DATA_DIR ${join(dataDir, 'shared')} keeps its uploads`,
    );
    const apart = await intakeWith(
      { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', DATA_DIR: join(dataDir, 'shared'), UPLOAD_DIR: join(dataDir, 'pg-uploads') },
      ['doctor'],
    );
    expect(apart.stdout).not.toContain('is also where the embedded Intake');

    const bad = await intakeWith({ PORT: 'eighty' }, ['doctor']);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/^FAIL {2}configuration: PORT/m);

    if (process.env.DATABASE_URL && process.env.REDIS_URL) {
      const scaleOut = await intakeWith({ DATABASE_URL: process.env.DATABASE_URL, REDIS_URL: process.env.REDIS_URL }, ['doctor']);
      expect(scaleOut.code).toBe(0);
      expect(scaleOut.stdout).toMatch(/^ok {4}PostgreSQL \d+\.\d+.* at .*: reachable/m);
      expect(scaleOut.stdout).toMatch(/^ok {4}Redis \d+\.\d+\.\d+ at .*: reachable$/m);
    }
  });

  it('says in one line which port is taken and what to change', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as AddressInfo;
    try {
      const { code, stderr } = await intakeWith({ PORT: String(port), DATA_DIR: join(dataDir, 'serve'), LOG_LEVEL: 'silent' }, ['serve']);
      expect(code).toBe(2);
      expect(stderr).toBe(`intake: port ${port} on 127.0.0.1 is already in use (is Intake already running?): set PORT to another port\n`);
    } finally {
      taken.close();
    }
  }, 60_000);
});
