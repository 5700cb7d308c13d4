import { PGlite } from '@electric-sql/pglite';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { castFromCsv } from '../src/datasets/casts.js';
import { columnSpec, withLayout } from '../src/datasets/column-spec.js';
import { Loader, type LoadState } from '../src/datasets/loader.js';
import { TypeTally, type ColumnSpec, type Reading, type TallyHints } from '../src/datasets/types.js';
import { localeHints } from '../src/datasets/value-forms.js';
import type { ParsedRecord } from '../src/formats/record.js';
import { unknownSchemaKeys } from '../src/jobs/preview.js';

/** A column's type, reading and evidence over these values (line numbers from 2). */
function column(values: string[], hints: TallyHints = {}) {
  const tally = new TypeTally(null, undefined, hints);
  values.forEach((v, i) => tally.text(v, i + 2));
  return tally.resolve();
}
const typeOf = (values: string[], hints: TallyHints = {}) => column(values, hints).type;

describe('locale-aware types, decided by the whole column', () => {
  it('reads European, US and Swiss numbers, with the style every value fits', () => {
    expect(column(['8.493,25', '1,5', '-0,5', '+1.234,00 €'])).toMatchObject({
      type: 'numeric',
      reading: { decimal: ',', group: '.', currency: '€' },
    });
    expect(column(['1 234,5', '12\u00a0345,75', '7\u202f000,1'])).toMatchObject({ type: 'numeric', reading: { decimal: ',', group: ' ' } });
    expect(column(["1'234.50", 'CHF 99.95'])).toMatchObject({ type: 'numeric', reading: { group: "'", currency: 'CHF' } });
    expect(column(['1,234,567.89', '12.5'])).toMatchObject({ type: 'numeric', reading: { group: ',' } });
    expect(column(['1.234.567', '12'])).toMatchObject({ type: 'bigint', reading: { decimal: ',' } }); // the group is '.'
    expect(column(['$74.69', '-$5', '$ -5', '$1,000'])).toMatchObject({ type: 'numeric', reading: { currency: '$' } });
    expect(column(['16,18 €', '5€', '€ 3,5'])).toMatchObject({ type: 'numeric', reading: { decimal: ',', currency: '€' } });
    expect(column(['EUR 5', '10 EUR'])).toMatchObject({ type: 'bigint', reading: { currency: 'EUR' } });
    expect(column(['£3', '¥100', '£4'])).toMatchObject({ type: 'text' }); // two currencies
    expect(column(['12,5%', '3%'])).toMatchObject({ type: 'numeric', reading: { decimal: ',', percent: true } });
    expect(column(['12%', '0.5']).type).toBe('text'); // a percentage among plain numbers says nothing of the scale
    expect(column(['1.234,5', '1,234.5'])).toMatchObject({
      type: 'text',
      evidence: [expect.stringMatching(/"1,234.5" on line 3 does not fit the numbers before it \(written as 1.234,56\)/)],
    });
    expect(column(['1.234,5', '2,5']).evidence).toContain('decimal comma: "1.234,5" on line 2');
  });

  it('leaves a lone 1.234 and 1,234 to the locale, plain decimal first', () => {
    expect(column(['1.234'])).toMatchObject({ type: 'numeric' });
    expect(column(['1.234']).reading).toBeUndefined();
    expect(column(['1.234'], { decimal: ',' })).toMatchObject({ type: 'bigint', reading: { decimal: ',' } });
    expect(column(['1,234'])).toMatchObject({ type: 'bigint', reading: { group: ',' } });
    expect(column(['1,234'], { decimal: ',' })).toMatchObject({ type: 'numeric', reading: { decimal: ',' } });
    expect(column(['1,234']).evidence.join()).toMatch(/"1,234" on line 2 reads with a decimal point or comma: read with a decimal point/);
    // A later value settles it, whatever the locale said.
    expect(column(['1.234', '5,5'], { decimal: '.' })).toMatchObject({ type: 'numeric', reading: { decimal: ',' } });
    expect(localeHints('de-DE')).toEqual({ decimal: ',', order: 'DMY' });
    expect(localeHints('en-US')).toEqual({ decimal: '.', order: 'MDY' });
    expect(localeHints('de-CH').decimal).toBe('.');
  });

  it('keeps identifiers, mixed styles and near misses as text', () => {
    for (const values of [
      ['007', '8'],
      ['00,5'],
      ['1.2.3'],
      ['$5€'],
      ['ABC 5'],
      ['EURO 5'],
      ['1,23,456'],
      ['5,'],
      ['1e5', '$3'],
      ['--5'],
      ['- 5'],
      ['1.234,5', '1 234.5'],
    ]) {
      expect(typeOf(values), values.join(' ')).toBe('text');
    }
    expect(typeOf(['123456789012345678901234567890'])).toBe('numeric');
    expect(typeOf(['9.223.372.036.854.775.807', '1,5'])).toBe('numeric'); // under a decimal comma: a fraction
    expect(typeOf(['9.223.372.036.854.775.807'], { decimal: ',' })).toBe('bigint');
    expect(typeOf(['9.223.372.036.854.775.808'], { decimal: ',' })).toBe('numeric');
    expect(typeOf([` 12 `, '13'])).toBe('bigint');
    expect(typeOf([`1${'0'.repeat(1200)}`])).toBe('text');
  });

  it('reads dates day-first or month-first as the whole column says', () => {
    expect(column(['05.06.2025', '31.12.2025'])).toMatchObject({ type: 'date', reading: { order: 'DMY', rewrite: true } });
    expect(column(['05/06/2025', '12/31/2025 11:59 PM'])).toMatchObject({ type: 'timestamptz', reading: { order: 'MDY' } });
    const settled = column([...Array.from({ length: 38 }, () => '01/02/2025'), '13/02/2025']);
    expect(settled).toMatchObject({ type: 'date', reading: { order: 'DMY' } });
    expect(settled.evidence).toContain('day first: day > 12 in "13/02/2025" on line 40');
    const open = column(['05/06/2025', '01/02/2025']);
    expect(open.type).toBe('text');
    expect(open.evidence.join()).toMatch(/never settled: no day > 12 \(e.g. "05\/06\/2025" on line 2\); give date_order=DMY or MDY/);
    expect(column(['05/06/2025'], { order: 'MDY', orderGiven: true })).toMatchObject({ type: 'date', reading: { order: 'MDY' } });
    expect(column(['31/12/2025', '12/31/2025']).type).toBe('text');
    expect(column(['5 Jan 2025', '5-jan-2025', 'JANUARY 5, 2025', 'Sep 30 2025'])).toMatchObject({
      type: 'date',
      reading: { rewrite: true },
    });
    expect(column(['2025/12/31', '2025-01-05'])).toMatchObject({ type: 'date', reading: { rewrite: true } });
    expect(column(['2025-12-31', '2025-01-05']).reading).toBeUndefined();
    expect(typeOf(['29.02.2023'])).toBe('text');
    expect(typeOf(['29.02.2024', '01.01.0001', '31.12.9999 23:59:59.999999'])).toBe('timestamptz');
    expect(typeOf(['12/31/2025 13:00 PM'])).toBe('text');
    expect(typeOf(['12/31/2025 24:00'])).toBe('text');
    expect(typeOf(['12.31.2025'])).toBe('text'); // dotted: day first
    expect(typeOf(['31 Foo 2025'])).toBe('text');
    expect(typeOf(['31 Feb 2025'])).toBe('text');
  });

  it('reads yes/no booleans and NULL markers only in a column otherwise typed', () => {
    expect(typeOf(['yes', 'No', 'Y', 'n', 'on', 'OFF', 'true'])).toBe('boolean');
    expect(typeOf(['1', '0'])).toBe('bigint');
    expect(typeOf(['y', 'Y'])).toBe('text'); // a letter alone: a and b, x and y...
    expect(typeOf(['y', 'N'])).toBe('boolean');
    expect(typeOf(['n', 'yes'])).toBe('boolean');
    expect(typeOf(['yes', '1'])).toBe('text');
    expect(column(['12', 'NA', '-', ' N/A ', '3'])).toMatchObject({ type: 'bigint', reading: { nulls: ['NA', '-', 'N/A'] } });
    expect(column(['NA', 'null'])).toMatchObject({ type: null });
    expect(column(['n/a x', 'NA', '3'])).toEqual({ type: 'text', evidence: ['text: "n/a x" on line 2'] });
    expect(column(['x', 'NA', '3']).reading).toBeUndefined();
    expect(column(['12', 'NA'], { nulls: new Set(['?']) }).type).toBe('text');
    expect(column(['12', '?'], { nulls: new Set(['?']) })).toMatchObject({ type: 'bigint', reading: { nulls: ['?'] } });
  });
});

