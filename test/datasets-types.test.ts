import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jsonString, topLevelFields } from '../src/datasets/json-fields.js';
import { datasetNameFor, datasetNameProblem, toName, uniqueColumnName } from '../src/datasets/names.js';
import {
  isBigint,
  isDate,
  isNumeric,
  isTimestamp,
  joinTypes,
  jsonFits,
  textFits,
  textType,
  TypeTally,
  type ColumnType,
} from '../src/datasets/types.js';

// The names a header's fields get, in order, as the loader makes them one by one.
function columnNames(fields: readonly string[]): string[] {
  const used = new Set<string>();
  return fields.map((field, index) => uniqueColumnName(field, index, used));
}

describe('dataset and column names', () => {
  it('takes a name that follows the rule and says the rule otherwise', () => {
    for (const name of ['orders', 'a', 'sales_2026', 'x'.repeat(63)]) expect(datasetNameProblem(name), name).toBeUndefined();
    for (const name of ['Orders', '2026', '_orders', 'sales-2026', 'x'.repeat(64), '', 'año', 'orders;drop']) {
      expect(datasetNameProblem(name), name).toMatch(/lower-case letters, digits and _, starting with a letter, at most 63 characters/);
    }
    expect(datasetNameProblem('select')).toMatch(/reserves/);
  });

  it('picks a name from the file name', () => {
    expect(datasetNameFor('Sales Report (2026).csv')).toBe('sales_report_2026');
    expect(datasetNameFor('exports/Über Größe.csv.gz')).toBe('uber_gro_e');
    expect(datasetNameFor('2026-orders.ndjson')).toBe('d_2026_orders');
    expect(datasetNameFor('€€.json')).toBe('dataset');
    expect(datasetNameFor('table.csv')).toBe('table_');
    expect(datasetNameFor(null)).toBe('records');
    expect(datasetNameFor(`${'Long name '.repeat(10)}.csv`)).toMatch(/^(long_name_){5}[0-9a-f]{12}$/);
    for (const file of ['Sales Report (2026).csv', '2026-orders.ndjson', '€€.json', 'table.csv', `${'x'.repeat(200)}.csv`]) {
      expect(datasetNameProblem(datasetNameFor(file)), file).toBeUndefined();
    }
  });

  it('makes column names from any header, keeping every field', () => {
    expect(columnNames(['Order ID', 'Unit Price (€)', '', 'order id', 'Order-ID', '_intake_job_id', '1st', 'select', '%%'])).toEqual([
      'order_id',
      'unit_price',
      'column_3',
      'order_id_2',
      'order_id_3',
      'intake_job_id',
      'c_1st',
      'select_',
      'column_9',
    ]);
    const long = columnNames(['y'.repeat(80), 'y'.repeat(70)]);
    expect(long).toEqual([expect.stringMatching(/^y{50}_[0-9a-f]{12}$/), expect.stringMatching(/^y{50}_[0-9a-f]{12}$/)]);
    expect(long[0]).not.toBe(long[1]);
    expect(toName('Prix €/kg', 'x')).toBe('prix_kg');
  });
});

