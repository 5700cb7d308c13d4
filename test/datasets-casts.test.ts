import { PGlite } from '@electric-sql/pglite';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { castFromCsv, castFromJson, widenExpression } from '../src/datasets/casts.js';
import {
  COLUMN_TYPES,
  fitsNumeric,
  isTimestamp,
  joinTypes,
  jsonNumbersFit,
  textFits,
  textType,
  TypeTally,
  type ColumnType,
} from '../src/datasets/types.js';

/** Text values of every shape the inference tells apart, and near misses of each. */
const values = fc.oneof(
  fc.bigInt({ min: -(2n ** 65n), max: 2n ** 65n }).map(String),
  fc.double({ noDefaultInfinity: false }).map(String),
  fc.tuple(fc.integer({ min: -99, max: 99_999 }), fc.nat(99_999)).map(([a, b]) => `${a}.${b}`),
  fc
    .tuple(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 13 }), fc.integer({ min: 0, max: 32 }))
    .map(([y, m, d]) => `${String(y).padStart(4, '0')}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}`),
  fc
    .tuple(
      fc.constantFrom('2026-01-31', '2024-02-29', '0001-01-01', '9999-12-31'),
      fc.constantFrom('T', ' ', 't'),
      fc.integer({ min: 0, max: 24 }),
      fc.integer({ min: 0, max: 60 }),
      fc.constantFrom('', ':00', ':59', ':07.5', ':07.123456789'),
      fc.constantFrom('', 'Z', 'z', '+02:00', '-0530', '+15:59', '+14', '-12:00'),
    )
    .map(([d, t, h, m, s, z]) => `${d}${t}${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}${s}${z}`),
  fc.constantFrom('true', 'FALSE', 'True', 't', 'yes', '', '-', '+', '.', '1e5', '1E-5', '007', '-0', '+12', '9223372036854775807'),
  fc.string(),
);

interface Database {
  name: string;
  /** Casts each value with `expression` (of the column `v`); the results as text. */
  cast(expression: (value: string) => string, items: string[]): Promise<(string | null)[]>;
  close(): Promise<void>;
}

type Query = (sql: string, params: unknown[]) => Promise<{ rows: { v: string | null }[] }>;

/** A database session in UTC, casting the items in order. */
async function session(name: string, query: Query, close: () => Promise<void>): Promise<Database> {
  await query("SET TimeZone = 'UTC'", []);
  return {
    name,
    async cast(expression, items) {
      const { rows } = await query(`SELECT (${expression('v')})::text AS v FROM unnest($1::text[]) WITH ORDINALITY AS t(v, n) ORDER BY n`, [
        items,
      ]);
      return rows.map((row) => row.v);
    },
    close,
  };
}

async function postgres(): Promise<Database | undefined> {
  if (!process.env.DATABASE_URL) return undefined;
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  return session(
    'PostgreSQL',
    (sql, params) => client.query(sql, params),
    () => client.end(),
  );
}

async function pglite(): Promise<Database> {
  const db = new PGlite();
  return session(
    'PGlite',
    (sql, params) => db.query(sql, params),
    () => db.close(),
  );
}

const databases: Database[] = [];
beforeAll(async () => {
  databases.push(await pglite());
  const server = await postgres();
  if (server) databases.push(server);
}, 60_000);
afterAll(async () => {
  for (const db of databases) await db.close();
});

const quoted = (value: string) => `"${value}"`;