describe('declared types that say how to read', () => {
  const target = (spec: ColumnSpec, values: string[]) => {
    const tally = new TypeTally(null, undefined, {}, withLayout(spec));
    const problems = values.map((v, i) => {
      const problem = tally.check(v);
      if (problem === null) tally.commit(i + 2);
      return problem;
    });
    return { problems, ...tally.resolve() };
  };

  it('accepts every style of its type, and narrows the column as rows come', () => {
    const betrag = target({ type: 'numeric' }, ['8.493,25', '1,5', 'NA', '1,234.56', '7']);
    expect(betrag.problems).toEqual([null, null, null, 'reads numbers as 1.234,56 and cannot hold "1,234.56"', null]);
    expect(betrag).toMatchObject({ type: 'numeric', reading: { decimal: ',', group: '.', nulls: ['NA'] } });
    expect(target({ type: 'numeric', decimal: ',' }, ['1.234']).reading).toEqual({ decimal: ',' });
    expect(target({ type: 'bigint' }, ['1,5']).problems).toEqual(['is bigint and cannot hold "1,5"']);
    // 1,234 into a bigint is 1234 whatever the locale says: a decimal comma would make it 1.234.
    const bigint = new TypeTally(null, undefined, { decimal: ',' }, { type: 'bigint' });
    expect(bigint.check('1,234')).toBeNull();
    bigint.commit(2);
    expect(bigint.resolve()).toMatchObject({ type: 'bigint', reading: { group: ',' } });
    expect(target({ type: 'numeric', currency: false }, ['$5']).problems).toEqual(['is numeric without a currency and cannot hold "$5"']);
    expect(target({ type: 'date', format: 'DD.MM.YYYY' }, ['05.06.2025', '12/31/2025', '2025-01-01']).problems).toEqual([
      null,
      'reads dates as DD.MM.YYYY and cannot hold "12/31/2025"',
      null,
    ]);
    expect(target({ type: 'date' }, ['05/06/2025']).reading).toEqual({ order: 'DMY', rewrite: true });
    expect(target({ type: 'date' }, ['05/06/2025 10:00']).problems).toEqual(['is date and cannot hold "05/06/2025 10:00"']);
    expect(target({ type: 'boolean' }, ['yes', 'maybe']).problems).toEqual([null, 'is boolean and cannot hold "maybe"']);
  });

  it('checks a spec and says what is allowed', () => {
    expect(columnSpec('numeric')).toEqual({ type: 'numeric' });
    expect(columnSpec({ type: 'date', format: 'DD.MM.YYYY' })).toEqual({ type: 'date', format: 'DD.MM.YYYY' });
    expect(columnSpec({ type: 'timestamptz', format: 'MM/DD/YYYY HH:mm A' })).toMatchObject({ type: 'timestamptz' });
    expect(columnSpec('money')).toMatch(/is one of bigint, numeric, boolean, date, timestamptz, text, jsonb/);
    expect(columnSpec({ type: 'numeric', decimal: ';' })).toMatch(/"decimal" of "," or "."/);
    expect(columnSpec({ type: 'text', decimal: ',' })).toMatch(/only as a number/);
    expect(columnSpec({ type: 'date', format: 'DD.MM.YY' })).toMatch(/YYYY/);
    expect(columnSpec({ type: 'date', format: 'DD.MM.YYYY HH:mm' })).toMatch(/declare "timestamptz"/);
    expect(columnSpec({ type: 'numeric', unit: 'kg' })).toMatch(/takes only type, decimal, format, currency/);
  });
});

