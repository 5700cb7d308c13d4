/**
 * The publish plan (src/datasets/plan.ts) on its own, no database: what a job's load does to
 * its dataset in every case, and the messages of the loads that cannot be published.
 */
import { describe, expect, it } from 'vitest';
import type { LoadColumn } from '../src/datasets/loader.js';
import { datasetNameFor, datasetNameProblem, shorten, toName, uniqueColumnName } from '../src/datasets/names.js';
import { conflicts, objectName, planPublish, type DatasetColumn, type PublishInput } from '../src/datasets/plan.js';
import type { ColumnType } from '../src/datasets/types.js';

// The names a header's fields get, in order, as the loader makes them one by one.
function columnNames(fields: readonly string[]): string[] {
  const used = new Set<string>();
  return fields.map((field, index) => uniqueColumnName(field, index, used));
}

const col = (name: string, seen: ColumnType | null, target: ColumnType | null = null, original = name): LoadColumn => ({
  name,
  original,
  target,
  seen,
});
const has = (name: string, type: string, original_name = name): DatasetColumn => ({ name, type, original_name });

const input = (over: Partial<PublishInput>): PublishInput => ({
  dataset: 'orders',
  existing: null,
  format: 'csv',
  mode: 'append',
  key: [],
  widen: false,
  state: { columns: [] },
  ...over,
});

describe('a new dataset', () => {
  it('is created with each column in the type its values fit (text when none was seen), and Intake’s objects named by hash', () => {
    const plan = planPublish(
      input({ state: { columns: [col('id', 'bigint'), col('note', null), col('day', 'date', 'timestamptz'), col('Amount', 'numeric')] } }),
    );
    expect(plan).toEqual({
      mode: 'append',
      create: {
        columns: [
          { name: 'id', type: 'bigint' },
          { name: 'note', type: 'text' },
          { name: 'day', type: 'timestamptz' },
          { name: 'Amount', type: 'numeric' },
        ],
        sequence: objectName('seq', 'orders'),
        primaryKey: objectName('pk', 'orders'),
        jobIndex: objectName('job', 'orders'),
      },
      widen: [],
      addColumns: [],
      columns: [
        { name: 'id', original: 'id', value: "NULLIF(s.c0, '')::bigint", copies: 'bigint' },
        { name: 'note', original: 'note', value: 's.c1', copies: 'text' },
        { name: 'day', original: 'day', value: "NULLIF(s.c2, '')::timestamptz", copies: 'timestamptz' },
        { name: 'Amount', original: 'Amount', value: "NULLIF(s.c3, '')::numeric", copies: 'numeric' },
      ],
    });
    expect(plan.create!.sequence).toMatch(/^_intake_seq_[0-9a-f]{32}$/);
    expect(plan.create!.primaryKey).toMatch(/^_intake_pk_[0-9a-f]{32}$/);
    expect(plan.create!.jobIndex).toMatch(/^_intake_job_[0-9a-f]{32}$/);
  });

  it('reads a JSON input’s staged values as JSON text', () => {
    const plan = planPublish(
      input({
        format: 'json',
        state: { columns: [col('id', 'bigint'), col('note', 'text'), col('day', 'date'), col('tags', 'jsonb'), col('ok', 'boolean')] },
      }),
    );
    expect(plan.columns.map((c) => c.value)).toEqual([
      `NULLIF(s.c0, '""')::bigint`,
      `CASE WHEN left(s.c1, 1) = '"' THEN s.c1::jsonb #>> '{}' ELSE s.c1 END`,
      `NULLIF(btrim(s.c2, '"'), '')::date`,
      's.c3::jsonb',
      `NULLIF(s.c4, '""')::boolean`,
    ]);
    // NDJSON is JSON; a spreadsheet is tabular.
    expect(planPublish(input({ format: 'ndjson', state: { columns: [col('id', 'bigint')] } })).columns[0]!.value).toBe(
      `NULLIF(s.c0, '""')::bigint`,
    );
    expect(planPublish(input({ format: 'xlsx', state: { columns: [col('id', 'bigint')] } })).columns[0]!.value).toBe(
      "NULLIF(s.c0, '')::bigint",
    );
  });

  it('is created by a replace, whatever the dataset held (storage drops it first)', () => {
    const plan = planPublish(input({ mode: 'replace', state: { columns: [col('id', 'text')] } }));
    expect(plan.mode).toBe('replace');
    expect(plan.create?.columns).toEqual([{ name: 'id', type: 'text' }]);
    expect(plan.merge).toBeUndefined();
  });
});

