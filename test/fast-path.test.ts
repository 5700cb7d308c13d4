/**
 * The fast path (jobs/fast-path.ts): COPY of a stored CSV file straight into its dataset. Its
 * record splitter on its own (every chunking of the same bytes gives the same records); then,
 * against PostgreSQL, the same files loaded by the fast path and by the checked path
 * (FAST_PATH_MAX_BYTES=0) give the same table, types, counters and errors, and a file the fast
 * path cannot load as Intake reads it falls back, saying so on the job.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobPayload } from '../src/core/job.js';
import { copyRecords, NotPlainCsv } from '../src/formats/csv-copy.js';
import { backends, createSandbox, FAST, startServer, waitForJob, type Sandbox, type TestServer } from './helpers.js';

async function copied(text: string, chunk: number, delimiter = ',', quote = '"'): Promise<{ out: string; records: number }> {
  const bytes = Buffer.from(text);
  const chunks = async function* () {
    for (let i = 0; i < bytes.length; i += chunk) yield bytes.subarray(i, i + chunk);
  };
  let records = -1;
  const out: Buffer[] = [];
  for await (const part of copyRecords(chunks(), { delimiter: delimiter.charCodeAt(0), quote: quote.charCodeAt(0) }, (n) => (records = n)))
    out.push(part);
  return { out: Buffer.concat(out).toString(), records };
}

describe('copyRecords', () => {
  const cases: [string, string, number][] = [
    ['a,b\n1,2\n3,4\n', '0,1,2\n1,3,4\n', 2],
    ['a,b\r\n1,2\r\n3,4', '0,1,2\r\n1,3,4', 2],
    ['"a\nx",b\n"1\n2","x ""y"", z"\n,\n', '0,"1\n2","x ""y"", z"\n1,,\n', 2],
    ['\uFEFFé,ü\n"",ä\n', '0,"",ä\n', 1],
    ['a,b\n1,2\n\n\r\n', '0,1,2\n', 1],
    ['a,b\n', '', 0],
    ['a,b', '', 0],
  ];
  it('drops the header, numbers each record and passes its bytes on as written, however the input is cut', async () => {
    for (const [input, expected, records] of cases) {
      for (const chunk of [1, 2, 3, 5, 64 * 1024]) {
        expect(await copied(input, chunk), `${JSON.stringify(input)} in chunks of ${chunk}`).toEqual({ out: expected, records });
      }
    }
    expect(await copied("a;b\n'x;y';2\n", 1, ';', "'")).toEqual({ out: "0;'x;y';2\n", records: 1 });
  });

  it('refuses what COPY would read otherwise than Intake: a stray quote, text after a closing quote, a blank line inside the table', async () => {
    for (const input of ['a,b\n1,x"y\n', 'a,b\n"1"x,2\n', 'a,b\n1,2\n\n3,4\n', 'a,b\n1,"open\n', 'a,b\r1,2\r']) {
      for (const chunk of [1, 4, 1024]) {
        const result = copied(input, chunk);
        if (input.includes('\r'))
          await expect(result).resolves.toMatchObject({ records: 0 }); // CR alone: one line, for COPY to refuse
        else await expect(result, JSON.stringify(input)).rejects.toBeInstanceOf(NotPlainCsv);
      }
    }
  });
});

const servers = backends().filter((b) => b.name !== 'embedded');

describe.skipIf(servers.length === 0).each(servers)('fast path against the checked path ($name)', (backend) => {
  let fastBox: Sandbox;
  let checkedBox: Sandbox;
  let fast: TestServer;
  let checked: TestServer;

  beforeAll(async () => {
    fastBox = await createSandbox(backend);
    checkedBox = await createSandbox(backend);
    fast = await startServer(fastBox, { FAST_PATH_MAX_BYTES: String(1024 ** 3) });
    checked = await startServer(checkedBox, { FAST_PATH_MAX_BYTES: '0' });
  });
  afterAll(async () => {
    await fast?.close();
    await checked?.close();
    await fastBox?.dispose();
    await checkedBox?.dispose();
  });

  async function load(server: TestServer, name: string, content: string, query: Record<string, string>): Promise<JobPayload> {
    const form = new FormData();
    form.append('file', new Blob([content]), name);
    const res = await fetch(`${server.url}/api/upload?${new URLSearchParams(query)}`, { method: 'POST', body: form });
    const body = (await res.json()) as { job_id: string };
    expect(res.status, JSON.stringify(body)).toBe(202);
    return waitForJob(server.url, body.job_id, 240_000);
  }

  /** The dataset's columns and types, and its rows as text in arrival order (Intake's id left out). */
  async function contents(server: TestServer, dataset: string) {
    const db = server.intake.db;
    const { rows: columns } = await db.query<{ name: string; type: string }>(
      `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
       WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attname NOT IN ('_intake_id', '_intake_job_id') ORDER BY attnum`,
      [`datasets.${dataset}`],
    );
    const list = columns.map((c) => `t.${JSON.stringify(c.name)}::text`).join(', ');
    const rows = await db.queryText(`SELECT ${list} FROM datasets.${JSON.stringify(dataset)} t ORDER BY _intake_id`);
    return { columns, rows };
  }

  const comparable = (job: JobPayload) => ({
    status: job.status,
    error: job.error,
    records_processed: job.records_processed,
    records_failed: job.records_failed,
    rows_inserted: job.rows_inserted,
    rows_updated: job.rows_updated,
    bytes_processed: job.bytes_processed,
  });
  const fellBack = (job: JobPayload) => (job.warnings ?? []).some((w) => w.startsWith('loaded by the checked path, not by COPY'));

  // [file, content, query, whether the fast path loads it (else: it falls back, or never tries)]
  const files: [string, string, Record<string, string>, boolean][] = [
    [
      'types.csv',
      'id,amount,ok,day,at,doc,note\n' +
        '1,12.50,true,2024-02-29,2024-03-01T10:00:00Z,"{""a"": [1, 2]}",plain\n' +
        '-2,1e3,FALSE,2024-01-01,2024-03-01 10:00:00+02:00,"{}",""\n' +
        '3,,,,,,\n' +
        '4,"",,"",,,"quoted, with a comma\nand a line break"\n' +
        '9223372036854775807,0.000000000000000000000000000001,true,9999-12-31,2024-03-01T10:00:00.123456,"[]","é ü 😀"\n',
      {},
      true,
    ],
    ['semicolons.csv', 'a;b;c\r\n1;x y;2024-01-01\r\n2;"z;w";\r\n', {}, true],
    ['tabs.tsv', 'a\tb\n1\tx\n2\t"y\tz"\n', {}, true],
    ['late.csv', `n,v\n${Array.from({ length: 2500 }, (_, i) => `${i},${i < 2400 ? i : `${i}.5`}`).join('\n')}\n`, {}, true],
    ['late_one.csv', `id,amount\n${Array.from({ length: 2500 }, (_, i) => `${i},${i === 2400 ? '1.5' : i}`).join('\n')}\n`, {}, true],
    ['empty-head.csv', `n,v\n${Array.from({ length: 2500 }, (_, i) => `${i},${i < 2100 ? '' : i}`).join('\n')}\n`, {}, true],
    ['comma-decimals.csv', 'id;price\n1;1,5\n2;2,25\n', {}, false],
    ['markers.csv', 'id,v\n1,NA\n2,3\n', {}, false],
    ['stray-quote.csv', 'id,title\n1,He said "hi"\n2,plain\n', {}, false],
    ['ragged.csv', 'id,v\n1,a\n2\n3,c\n', { max_errors: '5' }, false],
    ['ragged-fails.csv', 'id,v\n1,a\n2\n3,c\n', {}, false],
    ['merge.csv', 'id,v\n1,a\n2,b\n1,c\n', { mode: 'merge', key: 'id' }, true],
    ['merge.csv', 'id,v\n2,B\n3,x\n', { mode: 'merge', key: 'id' }, true],
    ['merge-nokey.csv', 'id,v\n1,a\n,b\n', { mode: 'merge', key: 'id', max_errors: '1' }, false],
    ['declared.csv', 'id,code\n1,007\n2,010\n', { schema: JSON.stringify({ code: 'bigint' }) }, true],
    ['bad-declared.csv', 'id,code\n1,x\n2,010\n', { schema: JSON.stringify({ code: 'bigint' }), max_errors: '3' }, false],
  ];

  it('loads each file as the checked path does: the same table, types, counters and row errors', async () => {
    for (const [file, content, query, copies] of files) {
      const dataset = file.replace(/\.\w+$/, '').replace(/-/g, '_');
      const [a, b] = await Promise.all([
        load(fast, file, content, { dataset, ...query }),
        load(checked, file, content, { dataset, ...query }),
      ]);
      expect(comparable(a), file).toEqual(comparable(b));
      if (a.status === 'completed') {
        expect(await contents(fast, dataset), file).toEqual(await contents(checked, dataset));
        expect(fellBack(a), `${file}: ${JSON.stringify(a.warnings)}`).toBe(!copies);
      }
      expect(fellBack(b), file).toBe(false);
    }
  }, 240_000);

  it('appends and replaces by COPY: rows after the dataset’s own, its job’s records listed, a replace leaving only its own', async () => {
    const first = await load(fast, 'grow.csv', 'id,v\n1,a\n2,b\n', { dataset: 'grow' });
    // As a table an older Intake made: no default for its job column (the first COPY gives it one).
    await fast.intake.db.query('ALTER TABLE datasets.grow ALTER COLUMN _intake_job_id DROP DEFAULT');
    const second = await load(fast, 'grow.csv', 'id,v,w\n3,c,true\n', { dataset: 'grow' });
    expect([first.status, second.status, fellBack(first), fellBack(second)]).toEqual(['completed', 'completed', false, false]);
    // (A column a later load adds comes after Intake's own.)
    expect((await contents(fast, 'grow')).rows).toEqual([
      ['1', 'a', '0', null],
      ['2', 'b', '1', null],
      ['3', 'c', '0', 'true'],
    ]);
    const records = (await (await fetch(`${fast.url}/api/job/${second.job_id}/records`)).json()) as { results: unknown[] };
    expect(records.results).toEqual([{ record_no: 0, data: { id: 3, v: 'c', w: true } }]);
    const replaced = await load(fast, 'grow.csv', 'id\n9\n', { dataset: 'grow', mode: 'replace' });
    expect(replaced.status).toBe('completed');
    expect((await contents(fast, 'grow')).rows).toEqual([['9', '0']]);
  }, 60_000);

  it.skipIf(FAST)(
    'a clean 1,000,000-row file with one bad row on line 999,000 falls back: 999,999 rows, that row an error, and the job says why',
    async () => {
      const lines = ['id,name,at'];
      for (let i = 1; i <= 1_000_000; i++) lines.push(i === 998_999 ? `${i},a row too short` : `${i},name ${i},2024-01-01T00:00:00Z`);
      const job = await load(fast, 'million.csv', `${lines.join('\n')}\n`, { dataset: 'million', max_errors: '10' });
      expect(job).toMatchObject({ status: 'completed', records_processed: 999_999, records_failed: 1, rows_inserted: 999_999 });
      expect(fellBack(job), JSON.stringify(job.warnings)).toBe(true);
      const errors = (await (await fetch(`${fast.url}/api/job/${job.job_id}/errors`)).json()) as { results: { line: number }[] };
      expect(errors.results.map((e) => e.line)).toEqual([999_000]);
    },
    300_000,
  );
});