describe('column types', () => {
  it('reads bigint within its range, without leading zeros', () => {
    for (const s of ['0', '-0', '7', '+7', '-42', '9223372036854775807', '-9223372036854775808']) expect(isBigint(s), s).toBe(true);
    for (const s of ['', '-', '007', '9223372036854775808', '-9223372036854775809', '1.0', '1e3', ' 1', '1 ', '١٢'])
      expect(isBigint(s), s).toBe(false);
  });

  it('reads decimals exactly as written', () => {
    for (const s of ['1.5', '-0.25', '.5', '1.', '1e5', '2.5E-3', '123456789012345678901234567890', '0.000000000000000000001'])
      expect(isNumeric(s), s).toBe(true);
    for (const s of ['', '.', '-', '00.5', '1e', '1e99999', 'NaN', 'Infinity', '1,5', '1.2.3', '0x1f']) expect(isNumeric(s), s).toBe(false);
  });

  it('reads ISO 8601 dates and times, real ones only', () => {
    expect(textType('2026-02-28')).toBe('date');
    expect(textType('2024-02-29')).toBe('date');
    expect(textType('2026-02-29')).toBe('text');
    expect(textType('0000-01-01')).toBe('text');
    for (const s of [
      '2026-01-31T09:30:00Z',
      '2026-01-31 09:30',
      '2026-01-31T09:30:00.123456+02:00',
      '2026-01-31T09:30:00-0530',
      '2026-01-31t09:30:00z',
    ]) {
      expect(isTimestamp(s), s).toBe(true);
    }
    for (const s of [
      '2026-01-31T24:00:00Z',
      '2026-01-31T09:60',
      '2026-01-31T09',
      '2026-13-01T00:00Z',
      '2026-01-31T09:30:00+16:00',
      '31/01/2026 09:30',
    ]) {
      expect(isTimestamp(s), s).toBe(false);
    }
  });

  it('joins two types to the narrowest holding both', () => {
    const cases: [ColumnType | null, ColumnType | null, ColumnType | null][] = [
      [null, 'bigint', 'bigint'],
      ['bigint', 'numeric', 'numeric'],
      ['date', 'timestamptz', 'timestamptz'],
      ['bigint', 'boolean', 'text'],
      ['date', 'bigint', 'text'],
      ['text', 'jsonb', 'jsonb'],
      ['numeric', 'text', 'text'],
    ];
    for (const [a, b, joined] of cases) {
      expect(joinTypes(a, b), `${a} + ${b}`).toBe(joined);
      expect(joinTypes(b, a), `${b} + ${a}`).toBe(joined);
    }
  });

  it('infers over every value: an integer column with one decimal on its last row is numeric', () => {
    const tally = new TypeTally();
    for (let i = 0; i < 999_999; i++) tally.text(String(i));
    expect(tally.type).toBe('bigint');
    tally.text('');
    expect(tally.type).toBe('bigint');
    tally.text('0.5');
    expect(tally.type).toBe('numeric');
    tally.text('7');
    expect(tally.type).toBe('numeric');
    tally.text('n/a');
    expect(tally.type).toBe('text');
  });

  it('infers CSV text: empty cells have no type, booleans in any case, dates widening to times', () => {
    const of = (values: string[]) => {
      const tally = new TypeTally();
      for (const v of values) tally.text(v);
      return tally.type;
    };
    expect(of(['', ''])).toBeNull();
    expect(of(['true', 'FALSE', '', 'True'])).toBe('boolean');
    expect(of(['2026-01-01', '2026-01-02T10:00:00Z'])).toBe('timestamptz');
    expect(of(['2026-01-01T10:00:00Z', '2026-01-02'])).toBe('timestamptz');
    expect(of(['1', 'true'])).toBe('text');
    expect(of(['007', '8'])).toBe('text');
  });

  it('infers JSON values by their JSON type: strings stay text unless they are dates or times', () => {
    const of = (values: string[]) => {
      const tally = new TypeTally();
      for (const text of values) tally.json(text);
      return tally.type;
    };
    expect(of(['1', '2', 'null'])).toBe('bigint');
    expect(of(['1', '1.5'])).toBe('numeric');
    expect(of(['123456789012345678901234567890'])).toBe('numeric');
    expect(of(['1e20', '-0.0'])).toBe('numeric');
    expect(of(['"123"', '"456"'])).toBe('text');
    expect(of(['"2026-01-01"', '"2026-01-01T00:00:00Z"', '""'])).toBe('timestamptz');
    expect(of(['"2026\\u002d01-01"'])).toBe('date');
    expect(of(['true', 'false'])).toBe('boolean');
    expect(of(['{"a": 1}', '"x"', '3'])).toBe('jsonb');
    expect(of(['"x"', '[1, 2]'])).toBe('jsonb');
  });

  it('checks a JSON value against a declared type as castFromJson will read it', () => {
    expect(jsonFits('12', 'bigint')).toBe(true);
    expect(jsonFits('12.5', 'bigint')).toBe(false);
    expect(jsonFits('"12"', 'bigint')).toBe(false);
    expect(jsonFits('""', 'bigint')).toBe(true);
    expect(jsonFits('null', 'boolean')).toBe(true);
    expect(jsonFits('"2026-01-31"', 'timestamptz')).toBe(true);
    expect(jsonFits('"2026-01-31T09:30"', 'date')).toBe(false);
    expect(jsonFits('{"a": 1}', 'text')).toBe(true);
    expect(jsonFits('[1]', 'numeric')).toBe(false);
  });

  it('checks a value against a declared type as the cast will read it', () => {
    expect(textFits('12', 'numeric')).toBe(true);
    expect(textFits('2026-01-01', 'timestamptz')).toBe(true);
    expect(textFits('{"a": [1]}', 'jsonb')).toBe(true);
    expect(textFits('{a}', 'jsonb')).toBe(false);
    expect(textFits('1.5', 'bigint')).toBe(false);
    expect(textFits('yes', 'boolean')).toBe(true); // yes/no, y/n, on/off are booleans too (issue 25)
    expect(textFits('1', 'boolean')).toBe(false);
    expect(textFits('anything', 'text')).toBe(true);
  });
});