describe('the loader', () => {
  const record = (line: number, values: string[], emptyQuoted?: number[]): Extract<ParsedRecord, { data: object }> => ({
    data: {},
    line,
    columns: ['id', 'betrag', 'note'],
    values,
    ...(emptyQuoted && { emptyQuoted }),
  });

  it('stages "" as an empty string and an empty field as NULL; keeps its tallies across a resumed run', () => {
    const loader = new Loader({ format: 'csv', targets: new Map(), key: ['id'] }, null);
    expect(loader.row(record(2, ['1', '8.493,25', ''], [2]), 0)).toEqual({ text: '0\t1\t8.493,25\t', width: 3 });
    expect(loader.row(record(3, ['2', '', '']), 1)).toEqual({ text: '1\t2\t\\N\t\\N', width: 3 });
    expect(loader.row(record(4, ['', '1', 'x'], [0]), 2)).toMatchObject({
      error: 'record 2 (line 4) has no value for the key column "id"',
    });
    const state = JSON.parse(JSON.stringify(loader.state())) as LoadState;
    const resumed = new Loader({ format: 'csv', targets: new Map(), key: ['id'] }, state);
    resumed.row(record(5, ['3', '1,5', 'yes']), 3);
    expect(resumed.describe()).toEqual([
      { name: 'id', original: 'id', type: 'bigint', evidence: [] },
      {
        name: 'betrag',
        original: 'betrag',
        type: 'numeric',
        reading: { decimal: ',', group: '.' },
        evidence: ['decimal comma: "8.493,25" on line 2'],
      },
      { name: 'note', original: 'note', type: 'boolean', evidence: [] },
    ]);
  });

  it('reads a state written before readings', () => {
    const old: LoadState = { columns: [{ name: 'n', original: 'n', target: null, seen: 'bigint' }] };
    const loader = new Loader({ format: 'csv', targets: new Map(), key: [] }, old);
    loader.row({ data: {}, line: 9, columns: ['n'], values: ['1.234,5'] }, 7);
    expect(loader.describe()[0]).toMatchObject({ type: 'numeric', reading: { decimal: ',' } });
    const numeric = new Loader({ format: 'csv', targets: new Map(), key: [] }, { columns: [{ ...old.columns[0]!, seen: 'numeric' }] });
    numeric.row({ data: {}, line: 9, columns: ['n'], values: ['1.234,5'] }, 7);
    expect(numeric.describe()[0]!.type).toBe('text'); // its earlier values had a decimal point
  });

  it('makes a value the declared column cannot read a row error saying how it reads, and names unknown declared columns', () => {
    const loader = new Loader(
      {
        format: 'csv',
        targets: new Map([
          ['betrag', { type: 'numeric' as const }],
          ['custmer_id', { type: 'text' as const }],
          ['*', { type: 'text' as const }],
        ]),
        key: [],
      },
      null,
    );
    expect(loader.row(record(2, ['1', '1.234,56', '']), 0)).toMatchObject({ width: 3 });
    expect(loader.row(record(3, ['2', '1,234.56', '']), 1)).toMatchObject({
      error: 'record 1 (line 3): column "betrag" reads numbers as 1.234,56 and cannot hold "1,234.56"',
    });
    expect(unknownSchemaKeys(['betrag', 'custmer_id', '*'], loader.columns)).toEqual(['custmer_id']);
    expect(loader.state().columns[1]).toMatchObject({ target: 'numeric', seen: null, reading: { decimal: ',', group: '.' } });
  });
});