describe('an existing dataset', () => {
  const existing = [has('id', 'bigint'), has('note', 'text')];

  it('gets the input’s new columns, in its order, after the ones it has', () => {
    const plan = planPublish(
      input({ existing, state: { columns: [col('note', 'text'), col('qty', 'bigint'), col('id', 'bigint'), col('empty', null)] } }),
    );
    expect(plan.create).toBeUndefined();
    expect(plan.widen).toEqual([]);
    expect(plan.addColumns).toEqual([
      { name: 'qty', type: 'bigint' },
      { name: 'empty', type: 'text' },
    ]);
    expect(plan.columns).toEqual([
      { name: 'note', original: 'note', value: 's.c0', copies: 'text' },
      { name: 'qty', original: 'qty', value: "NULLIF(s.c1, '')::bigint", copies: 'bigint' },
      { name: 'id', original: 'id', value: "NULLIF(s.c2, '')::bigint", copies: 'bigint' },
      { name: 'empty', original: 'empty', value: 's.c3', copies: 'text' },
    ]);
  });

  it('keeps a column’s type when the job saw no value for it, or narrower ones', () => {
    const plan = planPublish(
      input({
        existing: [has('id', 'numeric'), has('note', 'text'), has('at', 'timestamptz')],
        state: { columns: [col('id', 'bigint'), col('note', 'date'), col('at', null)] },
      }),
    );
    expect(plan.widen).toEqual([]);
    expect(plan.addColumns).toEqual([]);
    expect(plan.columns.map((c) => c.value)).toEqual([
      "NULLIF(s.c0, '')::bigint::numeric",
      "to_char(NULLIF(s.c1, '')::date, 'YYYY-MM-DD')",
      "NULLIF(s.c2, '')::timestamptz",
    ]);
    // COPY fills only a column whose values it reads as the cast would: not one read into another type.
    expect(plan.columns.map((c) => c.copies)).toEqual([undefined, undefined, 'timestamptz']);
  });

  it('widens a column when the job may, to the narrowest type holding both', () => {
    const plan = planPublish(
      input({
        existing: [has('id', 'bigint'), has('day', 'date'), has('code', 'bigint'), has('note', 'text')],
        widen: true,
        state: { columns: [col('id', 'numeric'), col('day', 'timestamptz'), col('code', 'date'), col('note', 'text')] },
      }),
    );
    expect(plan.conflict).toBeUndefined();
    expect(plan.widen).toEqual([
      { column: 'id', from: 'bigint', to: 'numeric' },
      { column: 'day', from: 'date', to: 'timestamptz' },
      { column: 'code', from: 'bigint', to: 'text' },
    ]);
    expect(plan.columns.map((c) => c.value)).toEqual([
      "NULLIF(s.c0, '')::numeric",
      "NULLIF(s.c1, '')::timestamptz",
      "to_char(NULLIF(s.c2, '')::date, 'YYYY-MM-DD')",
      's.c3',
    ]);
  });

  it('refuses to widen without schema_update=widen, naming the first column in the input’s order', () => {
    const plan = planPublish(
      input({ existing, state: { columns: [col('note', 'text'), col('id', 'numeric'), col('qty', 'bigint')] }, format: 'json' }),
    );
    expect(plan.conflict).toBe(
      'column "id" of dataset "orders" is bigint, and this job\'s values need numeric: submit with schema_update=widen to widen it',
    );
    const twice = planPublish(input({ existing, state: { columns: [col('note', 'jsonb'), col('id', 'text')] } }));
    expect(twice.conflict).toBe(
      'column "note" of dataset "orders" is text, and this job\'s values need jsonb: submit with schema_update=widen to widen it',
    );
  });

  it('holds a declared type over the seen one: a narrower declared type is widened into the column, a wider one widens it', () => {
    const narrower = planPublish(input({ existing: [has('v', 'text')], state: { columns: [col('v', 'bigint', 'date')] } }));
    expect(narrower.conflict).toBeUndefined();
    expect(narrower.columns[0]!.value).toBe("to_char(NULLIF(s.c0, '')::date, 'YYYY-MM-DD')");
    const wider = planPublish(input({ existing: [has('v', 'bigint')], state: { columns: [col('v', 'bigint', 'jsonb')] } }));
    expect(wider.conflict).toBe(
      'column "v" of dataset "orders" is bigint, and this job\'s values need jsonb: submit with schema_update=widen to widen it',
    );
    expect(
      planPublish(input({ existing: [has('v', 'bigint')], widen: true, state: { columns: [col('v', 'bigint', 'jsonb')] } })).widen,
    ).toEqual([{ column: 'v', from: 'bigint', to: 'jsonb' }]);
  });

  it('leaves a type set outside Intake to PostgreSQL’s cast, never widening it', () => {
    const plan = planPublish(
      input({
        existing: [has('n', 'integer'), has('t', 'character varying(20)')],
        state: { columns: [col('n', 'numeric'), col('t', null)] },
      }),
    );
    expect(plan.conflict).toBeUndefined();
    expect(plan.widen).toEqual([]);
    expect(plan.columns.map((c) => c.value)).toEqual(["(NULLIF(s.c0, '')::numeric)::integer", '(s.c1)::character varying(20)']);
  });
});

