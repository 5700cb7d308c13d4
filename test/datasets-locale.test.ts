import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobPayload } from '../src/core/job.js';
import { backends, createSandbox, getJson, startServer, waitForJob, type Sandbox, type TestServer } from './helpers.js';

// Messy files in, the right table out (issue 25, points 4 and 5): locale-aware types decided by
// the whole file, declared types that say how to read, end to end in every mode.
describe.each(backends())('locale-aware types and declared readings ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { BATCH_SIZE: '2' }); // small batches: the tally goes on from each committed state
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  async function submit(file: string, content: string, query: Record<string, string> = {}) {
    const form = new FormData();
    form.append('file', new Blob([content]), file);
    const res = await fetch(`${server.url}/api/upload?${new URLSearchParams(query)}`, { method: 'POST', body: form });
    return { status: res.status, body: await res.json() };
  }
  async function load(file: string, content: string, query: Record<string, string> = {}): Promise<JobPayload> {
    const res = await submit(file, content, query);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return waitForJob(server.url, res.body.job_id, 60_000);
  }
  const typesOf = async (name: string) =>
    Object.fromEntries(((await getJson(`${server.url}/api/datasets/${name}`)).body.columns as any[]).map((c) => [c.name, c.type]));
  const rowsOf = async (name: string) => {
    const rows = (await getJson(`${server.url}/api/datasets/${name}/rows?limit=1000`)).body.results as Record<string, unknown>[];
    // (numbers come as JSON numbers: their exact text is checked by datasets-readings.test.ts)
    return rows.map((row) => Object.fromEntries(Object.entries(row).filter(([k]) => !k.startsWith('_intake'))));
  };

  it('types a European export from every row: decimal commas, dotted dates, currencies, NULL markers', async () => {
    const csv = [
      'betrag;datum;preis;anteil;ok;code;notiz',
      '8.493,25;01.02.2025;16,18 €;12,5%;ja;007;NA',
      '1,5;31.12.2025;-3 €;3%;nein;008;x',
      'NA;05.06.2025;1.000,00 €;-;ja;009;',
      '-0,5;-;€ 2;0,5%;nein;010;-',
    ].join('\n');
    const job = await load('euro.csv', `${csv}\n`, { delimiter: ';', dataset: 'euro' });
    expect(job.status, job.error ?? '').toBe('completed');
    expect(await typesOf('euro')).toEqual({
      betrag: 'numeric',
      datum: 'date',
      preis: 'numeric',
      anteil: 'numeric',
      ok: 'text', // ja/nein are not English booleans
      code: 'text',
      notiz: 'text',
    });
    expect(await rowsOf('euro')).toEqual([
      { betrag: 8493.25, datum: '2025-02-01', preis: 16.18, anteil: 12.5, ok: 'ja', code: '007', notiz: 'NA' },
      { betrag: 1.5, datum: '2025-12-31', preis: -3, anteil: 3, ok: 'nein', code: '008', notiz: 'x' },
      { betrag: null, datum: '2025-06-05', preis: 1000, anteil: null, ok: 'ja', code: '009', notiz: null },
      { betrag: -0.5, datum: null, preis: 2, anteil: 0.5, ok: 'nein', code: '010', notiz: '-' },
    ]);
  });

  it('types US money, month-first times and yes/no; leaves an unsettled date order as text unless told', async () => {
    const csv = 'amount,at,flag,day\n"$74.69",12/31/2025 11:59 PM,yes,05/06/2025\n"-$1,234.50",01/02/2025 9:05 am,No,01/02/2025\n';
    expect((await load('us.csv', csv, { dataset: 'us' })).status).toBe('completed');
    expect(await typesOf('us')).toEqual({ amount: 'numeric', at: 'timestamptz', flag: 'boolean', day: 'text' });
    const rows = await rowsOf('us');
    expect(rows.map((r) => [r.amount, r.flag, r.day])).toEqual([
      [74.69, true, '05/06/2025'],
      [-1234.5, false, '01/02/2025'],
    ]);
    expect(new Date(rows[0]!.at as string).toISOString()).toBe('2025-12-31T23:59:00.000Z');
    expect(new Date(rows[1]!.at as string).toISOString()).toBe('2025-01-02T09:05:00.000Z');
    expect((await load('us.csv', csv, { dataset: 'us_dmy', date_order: 'DMY' })).status).toBe('completed');
    expect((await typesOf('us_dmy')).day).toBe('date');
    expect((await rowsOf('us_dmy')).map((r) => r.day)).toEqual(['2025-06-05', '2025-02-01']);
    expect((await load('de.csv', 'n\n1.234\n', { dataset: 'de_locale', locale: 'de-DE' })).status).toBe('completed');
    expect(await rowsOf('de_locale')).toEqual([{ n: 1234 }]);
  });

  it('loads every row of a European file into a declared numeric, and makes a US number in it a row error', async () => {
    const csv = 'id;betrag;datum\n1;8.493,25;31.12.2025\n2;1,5;01.02.2025\n3;1,234.56;02.02.2025\n';
    const job = await load('declared.csv', csv, {
      delimiter: ';',
      dataset: 'declared',
      max_errors: '5',
      schema: JSON.stringify({ betrag: 'numeric', datum: { type: 'date', format: 'DD.MM.YYYY' } }),
    });
    expect(job).toMatchObject({ status: 'completed', records_processed: 2, records_failed: 1 });
    const errors = (await getJson(`${server.url}/api/job/${job.job_id}/errors`)).body.results;
    expect(errors.map((e: any) => e.message)).toEqual([
      'record 2 (line 4): column "betrag" reads numbers as 1.234,56 and cannot hold "1,234.56"',
    ]);
    expect(await typesOf('declared')).toEqual({ id: 'bigint', betrag: 'numeric', datum: 'date' });
    expect(await rowsOf('declared')).toEqual([
      { id: 1, betrag: 8493.25, datum: '2025-12-31' },
      { id: 2, betrag: 1.5, datum: '2025-02-01' },
    ]);
  });

  it('appends European numbers to an existing numeric column', async () => {
    expect((await load('a.csv', 'n\n1.5\n', { dataset: 'existing' })).status).toBe('completed');
    const job = await load('b.csv', 'n\n"1.234,5"\n"2,25"\n', { dataset: 'existing' });
    expect(job.status, job.error ?? '').toBe('completed');
    expect((await rowsOf('existing')).map((r) => r.n)).toEqual([1.5, 1234.5, 2.25]);
  });

  it('refuses a wrong schema spec, locale, date_order or null_values with a 422 saying what is allowed', async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ schema: '{"betrag": {"type": "numeric", "decimal": ";"}}' }, /"decimal" of "," or "."/],
      [{ schema: '{"datum": {"type": "date", "format": "DD.MM.YY"}}' }, /YYYY/],
      [{ schema: '{"x": "money"}' }, /one of bigint, numeric/],
      [{ locale: 'not a locale!' }, /locale is a language tag/],
      [{ date_order: 'YDM' }, /date_order is DMY .* or MDY/],
      [{ null_values: '["NA", 1]' }, /null_values is a comma-separated list/],
    ];
    for (const [query, message] of cases) {
      const res = await submit('x.csv', 'a\n1\n', query);
      expect(res.status, JSON.stringify(query)).toBe(422);
      expect((res.body.detail as { msg: string }[]).map((d) => d.msg).join('; '), JSON.stringify(query)).toMatch(message);
    }
  });

  it('replaces the NULL markers with null_values', async () => {
    const job = await load('nulls.csv', 'n,m\n1,?\n?,NA\n3,x\n', { dataset: 'nulls', null_values: '?' });
    expect(job.status).toBe('completed');
    expect(await typesOf('nulls')).toEqual({ n: 'bigint', m: 'text' });
    expect(await rowsOf('nulls')).toEqual([
      { n: 1, m: '?' },
      { n: null, m: 'NA' },
      { n: 3, m: 'x' },
    ]);
  });
});