interface Database {
  name: string;
  /** The values cast with `expression`, as text written the same under any DateStyle. */
  cast(expression: (value: string) => string, items: string[], type?: string): Promise<(string | null)[]>;
  close(): Promise<void>;
}
type Query = (sql: string, params: unknown[]) => Promise<{ rows: { v: string | null }[] }>;

/** Casts under a DateStyle that reads day and month the other way, in UTC (as the publish runs). */
async function session(name: string, query: Query, close: () => Promise<void>): Promise<Database> {
  await query("SET TimeZone = 'UTC'", []);
  return {
    name,
    async cast(expression, items, type) {
      const shown =
        type === 'date'
          ? "to_char(x, 'YYYY-MM-DD')"
          : type === 'timestamptz'
            ? "to_char(x AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
            : 'x::text';
      const out: (string | null)[][] = [];
      for (const style of ['ISO, MDY', 'SQL, DMY', 'German, DMY', 'Postgres, YMD']) {
        await query(`SET DateStyle = '${style}'`, []);
        const { rows } = await query(
          `SELECT ${shown} AS v
             FROM (SELECT (${expression('v')}) AS x, n FROM unnest($1::text[]) WITH ORDINALITY AS t(v, n)) s ORDER BY n`,
          [items],
        );
        out.push(rows.map((r) => r.v));
      }
      await query("SET DateStyle = 'ISO, MDY'", []);
      expect(out[1], `${name}: the same under every DateStyle`).toEqual(out[0]);
      expect(out[2]).toEqual(out[0]);
      expect(out[3]).toEqual(out[0]);
      return out[0]!;
    },
    close,
  };
}