describe('casts at publish agree with the inference', () => {
  it('every value the inference lets into a column casts to it, in PGlite and PostgreSQL', async () => {
    const sample = fc.sample(values, { numRuns: 4000, seed: 42 });
    for (const db of databases) {
      for (const type of COLUMN_TYPES) {
        const fitting = sample.filter((value) => value === '' || textFits(value, type));
        const cast = await db.cast((v) => castFromCsv(quoted(v), type), fitting).catch((err: Error) => err);
        expect(cast, `${db.name}: CSV values into ${type}`).not.toBeInstanceOf(Error);
        const results = cast as (string | null)[];
        fitting.forEach((value, i) => {
          if (value === '') expect(results[i], `${db.name}: '' into ${type}`).toBe(type === 'text' ? '' : null);
          else if (type === 'bigint' || type === 'numeric')
            expect(Number(results[i]) + 0, `${db.name}: ${value}`).toBe(Number(value) + 0); // (+ 0: -0 is 0)
          else if (type === 'boolean') expect(results[i]).toBe(String(['true', 'yes', 'y', 'on'].includes(value.toLowerCase())));
          else if (type === 'date') expect(results[i]).toBe(value);
          else if (type === 'text') expect(results[i]).toBe(value);
        });
      }
    }
  });

  it('reads a time without an offset as UTC, and keeps a 30-digit number exactly', async () => {
    for (const db of databases) {
      expect(
        await db.cast((v) => castFromCsv(quoted(v), 'timestamptz'), ['2026-01-31 09:30', '2026-01-31T09:30:00+02:00', '2026-01-31']),
      ).toEqual(['2026-01-31 09:30:00+00', '2026-01-31 07:30:00+00', '2026-01-31 00:00:00+00']);
      expect(await db.cast((v) => castFromCsv(quoted(v), 'numeric'), ['123456789012345678901234567890.000001'])).toEqual([
        '123456789012345678901234567890.000001',
      ]);
    }
  });

  it('casts JSON values by the type inferred from them', async () => {
    const json = [
      '{"a":[1,2]}',
      '"x\\"y"',
      '12.50',
      '123456789012345678901234567890',
      'true',
      '"2026-01-31"',
      '"2026-01-31T09:30:00Z"',
      '""',
    ];
    for (const db of databases) {
      expect(await db.cast((v) => castFromJson(quoted(v), 'jsonb'), json)).toEqual([
        '{"a": [1, 2]}',
        '"x\\"y"',
        '12.50',
        '123456789012345678901234567890',
        'true',
        '"2026-01-31"',
        '"2026-01-31T09:30:00Z"',
        '""',
      ]);
      expect(await db.cast((v) => castFromJson(quoted(v), 'text'), json)).toEqual([
        '{"a":[1,2]}',
        'x"y',
        '12.50',
        '123456789012345678901234567890',
        'true',
        '2026-01-31',
        '2026-01-31T09:30:00Z',
        '',
      ]);
      expect(await db.cast((v) => castFromJson(quoted(v), 'numeric'), ['12.50', '123456789012345678901234567890', '""'])).toEqual([
        '12.50',
        '123456789012345678901234567890',
        null,
      ]);
      expect(await db.cast((v) => castFromJson(quoted(v), 'timestamptz'), ['"2026-01-31"', '"2026-01-31T09:30:00+02:00"', '""'])).toEqual([
        '2026-01-31 00:00:00+00',
        '2026-01-31 07:30:00+00',
        null,
      ]);
    }
    const tally = new TypeTally();
    for (const text of ['12.50', '7', 'null']) tally.json(text);
    expect(tally.type).toBe('numeric');
    expect(textType('12.50')).toBe('numeric');
  });
});

describe('widening a column', () => {
  it('keeps every value, whatever the session time zone and date style', async () => {
    const samples: Record<Exclude<ColumnType, 'jsonb'>, string> = {
      bigint: "'-9223372036854775808'::bigint",
      numeric: "'123456789012345678901234567890.5'::numeric",
      boolean: 'true',
      date: "'2024-02-29'::date",
      timestamptz: "'2026-01-31T09:30:00.25+02:00'::timestamptz",
      text: "'n/a'::text",
    };
    const expected: Record<string, string> = {
      'bigint→numeric': '-9223372036854775808',
      'bigint→text': '-9223372036854775808',
      'bigint→jsonb': '-9223372036854775808',
      'numeric→text': '123456789012345678901234567890.5',
      'numeric→jsonb': '123456789012345678901234567890.5',
      'boolean→text': 'true',
      'boolean→jsonb': 'true',
      'date→timestamptz': String(Date.UTC(2024, 1, 29) / 1000), // (read back as epoch seconds: its text would follow the zone)
      'date→text': '2024-02-29',
      'date→jsonb': '"2024-02-29"',
      'timestamptz→text': '2026-01-31T07:30:00.250000Z',
      'timestamptz→jsonb': '"2026-01-31T07:30:00.250000Z"',
      'text→jsonb': '"n/a"',
    };
    for (const db of databases) {
      for (const [pair, want] of Object.entries(expected)) {
        const [from, to] = pair.split('→') as [ColumnType, ColumnType];
        expect(joinTypes(from, to), pair).toBe(to);
        // Widened under another zone and date style than UTC and ISO.
        const [value] = await db.cast(
          () =>
            `(SELECT ${to === 'timestamptz' ? 'extract(epoch FROM v)::bigint' : 'v'} FROM (SELECT set_config('TimeZone', 'America/Sao_Paulo', true), set_config('DateStyle', 'SQL, DMY', true)) s,
              LATERAL (SELECT (${widenExpression(`(${samples[from as keyof typeof samples]})`, from, to)})::${to} AS v) w)`,
          ['x'],
        );
        expect(value, `${db.name}: ${pair}`).toBe(want);
      }
    }
  });
});