describe('a merge', () => {
  it('finds the key’s columns by name or by the name as written, and names its unique index by hash', () => {
    const state = { columns: [col('order_id', 'bigint', null, 'Order ID'), col('region', 'text'), col('qty', 'bigint')] };
    const plan = planPublish(input({ mode: 'merge', key: ['region', 'Order ID'], existing: [has('order_id', 'bigint')], state }));
    expect(plan.merge).toEqual({ key: ['region', 'order_id'], keyIndex: objectName('key', 'orders', 'region,order_id') });
    expect(plan.merge).toHaveProperty('keyIndex', expect.stringMatching(/^_intake_key_[0-9a-f]{32}$/));
    expect(plan.addColumns).toEqual([
      { name: 'region', type: 'text' },
      { name: 'qty', type: 'bigint' },
    ]);
    // A new dataset merged into: created, then merged.
    const created = planPublish(input({ mode: 'merge', key: ['order_id'], state }));
    expect(created.create?.columns.map((c) => c.name)).toEqual(['order_id', 'region', 'qty']);
    expect(created.merge).toEqual({ key: ['order_id'], keyIndex: objectName('key', 'orders', 'order_id') });
  });

  it('says which key column the input lacked (a conflict only when the stage holds rows)', () => {
    const plan = planPublish(input({ mode: 'merge', key: ['id', 'sku', 'lot'], state: { columns: [col('id', 'bigint')] } }));
    expect(plan.merge).toEqual({ missingKey: 'sku' });
    expect(plan.conflict).toBeUndefined();
    expect(conflicts.keyNotInInput('sku')).toBe('the key column "sku" is not in the input');
  });

  it('is the only mode with a key', () => {
    for (const mode of ['append', 'replace'] as const) {
      expect(planPublish(input({ mode, key: ['id'], state: { columns: [col('id', 'bigint')] } })).merge).toBeUndefined();
    }
  });
});

describe('the messages of a load that cannot be published', () => {
  it('are those the job fails with', () => {
    expect(conflicts.tooManyColumns('orders')).toBe('dataset "orders" would have more than 1600 columns');
    expect(conflicts.keyNotUnique('orders', ['region', 'id'])).toBe(
      'dataset "orders" holds rows with the same ("region", "id"): a merge needs that key to be unique',
    );
    expect(conflicts.tooManyDatasets(3, 'orders')).toBe(
      'Intake already holds 3 datasets (MAX_DATASETS): dataset "orders" was not created; delete a dataset or load into an existing one',
    );
  });
});

describe('names of a dataset’s own objects', () => {
  it('differ for two datasets whose long names share a 63-character prefix, and fit PostgreSQL’s 63 bytes', () => {
    const prefix = 's'.repeat(63);
    const names = new Set<string>();
    for (const dataset of [prefix, `${prefix}a`, `${prefix}b`, `${'s'.repeat(62)}t`]) {
      for (const kind of ['pk', 'seq', 'job', 'key'] as const) {
        const name = objectName(kind, dataset, kind === 'key' ? 'id' : '');
        expect(Buffer.byteLength(name)).toBeLessThanOrEqual(63);
        names.add(name);
      }
    }
    expect(names.size).toBe(16);
    // A key's columns are part of its index's name.
    expect(objectName('key', 'orders', 'a,b')).not.toBe(objectName('key', 'orders', 'b,a'));
  });
});