const databases: Database[] = [];
beforeAll(async () => {
  const lite = new PGlite();
  databases.push(
    await session(
      'PGlite',
      (sql, params) => lite.query(sql, params),
      () => lite.close(),
    ),
  );
  if (process.env.DATABASE_URL) {
    const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await client.connect();
    databases.push(
      await session(
        'PostgreSQL',
        (sql, params) => client.query(sql, params),
        () => client.end(),
      ),
    );
  }
}, 60_000);
afterAll(async () => {
  for (const db of databases) await db.close();
});

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** A number as some style writes it, and its value as numeric's text. */
const numbers = fc
  .record({
    int: fc.oneof(fc.constantFrom('0', '5', '12', '999', '1000', '1234567'), fc.stringMatching(/^[1-9][0-9]{0,24}$/)),
    frac: fc.oneof(fc.constant(''), fc.stringMatching(/^[0-9]{1,6}$/)),
    style: fc.integer({ min: 0, max: 5 }),
    grouped: fc.boolean(),
    sign: fc.constantFrom('', '-', '+'),
    money: fc.constantFrom('', '$', '€', 'EUR', 'CHF', '£', '%'),
    after: fc.boolean(),
    gap: fc.constantFrom('', ' ', '\u00a0'),
    space: fc.constantFrom(' ', '\u00a0', '\u202f'),
    padded: fc.boolean(),
  })
  .map(({ int, frac, style, grouped, sign, money, after, gap, space, padded }) => {
    const [decimal, group] = [
      ['.', ','],
      ['.', space],
      ['.', "'"],
      [',', '.'],
      [',', space],
      [',', "'"],
    ][style]!;
    const body = (grouped ? int.replace(/\B(?=(\d{3})+$)/g, group!) : int) + (frac ? `${decimal}${frac}` : '');
    const unsigned = `${sign}${body}`;
    const text = money === '' ? unsigned : money === '%' || after ? `${unsigned}${gap}${money}` : `${sign}${money}${gap}${body}`;
    const zero = /^0*$/.test(int + frac);
    const want = `${sign === '-' && !zero ? '-' : ''}${int}${frac ? `.${frac}` : ''}`;
    return { text: padded ? ` ${text} ` : text, want, decimal: decimal as '.' | ',' };
  });

/** A date or time in one of the forms read, its order, and its value as PostgreSQL writes it in UTC. */
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const dates = fc
  .record({
    year: fc.oneof(fc.constantFrom(1, 9999, 2024, 2000, 1900), fc.integer({ min: 1, max: 9999 })),
    month: fc.integer({ min: 1, max: 12 }),
    day: fc.integer({ min: 1, max: 28 }),
    form: fc.constantFrom('D.M.Y', 'D/M/Y', 'M/D/Y', 'D-M-Y', 'Y/M/D', 'D Mon Y', 'D-Mon-Y', 'Mon D, Y', 'Month D Y'),
    short: fc.boolean(),
    time: fc.option(
      fc.record({
        hour: fc.integer({ min: 0, max: 23 }),
        minute: fc.integer({ min: 0, max: 59 }),
        second: fc.option(fc.integer({ min: 0, max: 59 })),
        fraction: fc.option(fc.stringMatching(/^[0-9]{1,6}$/)),
        half: fc.constantFrom('', ' AM', 'pm', ' Pm'),
      }),
    ),
  })
  .map(({ year, month, day, form, short, time }) => {
    const d = short ? String(day) : pad(day);
    const m = short ? String(month) : pad(month);
    const y = pad(year, 4);
    const name = MONTHS[month - 1]!;
    const mon = short ? name.slice(0, 3).toLowerCase() : name.toUpperCase();
    const date = {
      'D.M.Y': `${d}.${m}.${y}`,
      'D/M/Y': `${d}/${m}/${y}`,
      'M/D/Y': `${m}/${d}/${y}`,
      'D-M-Y': `${d}-${m}-${y}`,
      'Y/M/D': `${y}/${m}/${d}`,
      'D Mon Y': `${d} ${mon} ${y}`,
      'D-Mon-Y': `${d}-${mon}-${y}`,
      'Mon D, Y': `${mon} ${d}, ${y}`,
      'Month D Y': `${name} ${d} ${y}`,
    }[form];
    const order: 'DMY' | 'MDY' = form === 'M/D/Y' ? 'MDY' : 'DMY';
    const iso = `${y}-${pad(month)}-${pad(day)}`;
    if (time === null) return { text: date, order, want: iso };
    let hour = time.hour;
    let shown = hour;
    if (time.half !== '') {
      shown = hour % 12 === 0 ? 12 : hour % 12;
      hour = (hour % 12) + (/p/i.test(time.half) ? 12 : 0);
    }
    const seconds = time.second === null ? '' : `:${pad(time.second)}${time.fraction === null ? '' : `.${time.fraction}`}`;
    const fraction = time.second === null || time.fraction === null ? '' : time.fraction;
    const text = `${date} ${shown}:${pad(time.minute)}${seconds}${time.half}`;
    return { text, order, want: `${iso} ${pad(hour)}:${pad(time.minute)}:${pad(time.second ?? 0)}.${fraction.padEnd(6, '0')}` };
  });

