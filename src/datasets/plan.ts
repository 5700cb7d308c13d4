/**
 * What publishing a job's load does to its dataset, decided before any statement runs: the
 * table to create, the columns to widen and to add, how each staged value becomes its column's
 * value, and how the rows go in (append, replace, merge on a key). Pure: storage/datasets.ts
 * reads the dataset, asks for the plan, and runs its statements in the job's completing
 * transaction.
 */
import { createHash } from 'node:crypto';
import { isTabular, type Format, type WriteMode } from '../core/job.js';
import { castFromCsv, castFromJson, widenExpression } from './casts.js';
import { stageColumn, type LoadState } from './loader.js';
import { COLUMN_TYPES, joinTypes, type ColumnType } from './types.js';

/** A name quoted as an SQL identifier. */
export const quoteName = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * The name of one of a dataset's own objects (`kind`: an index, its primary key, its identity
 * sequence), which share the schema's namespace with the datasets: `_intake_<kind>_` and 128
 * bits of a hash of the dataset's name (and of `detail`, e.g. a key's columns). It cannot be a
 * dataset's name (those start with a letter), and two datasets never get the same one,
 * however long and alike their names; at 44 characters at most, PostgreSQL never cuts it.
 */
export function objectName(kind: 'pk' | 'seq' | 'job' | 'key', dataset: string, detail = ''): string {
  return `_intake_${kind}_${createHash('sha256').update(`${dataset}\0${detail}`).digest('hex').slice(0, 32)}`;
}

/** A user's column of a dataset table, as it is now. */
export interface DatasetColumn {
  name: string;
  /** One of COLUMN_TYPES, or PostgreSQL's name of a type set outside Intake. */
  type: string;
  original_name: string;
}

export interface PublishInput {
  dataset: string;
  /** The dataset's columns, in table order; null when it has no table, or a replace drops it. */
  existing: DatasetColumn[] | null;
  format: Format;
  mode: WriteMode;
  /** A merge's key, as the submit gave it (column names or names as written). */
  key: readonly string[];
  /** Whether the job may widen the dataset's columns (schema_update=widen). */
  widen: boolean;
  state: LoadState;
}

/** One of the job's columns (in the loader's order: its stage column `c<i>`) as published. */
export interface PublishColumn {
  /** The table's column it fills. */
  name: string;
  /** The field's name as the input wrote it. */
  original: string;
  /** The SQL expression of its value, from the stage row `s`, in the column's type. */
  value: string;
  /**
   * The column's type when COPY can fill it from the input's text as written (PostgreSQL reads
   * each value as the cast at publish would: no reading of Intake's own, no widening).
   */
  copies?: ColumnType;
}

export interface PublishPlan {
  mode: WriteMode;
  /** The table to make (a new dataset, or a replace's): the user's columns, with Intake's own objects' names. */
  create?: { columns: { name: string; type: ColumnType }[]; sequence: string; primaryKey: string; jobIndex: string };
  /** Columns made wider before the rows go in, in the job's column order. */
  widen: { column: string; from: ColumnType; to: ColumnType }[];
  /** Columns the dataset gets, after the widening. */
  addColumns: { name: string; type: ColumnType }[];
  columns: PublishColumn[];
  /**
   * A merge's key: its columns, and the name of the unique index made on them when the dataset
   * has none; or, when no input record had the key's column, that key as given (see `conflicts.keyNotInInput`).
   */
  merge?: { key: string[]; keyIndex: string } | { missingKey: string };
  /** Why the load cannot be published as asked: the job fails with this message. */
  conflict?: string;
}

