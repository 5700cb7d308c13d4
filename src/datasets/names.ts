/**
 * Names of datasets and of their columns: PostgreSQL identifiers that never need quoting, so
 * that `SELECT sum(qty) FROM datasets.orders` works as typed. One rule for both: lower-case
 * letters, digits and `_`, starting with a letter, at most 63 characters (PostgreSQL's
 * identifier limit in bytes, which these ASCII names are). Names starting with `_intake_` are
 * Intake's bookkeeping columns, never a user's.
 */
import { createHash } from 'node:crypto';

const NAME_RULE = 'lower-case letters, digits and _, starting with a letter, at most 63 characters';
const NAME = /^[a-z][a-z0-9_]{0,62}$/;
const MAX_NAME_LENGTH = 63;
// Hex digits of a hash that a shortened name ends with (48 bits).
const HASH_LENGTH = 12;

/**
 * Words PostgreSQL reserves (its "reserved" and "reserved (can be function or type)" key
 * words): as a bare column or table name they are a syntax error, so a name made from one gets
 * a trailing `_` (`select` → `select_`). A name a user gives is refused instead.
 */
const RESERVED = new Set(
  (
    'all analyse analyze and any array as asc asymmetric authorization binary both case cast check collate collation column ' +
    'concurrently constraint create cross current_catalog current_date current_role current_schema current_time ' +
    'current_timestamp current_user default deferrable desc distinct do else end except false fetch for foreign freeze ' +
    'from full grant group having ilike in initially inner intersect into is isnull join lateral leading left like limit ' +
    'localtime localtimestamp natural not notnull null offset on only or order outer overlaps placing primary references ' +
    'returning right select session_user similar some symmetric system_user table tablesample then to trailing true union ' +
    'unique user using variadic verbose when where window with'
  ).split(' '),
);

/** Why `name` cannot name a dataset, or undefined when it can. */
export function datasetNameProblem(name: string): string | undefined {
  if (!NAME.test(name)) return `a dataset name is ${NAME_RULE}: "${name}" is not`;
  if (RESERVED.has(name)) return `"${name}" is a word PostgreSQL reserves: choose another dataset name`;
  if (name.startsWith('pg_')) return `"${name}" starts with pg_, which PostgreSQL keeps for its own tables: choose another dataset name`;
  return undefined;
}

/**
 * Any text made into a name by the rule: accents dropped (`é` → `e`), lower-cased, every run
 * of other characters one `_`, none at either end; a name starting with a digit gets
 * `fallback`'s first letter and `_` before it, a reserved word a trailing `_`, and nothing left
 * at all becomes `fallback`; a name longer than 63 characters is shortened (see `shorten`):
 *
 *   `Sales Report (2026)` → `sales_report_2026`   `2026 totals` → `d_2026_totals` (fallback `dataset`)
 *   `Prix €/kg` → `prix_kg`                       `select` → `select_`        `€€` → fallback
 */
export function toName(text: string, fallback: string): string {
  return shorten(fullName(text, fallback), MAX_NAME_LENGTH);
}

/** `toName` before it is shortened. */
function fullName(text: string, fallback: string): string {
  let name = text
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '');
  if (name === '') name = fallback;
  else if (!/^[a-z]/.test(name)) name = `${fallback.charAt(0)}_${name}`;
  if (RESERVED.has(name)) name = `${name}_`;
  return name;
}

/**
 * `name` (one that starts with a letter) as it is when it has at most `max` characters; else its
 * start, `_` and 12 hex digits of a hash of the whole name, `max` characters at most: two long
 * names alike in their first characters stay two names (two columns, two datasets).
 */
export function shorten(name: string, max: number): string {
  if (name.length <= max) return name;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, HASH_LENGTH);
  return `${name.slice(0, max - HASH_LENGTH - 1).replace(/_+$/, '')}_${hash}`;
}

/**
 * The dataset name Intake picks when none is given: the file name without its extensions
 * (`.csv`, `.json`, `.ndjson`, `.jsonl`, `.tsv`, `.txt`, `.gz`, `.zst`, `.zip`, `.xlsx`), made a name (one
 * starting with `pg_`, which PostgreSQL keeps, gets `d_` before it);
 * records posted without a file go to `records`.
 */
export function datasetNameFor(fileName: string | null): string {
  if (!fileName) return 'records';
  const base = fileName.replace(/^.*[\\/]/, '').replace(/(\.(csv|tsv|txt|json|ndjson|jsonl|xlsx|gz|zst|zstd|zip))+$/i, '');
  const name = fullName(base, 'dataset');
  return shorten(name.startsWith('pg_') ? `d_${name}` : name, MAX_NAME_LENGTH);
}

/** The column name for the field at `index` (0-based), not one of `used` (which it joins). */
export function uniqueColumnName(field: string, index: number, used: Set<string>): string {
  const base = fullName(field, `column_${index + 1}`);
  let name = shorten(base, MAX_NAME_LENGTH);
  for (let n = 2; used.has(name); n++) {
    const suffix = `_${n}`;
    name = `${shorten(base, MAX_NAME_LENGTH - suffix.length)}${suffix}`;
  }
  used.add(name);
  return name;
}
