/**
 * What a query of POST /api/sql may be, checked on PostgreSQL's own parse tree (libpg-query,
 * the server's parser compiled to WebAssembly): one SELECT (or VALUES), reading only the
 * dataset tables and the query's own WITH names, calling only functions from a list of
 * side-effect-free ones. So it cannot write, lock, change a setting or role, sleep, read a
 * file, reach another schema or the system catalogs. The query then runs in a READ ONLY
 * transaction with a time limit, a cost limit and a row cap (routes/sql.ts).
 */
// libpg-query is loaded at the first query, not at start: it holds about 17 MB.
const parser = () => import('libpg-query');

/** Functions a query may call (by name, optionally qualified by pg_catalog): pure computations on values. */
const FUNCTIONS = new Set(
  (
    // aggregates and window functions
    'count sum avg min max string_agg array_agg json_agg jsonb_agg json_object_agg jsonb_object_agg bool_and bool_or every ' +
    'stddev stddev_pop stddev_samp variance var_pop var_samp corr covar_pop covar_samp percentile_cont percentile_disc mode ' +
    'row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value ' +
    // numbers
    'abs ceil ceiling floor round trunc sign sqrt cbrt power pow exp ln log log10 mod div pi degrees radians width_bucket ' +
    'to_number scale ' +
    // text
    'lower upper length char_length character_length octet_length substr substring btrim ltrim rtrim trim replace split_part ' +
    'concat concat_ws left right lpad rpad position strpos starts_with reverse initcap repeat md5 format translate overlay ' +
    'regexp_replace regexp_match regexp_matches regexp_split_to_array regexp_like regexp_count regexp_substr ascii chr ' +
    'to_char to_hex quote_literal quote_ident ' +
    // dates and times
    'now date_trunc date_part extract age make_date make_time make_timestamp make_timestamptz make_interval date_bin ' +
    'justify_days justify_hours justify_interval timezone to_date to_timestamp isfinite ' +
    // JSON and arrays
    'to_json to_jsonb row_to_json array_to_json json_build_object jsonb_build_object json_build_array jsonb_build_array ' +
    'json_typeof jsonb_typeof json_array_length jsonb_array_length jsonb_extract_path jsonb_extract_path_text json_extract_path ' +
    'json_extract_path_text jsonb_array_elements jsonb_array_elements_text json_array_elements json_array_elements_text ' +
    'jsonb_each jsonb_each_text json_each json_each_text jsonb_object_keys json_object_keys jsonb_strip_nulls json_strip_nulls ' +
    'jsonb_pretty jsonb_path_query jsonb_path_query_array jsonb_path_query_first jsonb_path_exists jsonb_path_match ' +
    'array_length array_to_string array_position array_positions array_remove array_append array_prepend array_cat ' +
    'cardinality unnest string_to_array array_lower array_upper generate_series ' +
    // conditionals that parse as calls
    'coalesce nullif greatest least num_nonnulls num_nulls'
  ).split(' '),
);

/** Statements and clauses a query may not hold (besides anything that is not a SELECT). */
const REFUSED: Record<string, string> = {
  intoClause: 'SELECT INTO creates a table',
  lockingClause: 'FOR UPDATE and FOR SHARE lock rows',
  InsertStmt: 'a query may not write',
  UpdateStmt: 'a query may not write',
  DeleteStmt: 'a query may not write',
  MergeStmt: 'a query may not write',
};

type Node = Record<string, unknown>;

/** Every object in the tree, with the key it was found under. */
function* walk(node: unknown, key = ''): Generator<[string, Node]> {
  if (Array.isArray(node)) {
    for (const item of node) yield* walk(item, key);
  } else if (node !== null && typeof node === 'object') {
    yield [key, node as Node];
    for (const [k, v] of Object.entries(node)) yield* walk(v, k);
  }
}

const names = (list: unknown): string[] => (Array.isArray(list) ? list.map((n) => ((n as { String?: { sval?: string } }).String?.sval ?? '')) : []);

export class SqlRefused extends Error {}

/**
 * Checks a query; throws SqlRefused saying why it may not run. `datasets` are the tables it
 * may read (the dataset schema's, by name), `schema` that schema's name.
 */
export async function checkQuery(sql: string, schema: string, datasets: ReadonlySet<string>): Promise<void> {
  let tree: { stmts?: { stmt: Node }[] };
  try {
    tree = (await (await parser()).parse(sql)) as typeof tree;
  } catch (err) {
    throw new SqlRefused(`the query is not valid SQL: ${(err as Error).message}`);
  }
  const statements = tree.stmts ?? [];
  if (statements.length !== 1) throw new SqlRefused(statements.length === 0 ? 'the query is empty' : 'send one statement at a time');
  const top = statements[0]!.stmt;
  if (!('SelectStmt' in top)) throw new SqlRefused(`only SELECT queries run here (got ${Object.keys(top)[0]})`);

  const withNames = new Set<string>();
  for (const [key, node] of walk(top)) if (key === 'CommonTableExpr') withNames.add(String(node.ctename));
  for (const [key, node] of walk(top)) {
    const refused = REFUSED[key];
    if (refused) throw new SqlRefused(refused);
    if (key === 'RangeVar') {
      const table = String(node.relname);
      const qualified = node.schemaname !== undefined || node.catalogname !== undefined;
      const allowed = qualified ? node.catalogname === undefined && node.schemaname === schema && datasets.has(table) : withNames.has(table) || datasets.has(table);
      if (!allowed) {
        const shown = [node.catalogname, node.schemaname, table].filter((part) => part !== undefined).join('.');
        throw new SqlRefused(`"${shown}" is not a dataset: a query reads the tables of schema ${schema} only`);
      }
    } else if (key === 'A_Expr' && names(node.name).length > 1 && names(node.name)[0] !== 'pg_catalog') {
      throw new SqlRefused(`the operator ${names(node.name).join('.')} may not be used here (operators of pg_catalog only)`);
    } else if (key === 'FuncCall') {
      const parts = names(node.funcname);
      const name = parts.at(-1)!;
      if ((parts.length > 1 && (parts.length > 2 || parts[0] !== 'pg_catalog')) || !FUNCTIONS.has(name)) {
        throw new SqlRefused(`the function ${parts.join('.')} may not be called here (functions that compute on values only)`);
      }
    }
  }
}