describe("the bounds of PostgreSQL's types (issue 23, items 22 and 28)", () => {
  /** Whether the database casts the one value with `expression`, and what it gives. */
  const attempt = (db: Database, expression: (value: string) => string, value: string) =>
    db.cast(expression, [value]).then(
      ([result]) => ({ ok: true, result }),
      () => ({ ok: false, result: null }),
    );

  /** JSON numbers around numeric's bounds: 131072 digits before the point, a scale of 16383, the exponent's limit. */
  const numbers = fc
    .tuple(
      fc.constantFrom('', '-'),
      fc.oneof(
        fc.constantFrom('0', '1', '9', '10', '99', '123'),
        fc.integer({ min: 131_068, max: 131_073 }).map((n) => '9'.repeat(n)),
      ),
      fc.oneof(
        fc.constant(''),
        fc.constantFrom('.0', '.5', '.000', '.00001'),
        fc.integer({ min: 16_380, max: 16_385 }).map((n) => `.${'0'.repeat(n - 1)}1`),
      ),
      fc.oneof(
        fc.constant(''),
        fc
          .tuple(
            fc.constantFrom('e', 'E'),
            fc.constantFrom('', '+', '-'),
            fc.oneof(
              fc.integer({ min: 0, max: 5 }),
              fc.integer({ min: 131_060, max: 131_080 }),
              fc.integer({ min: 16_375, max: 16_390 }),
              fc.constantFrom(200_000, 2 ** 30 - 2, 2 ** 30, 10 ** 10, 10 ** 12),
            ),
          )
          .map(([e, sign, n]) => `${e}${sign}${n}`),
      ),
    )
    .map(([sign, int, frac, exp]) => `${sign}${int}${frac}${exp}`);

  it('fitsNumeric and jsonNumbersFit say what numeric and jsonb accept, in PGlite and PostgreSQL', async () => {
    const sample = [...new Set(fc.sample(numbers, { numRuns: 150, seed: 23 }))];
    expect(new Set(sample.map(fitsNumeric))).toEqual(new Set([true, false])); // both sides of the bounds
    for (const db of databases) {
      for (const value of sample) {
        const label = `${db.name}: ${value.length > 40 ? `${value.slice(0, 12)}…(${value.length})…${value.slice(-16)}` : value}`;
        expect(fitsNumeric(value), label).toBe((await attempt(db, (v) => `${v}::numeric`, value)).ok);
        expect(jsonNumbersFit(`{"a":[1,${value}]}`), label).toBe(
          (await attempt(db, (v) => `('{"a":[1,' || ${v} || ']}')::jsonb`, value)).ok,
        );
      }
    }
  }, 120_000);

  it('isTimestamp takes a time only when its UTC year is 1 to 9999, as PostgreSQL writes it back', async () => {
    const times = fc
      .tuple(
        fc.constantFrom('0001-01-01', '0001-01-02', '9999-12-31', '9999-12-30'),
        fc.integer({ min: 0, max: 23 }),
        fc.constantFrom(0, 1, 30, 59),
        fc.constantFrom('', ':00', ':59', ':59.999999', ':59.9999995', ':59.9999994', ':59.99999951', ':00.0000005'),
        fc.constantFrom('', 'Z', '+15:59', '-15:59', '+00:01', '-00:01', '+14', '-12:00', '+0530', '-1500'),
      )
      .map(([day, h, m, s, zone]) => `${day}T${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}${s}${zone}`);
    const sample = [...new Set(fc.sample(times, { numRuns: 400, seed: 28 }))];
    expect(new Set(sample.map(isTimestamp))).toEqual(new Set([true, false]));
    for (const db of databases) {
      for (const value of sample) {
        const { ok, result } = await attempt(
          db,
          (v) => `extract(year FROM ${castFromCsv(v, 'timestamptz')} AT TIME ZONE 'UTC')::int`,
          value,
        );
        expect(ok, `${db.name}: ${value}`).toBe(true);
        const year = Number(result);
        expect(isTimestamp(value), `${db.name}: ${value} is year ${year} in UTC`).toBe(year >= 1 && year <= 9999);
      }
    }
  }, 120_000);
});
