/**
 * What a query of POST /api/sql may be, checked on PostgreSQL's own parse tree (libpg-query,
 * the server's parser compiled to WebAssembly): one SELECT (or VALUES), reading only the
 * dataset tables and the query's own WITH names (each resolved by scope, as PostgreSQL
 * resolves it), calling only functions from a list of side-effect-free ones. So it cannot
 * write, lock, change a setting or role, sleep, read a file, reach another schema or the
 * system catalogs. This is the first wall; the second is the role the query runs as
 * (storage/sql-role.ts); the limits are in routes/sql.ts.
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

/** The WITH names a reference can see where it stands, innermost query first. */
type Scope = readonly ReadonlySet<string>[];

interface Rules {
  schema: string;
  datasets: ReadonlySet<string>;
  embedded: boolean;
}

const names = (list: unknown): string[] => (Array.isArray(list) ? list.map((n) => ((n as { String?: { sval?: string } }).String?.sval ?? '')) : []);

export class SqlRefused extends Error {}

// In embedded mode nothing can stop a query once it runs (PGlite has no interrupt), so a
// query must be one whose size the planner can see. generate_series' row count is estimated
// exactly only from constant bounds. lpad and rpad make a value as long as their length,
// repeat one as long as its text times its count, and the planner counts each call the same
// whatever it makes: kept short, a call's work stays near what the estimate assumes.
const MAX_BUILT_CHARS = 1024;
const SIZED_BY_CONSTANTS = 'in embedded mode (which cannot stop a running query) its size must be known before it runs';

/** A constant as written: a literal, maybe signed or cast. */
function constant(node: unknown): Node | undefined {
  const n = node as { A_Const?: Node; TypeCast?: { arg?: unknown }; A_Expr?: { kind?: string; lexpr?: unknown; rexpr?: unknown; name?: unknown } };
  if (n?.A_Const) return n.A_Const;
  if (n?.TypeCast) return constant(n.TypeCast.arg);
  const minus = n?.A_Expr;
  if (minus && minus.kind === 'AEXPR_OP' && minus.lexpr === undefined && ['-', '+'].includes(names(minus.name).at(-1)!)) return constant(minus.rexpr);
  return undefined;
}

const constantNumber = (node: unknown): number | undefined => {
  const c = constant(node) as { ival?: { ival?: number }; fval?: { fval?: string } } | undefined;
  if (!c) return undefined;
  return c.ival ? Math.abs(c.ival.ival ?? 0) : c.fval ? Math.abs(Number(c.fval.fval)) : undefined;
};

function checkFunction(call: Node, rules: Rules): void {
  const parts = names(call.funcname);
  const name = parts.at(-1)!;
  if ((parts.length > 1 && (parts.length > 2 || parts[0] !== 'pg_catalog')) || !FUNCTIONS.has(name)) {
    throw new SqlRefused(`the function ${parts.join('.')} may not be called here (functions that compute on values only)`);
  }
  if (!rules.embedded) return;
  const args = Array.isArray(call.args) ? call.args : [];
  if (name === 'generate_series' && !args.every((arg) => constant(arg))) {
    throw new SqlRefused(`generate_series takes constant arguments here: ${SIZED_BY_CONSTANTS}`);
  }
  if (name === 'lpad' || name === 'rpad' || name === 'repeat') {
    const count = constantNumber(args[1]);
    const text = name === 'repeat' ? (constant(args[0]) as { sval?: { sval?: string } } | undefined) : {};
    const chars = name === 'repeat' ? (text?.sval?.sval?.length ?? Number.NaN) * (count ?? Number.NaN) : count;
    if (chars === undefined || !(chars <= MAX_BUILT_CHARS)) {
      throw new SqlRefused(`${name} takes ${name === 'repeat' ? 'a constant text and count' : 'a constant length'} making at most ${MAX_BUILT_CHARS} characters here: ${SIZED_BY_CONSTANTS}`);
    }
  }
}

function checkRelation(range: Node, scope: Scope, rules: Rules): void {
  const table = String(range.relname);
  const qualified = range.schemaname !== undefined || range.catalogname !== undefined;
  // An unqualified name is a WITH query's when one is in scope (PostgreSQL looks there
  // first), else a table; a qualified name is always a table.
  const allowed = qualified
    ? range.catalogname === undefined && range.schemaname === rules.schema && rules.datasets.has(table)
    : scope.some((visible) => visible.has(table)) || rules.datasets.has(table);
  if (!allowed) {
    const shown = [range.catalogname, range.schemaname, table].filter((part) => part !== undefined).join('.');
    throw new SqlRefused(`"${shown}" is not a dataset: a query reads the tables of schema ${rules.schema} only`);
  }
}

/**
 * A SELECT (or one side of a set operation): its WITH queries, each seeing the names PostgreSQL
 * lets it see, then the rest of it seeing them all.
 */
function visitSelect(select: Node, scope: Scope, rules: Rules): void {
  const withClause = select.withClause as { ctes?: { CommonTableExpr: Node }[]; recursive?: boolean } | undefined;
  let inner = scope;
  if (withClause) {
    if (withClause.recursive && rules.embedded) throw new SqlRefused(`WITH RECURSIVE may not be used here: ${SIZED_BY_CONSTANTS}`);
    const ctes = (withClause.ctes ?? []).map((cte) => cte.CommonTableExpr);
    const all = new Set(ctes.map((cte) => String(cte.ctename)));
    ctes.forEach((cte, i) => {
      // Without RECURSIVE a WITH query sees only the ones before it, not itself: inside its
      // own body its name is a table's. With RECURSIVE every one sees all of them.
      const visible = withClause.recursive ? all : new Set(ctes.slice(0, i).map((earlier) => String(earlier.ctename)));
      visit(cte, [visible, ...scope], rules);
    });
    inner = [all, ...scope];
  }
  for (const [key, value] of Object.entries(select)) if (key !== 'withClause') visit({ [key]: value }, inner, rules);
}

/** Checks every node under `node`, by the key it is found under (libpg-query's node names). */
function visit(node: unknown, scope: Scope, rules: Rules): void {
  if (Array.isArray(node)) {
    for (const item of node) visit(item, scope, rules);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [key, value] of Object.entries(node as Node)) {
    if (value === null || typeof value !== 'object') continue;
    const refused = REFUSED[key];
    if (refused) throw new SqlRefused(refused);
    // larg and rarg: the sides of a UNION, INTERSECT or EXCEPT (each may have its own WITH), or of a JOIN.
    if (key === 'SelectStmt' || key === 'larg' || key === 'rarg') {
      visitSelect(value as Node, scope, rules);
      continue;
    }
    if (key === 'RangeVar') checkRelation(value as Node, scope, rules);
    else if (key === 'FuncCall') checkFunction(value as Node, rules);
    else if (key === 'A_Expr') {
      const operator = names((value as Node).name);
      if (operator.length > 1 && operator[0] !== 'pg_catalog') throw new SqlRefused(`the operator ${operator.join('.')} may not be used here (operators of pg_catalog only)`);
    }
    visit(value, scope, rules);
  }
}

/**
 * Checks a query; throws SqlRefused saying why it may not run. `datasets` are the tables it
 * may read (the dataset schema's, by name), `schema` that schema's name; `embedded` refuses
 * what only a running query's interruption could bound.
 */
export async function checkQuery(sql: string, schema: string, datasets: ReadonlySet<string>, { embedded = false } = {}): Promise<void> {
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
  visit(top, [], { schema, datasets, embedded });
}