describe('names shortened to 63 characters', () => {
  const prefix = 'q'.repeat(63);

  it('carry a hash of the whole name: two long names sharing a 63-character prefix stay two names', () => {
    const a = toName(`${prefix}_a`, 'x');
    const b = toName(`${prefix}_b`, 'x');
    expect(a).toMatch(/^q{50}_[0-9a-f]{12}$/);
    expect(b).toMatch(/^q{50}_[0-9a-f]{12}$/);
    expect(a).not.toBe(b);
    // The same name every time, whatever else the input holds; a name that fits is left as it is.
    expect(toName(`${prefix} A`, 'x')).toBe(a);
    expect(toName(prefix, 'x')).toBe(prefix);
    expect(shorten(`${'w'.repeat(49)}_${'w'.repeat(20)}`, 63)).toMatch(/^w{49}_[0-9a-f]{12}$/); // no `__`
  });

  it('keep two datasets apart, named from long file names', () => {
    const a = datasetNameFor(`${prefix}_january.csv`);
    const b = datasetNameFor(`${prefix}_february.csv`);
    const pg = [datasetNameFor(`pg_${prefix}_january.csv`), datasetNameFor(`pg_${prefix}_february.csv`)];
    for (const name of [a, b, ...pg]) {
      expect(datasetNameProblem(name), name).toBeUndefined();
      expect(name.length).toBeLessThanOrEqual(63);
    }
    expect(a).not.toBe(b);
    expect(pg[0]).toMatch(/^d_pg_q+_[0-9a-f]{12}$/);
    expect(pg[0]).not.toBe(pg[1]);
  });

  it('keep two columns apart, across inputs as within one, with or without a suffix for a name made twice', () => {
    const one = columnNames([`${prefix}_a`, `${prefix}_a`]);
    const two = columnNames([`${prefix}_b`, `${prefix}_b`]);
    expect(new Set([...one, ...two]).size).toBe(4);
    expect(one[1]).toMatch(/^q{48}_[0-9a-f]{12}_2$/);
    // A name that fits but not with its suffix: shortened with the hash too.
    const fits = columnNames([`${'r'.repeat(61)}_a`, `${'r'.repeat(61)} a`, `${'r'.repeat(61)}_b`, `${'r'.repeat(61)} b`]);
    expect(fits[0]).toBe(`${'r'.repeat(61)}_a`);
    expect(fits[1]).toMatch(/^r{48}_[0-9a-f]{12}_2$/);
    expect(new Set(fits).size).toBe(4);
    for (const name of [...one, ...two, ...fits]) expect(name.length).toBeLessThanOrEqual(63);
  });
});

describe('a dataset an older Intake made, whose long column names were cut without a hash', () => {
  it('gets the job’s values for such a column in it, found by the name as written, not a new column', () => {
    const header = `${'Quantity ordered by the customer '.repeat(3)}`.trim();
    const cut = 'quantity_ordered_by_the_customer_quantity_ordered_by_the_custom';
    const name = toName(header, 'x');
    expect(name).not.toBe(cut);
    const plan = planPublish(
      input({
        existing: [has('id', 'bigint'), has(cut, 'bigint', header)],
        state: { columns: [col('id', 'bigint'), col(name, 'bigint', null, header)] },
      }),
    );
    expect(plan.addColumns).toEqual([]);
    expect(plan.columns[1]).toEqual({ name: cut, original: header, value: "NULLIF(s.c1, '')::bigint", copies: 'bigint' });
    // Its type is the old column's: widened or refused as any.
    const wider = planPublish(input({ existing: [has(cut, 'bigint', header)], state: { columns: [col(name, 'numeric', null, header)] } }));
    expect(wider.conflict).toBe(
      `column "${cut}" of dataset "orders" is bigint, and this job's values need numeric: submit with schema_update=widen to widen it`,
    );
    // A merge on it uses the old column.
    const merge = planPublish(
      input({
        mode: 'merge',
        key: [header],
        existing: [has(cut, 'bigint', header)],
        state: { columns: [col(name, 'bigint', null, header)] },
      }),
    );
    expect(merge.merge).toEqual({ key: [cut], keyIndex: objectName('key', 'orders', cut) });
  });

  it('pairs a header given twice with its old columns in order, and never takes a column another of the job’s columns fills', () => {
    const header = 'h'.repeat(70);
    const [first, second] = columnNames([header, header]);
    const plan = planPublish(
      input({
        existing: [has('h'.repeat(63), 'text', header), has(`${'h'.repeat(61)}_2`, 'text', header), has('id', 'text', header)],
        state: { columns: [col(first!, 'text', null, header), col(second!, 'text', null, header), col('id', 'text', null, header)] },
      }),
    );
    expect(plan.columns.map((c) => c.name)).toEqual(['h'.repeat(63), `${'h'.repeat(61)}_2`, 'id']);
    expect(plan.addColumns).toEqual([]);
    // A new long header is a new column.
    const other = planPublish(
      input({
        existing: [has('h'.repeat(63), 'text', header)],
        state: { columns: [col(toName('g'.repeat(70), 'x'), 'text', null, 'g'.repeat(70))] },
      }),
    );
    expect(other.addColumns).toEqual([{ name: toName('g'.repeat(70), 'x'), type: 'text' }]);
  });
});