describe('the casts read every accepted form exactly, in PGlite and PostgreSQL, whatever DateStyle', () => {
  /** Groups values by the (type, reading) one column of them gets, casts each group, and compares. */
  async function castAll(items: { text: string; want: string }[], hintsOf: (i: number) => TallyHints) {
    const groups = new Map<
      string,
      { type: 'bigint' | 'numeric' | 'date' | 'timestamptz'; reading?: Reading; items: { text: string; want: string }[] }
    >();
    items.forEach((item, i) => {
      const { type, reading } = column([item.text, 'NA'], hintsOf(i));
      expect(['bigint', 'numeric', 'date', 'timestamptz'], `${JSON.stringify(item.text)} is typed`).toContain(type);
      const key = JSON.stringify([type, reading]);
      const group = groups.get(key) ?? { type: type as 'numeric', ...(reading && { reading }), items: [] };
      group.items.push(item);
      groups.set(key, group);
    });
    for (const db of databases) {
      for (const { type, reading, items: group } of groups.values()) {
        const values = [...group.map((g) => g.text), 'NA', ''];
        const cast = await db.cast((v) => castFromCsv(v, type, reading), values, type);
        group.forEach((g, i) => {
          const got = type === 'bigint' || type === 'numeric' ? cast[i] : cast[i];
          expect(got, `${db.name}: ${JSON.stringify(g.text)} as ${type} ${JSON.stringify(reading)}`).toBe(g.want);
        });
        expect(cast.slice(-2)).toEqual([null, null]);
      }
    }
  }

  it('numbers: decimal comma or point, every group separator, currencies before or after, percent', async () => {
    const sample = fc.sample(numbers, { numRuns: 600, seed: 25 });
    await castAll(sample, (i) => ({ decimal: sample[i]!.decimal }));
  }, 120_000);

  it('dates and times: D.M.Y, D/M/Y, M/D/Y, D-M-Y, Y/M/D and named months, years 1 to 9999, AM/PM', async () => {
    const sample = fc.sample(dates, { numRuns: 600, seed: 25 });
    await castAll(sample, (i) => ({ order: sample[i]!.order }));
  }, 120_000);

  it('never fails on a value the tally accepted: random text from the characters of numbers and dates', async () => {
    const soup = fc
      .array(fc.constantFrom(..."0123456789012345.,' \u00a0$€£EURCHF%-+/:ApMmJan".split('')), { minLength: 1, maxLength: 14 })
      .map((chars) => chars.join(''));
    const columns = fc.tuple(
      fc.array(soup, { minLength: 1, maxLength: 3 }),
      fc.constantFrom<TallyHints>({}, { decimal: ',' }, { order: 'DMY' }, { order: 'MDY' }),
    );
    const typed = fc
      .sample(columns, { numRuns: 20_000, seed: 2025 })
      .map(([values, hints]) => ({ values, ...column(values, hints) }))
      .filter((c) => c.type !== null && c.type !== 'text');
    expect(typed.length).toBeGreaterThan(200);
    for (const db of databases) {
      for (const { values, type, reading } of typed) {
        const cast = await db.cast((v) => castFromCsv(v, type!, reading), values, type!).catch((err: Error) => err);
        expect(cast, `${db.name}: ${JSON.stringify(values)} as ${type} ${JSON.stringify(reading)}`).not.toBeInstanceOf(Error);
      }
    }
  }, 300_000);

  it('booleans and markers', async () => {
    const { type, reading } = column(['yes', 'No', ' y ', 'N', 'on', 'OFF', 'TRUE', 'false', 'N/A']);
    expect(type).toBe('boolean');
    for (const db of databases) {
      expect(
        await db.cast((v) => castFromCsv(v, 'boolean', reading), ['yes', 'No', ' y ', 'N', 'on', 'OFF', 'TRUE', 'false', 'N/A', '']),
      ).toEqual(['true', 'false', 'true', 'false', 'true', 'false', 'true', 'false', null, null]);
      // A marker with a quote in it is a literal, not SQL.
      expect(await db.cast((v) => castFromCsv(v, 'bigint', { nulls: ["it's", '\\'] }), ["it's", '\\', '7'])).toEqual([null, null, '7']);
    }
  });
});