/** The messages of a load that cannot be published as asked. */
export const conflicts = {
  widen: (dataset: string, column: string, from: string, to: string) =>
    `column "${column}" of dataset "${dataset}" is ${from}, and this job's values need ${to}: submit with schema_update=widen to widen it`,
  tooManyColumns: (dataset: string) => `dataset "${dataset}" would have more than 1600 columns`,
  keyNotUnique: (dataset: string, key: readonly string[]) =>
    `dataset "${dataset}" holds rows with the same (${key.map(quoteName).join(', ')}): a merge needs that key to be unique`,
  keyNotInInput: (key: string) => `the key column "${key}" is not in the input`,
  tooManyDatasets: (max: number, dataset: string) =>
    `Intake already holds ${max} datasets (MAX_DATASETS): dataset "${dataset}" was not created; delete a dataset or load into an existing one`,
};

const isColumnType = (type: string): type is ColumnType => (COLUMN_TYPES as readonly string[]).includes(type);

/**
 * The dataset's columns that none of the job's has the name of, by their name as written (in
 * table order): a job's column whose name the dataset lacks fills the first of these with its
 * name as written. Only a change of the naming rule makes one (an older Intake cut a long name to
 * 63 characters, without the hash `shorten` adds), so the datasets it made keep their columns.
 */
function formerNames(existing: DatasetColumn[], state: LoadState): Map<string, string[]> {
  const named = new Set(state.columns.map((c) => c.name));
  const byOriginal = new Map<string, string[]>();
  for (const c of existing) {
    if (!named.has(c.name)) byOriginal.set(c.original_name, [...(byOriginal.get(c.original_name) ?? []), c.name]);
  }
  return byOriginal;
}

export function planPublish(p: PublishInput): PublishPlan {
  const plan: PublishPlan = { mode: p.mode, widen: [], addColumns: [], columns: [] };
  // A new table gets each column in the type its values are known to fit.
  if (p.existing === null) {
    plan.create = {
      columns: p.state.columns.map((c) => ({ name: c.name, type: c.target ?? c.seen ?? 'text' })),
      sequence: objectName('seq', p.dataset),
      primaryKey: objectName('pk', p.dataset),
      jobIndex: objectName('job', p.dataset),
    };
  }
  const existing = new Map(p.existing?.map((c) => [c.name, c.type]) ?? plan.create!.columns.map((c) => [c.name, c.type]));
  const formerly = formerNames(p.existing ?? [], p.state);
  for (const [i, loaded] of p.state.columns.entries()) {
    const column = existing.has(loaded.name) ? loaded : { ...loaded, name: formerly.get(loaded.original)?.shift() ?? loaded.name };
    const current = existing.get(column.name);
    // The type the staged values are known to fit, then the column's.
    const staged: ColumnType = column.target ?? column.seen ?? (current !== undefined && isColumnType(current) ? current : 'text');
    let value = isTabular(p.format)
      ? castFromCsv(`s.${stageColumn(i)}`, staged, column.reading)
      : castFromJson(`s.${stageColumn(i)}`, staged);
    if (current === undefined) {
      plan.addColumns.push({ name: column.name, type: staged });
    } else if (current !== staged) {
      if (!isColumnType(current)) {
        value = `(${value})::${current}`; // a type set outside Intake: PostgreSQL's own cast decides
      } else {
        const wider = joinTypes(current, staged)!;
        if (wider !== current) {
          if (!p.widen) return { ...plan, conflict: conflicts.widen(p.dataset, column.name, current, wider) };
          plan.widen.push({ column: column.name, from: current, to: wider });
        }
        if (staged !== wider) value = widenExpression(value, staged, wider);
      }
    }
    const copies = isTabular(p.format) && column.reading === undefined && (current === undefined || current === staged);
    plan.columns.push({ name: column.name, original: column.original, value, ...(copies && { copies: staged }) });
  }
  if (p.mode === 'merge') {
    const names = p.key.map((k) => p.state.columns.findIndex((c) => c.name === k || c.original === k));
    const missing = names.indexOf(-1);
    if (missing >= 0) plan.merge = { missingKey: p.key[missing]! };
    else {
      const key = names.map((i) => plan.columns[i]!.name);
      plan.merge = { key, keyIndex: objectName('key', p.dataset, key.join(',')) };
    }
  }
  return plan;
}