describe('top-level JSON fields as written', () => {
  it('gives each value its exact text, a repeated key its last value', () => {
    const fields = topLevelFields(
      '{ "id" : 123456789012345678901234567890, "tags":["a","b]"], "n":null,"t":true, "s":"x\\"y", "o":{"k":[1,{"z":"}"}]}, "id": 7.50 }',
    );
    expect(Object.fromEntries(fields)).toEqual({
      id: '7.50',
      tags: '["a","b]"]',
      n: 'null',
      t: 'true',
      s: '"x\\"y"',
      o: '{"k":[1,{"z":"}"}]}',
    });
    expect(jsonString(fields.get('s')!)).toBe('x"y');
    expect(topLevelFields('{}').size).toBe(0);
    expect(Object.fromEntries(topLevelFields('{"\\u0061 b":1}'))).toEqual({ 'a b': '1' });
  });

  it('agrees with JSON.parse on any object, however it is spaced', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.integer({ min: 0, max: 3 }), (object, indent) => {
        const text = JSON.stringify(object, null, indent);
        const parsed = JSON.parse(text) as Record<string, unknown>;
        const fields = topLevelFields(text);
        expect(fields.size).toBe(Object.keys(parsed).length);
        for (const [key, value] of fields) expect(JSON.parse(value)).toEqual(parsed[key]);
      }),
      { numRuns: 500 },
    );
  });
});

describe('the date and time checks', () => {
  // The rule as a regular expression: the oracle for the character-by-character checks.
  const DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  const realDate = (y: number, m: number, d: number) =>
    y >= 1 &&
    m >= 1 &&
    m <= 12 &&
    d >= 1 &&
    d <= DAYS[m - 1]! &&
    !(m === 2 && d === 29 && !((y % 4 === 0 && y % 100 !== 0) || y % 400 === 0));
  const TIMESTAMP = /^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d)(?::(\d\d)(?:\.\d{1,9})?)?(?:[Zz]|[+-](\d\d)(?::?(\d\d))?)?$/;
  const oracle = (s: string) => {
    const m = TIMESTAMP.exec(s);
    if (!m || !realDate(Number(m[1]), Number(m[2]), Number(m[3]))) return false;
    return Number(m[4]) <= 23 && Number(m[5]) <= 59 && Number(m[6] ?? 0) <= 59 && Number(m[7] ?? 0) <= 15 && Number(m[8] ?? 0) <= 59;
  };
  const timestamps = fc
    .tuple(
      fc.tuple(fc.integer({ min: 0, max: 9999 }), fc.integer({ min: 0, max: 13 }), fc.integer({ min: 0, max: 32 })),
      fc.constantFrom('T', 't', ' ', 'X'),
      fc.tuple(fc.integer({ min: 0, max: 25 }), fc.integer({ min: 0, max: 61 })),
      fc.constantFrom('', ':00', ':60', ':07.', ':07.5', ':07.1234567890', '.5'),
      fc.constantFrom('', 'Z', 'z', 'ZZ', '+02:00', '-0530', '+1559', '+16', '+14', '-12:', '+02:0', '+02:60', ' '),
    )
    .map(
      ([[y, m, d], t, [h, min], s, z]) =>
        `${String(y).padStart(4, '0')}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}${t}${String(h).padStart(2, '0')}:${String(min).padStart(2, '0')}${s}${z}`,
    );

  it('agree with the rule written as a regular expression', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          timestamps,
          fc.string(),
          timestamps.map((s) => s.slice(0, 10)),
        ),
        (s) => {
          expect(isTimestamp(s), s).toBe(oracle(s));
          expect(isDate(s), s).toBe(
            /^\d{4}-\d\d-\d\d$/.test(s) && realDate(Number(s.slice(0, 4)), Number(s.slice(5, 7)), Number(s.slice(8, 10))),
          );
        },
      ),
      { numRuns: 20_000 },
    );
  });
});
