/**
 * What a query of POST /api/sql may be, checked on PostgreSQL's own parse tree (libpg-query,
 * the server's parser compiled to WebAssembly): one SELECT (or VALUES), reading only the
 * dataset tables and the query's own WITH names (each resolved by scope, as PostgreSQL
 * resolves it), calling only functions from a list of side-effect-free ones. So it cannot
 * write, lock, change a setting or role, sleep, read a file, reach another schema or the
 * system catalogs; nor make PostgreSQL copy parts of it exponentially before the plan (and its
 * cost) exists, nor nest past what the walk and PGlite's stack hold. This is the first wall; the second is the role the query runs as
 * (storage/sql-role.ts); the limits are in routes/sql.ts.
 */
// libpg-query is loaded at the first query, not at start: it holds about 17 MB.
const parser = () => import('libpg-query');

/** Functions a query may call (by name, optionally qualified by pg_catalog): pure computations on values. */
const FUNCTIONS = new Set(
  // aggregates and window functions
  (
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
  // XML syntax (XMLTABLE, xmlparse, xmlelement, xmlserialize...) is no function call: refused
  // like xpath, whose work it does (an XPath PostgreSQL cannot compile fails as an internal error).
  RangeTableFunc: 'XMLTABLE may not be used here (XML functions are not allowed)',
  XmlExpr: 'XML expressions may not be used here (XML functions are not allowed)',
  XmlSerialize: 'XMLSERIALIZE may not be used here (XML functions are not allowed)',
};

/** What only embedded mode refuses: SQL/JSON's path queries do the work of JSON_PATHS, unseen by the planner. */
const REFUSED_EMBEDDED: Record<string, string> = {
  JsonFuncExpr:
    "JSON_QUERY, JSON_VALUE and JSON_EXISTS may not be used here (a path's work is not seen by the planner): in embedded mode (which cannot stop a running query) its size must be known before it runs",
  JsonTable:
    "JSON_TABLE may not be used here (a path's work is not seen by the planner): in embedded mode (which cannot stop a running query) its size must be known before it runs",
};

/**
 * How deep the query may nest, in levels of libpg-query's JSON tree (about two per operator in a
 * chain, seven per nested subquery), counting a WITH query at each reference as deep as its
 * body (PostgreSQL analyses and plans it there: a chain of WITH queries each reading the one
 * before nests as deep as nested subqueries, while its parse tree stays flat). Past it the
 * guard's walk could overflow the JS stack; PGlite fails well before PostgreSQL's own stack
 * limit, at about 600 levels of operators or 300 of chained WITH queries, with unrelated errors
 * ("bad buffer ID: 0"); PostgreSQL plans 3,000 chained WITH queries for minutes, deaf to
 * statement_timeout.
 */
const MAX_DEPTH = 400;

type Node = Record<string, unknown>;

/**
 * The names a FROM brings into scope, each with what `name.x` may read: any column of a row
 * (a table, a subquery, a WITH query, a join), or the named columns of a function's result,
 * whose value is no row: `g.x` of `generate_series(…) g` is, when x is no column, the call x(g)
 * of any function.
 */
type Relations = ReadonlyMap<string, 'row' | ReadonlySet<string>>;

/**
 * What a reference can see where it stands, innermost query first: the WITH queries (each with
 * how deep its body nests), and the tables and aliases of the FROM clauses.
 */
interface Scope {
  ctes: readonly ReadonlyMap<string, number>[];
  relations: readonly Relations[];
}

interface Rules {
  schema: string;
  datasets: ReadonlySet<string>;
  embedded: boolean;
}

const names = (list: unknown): string[] =>
  Array.isArray(list) ? list.map((n) => (n as { String?: { sval?: string } }).String?.sval ?? '') : [];

export class SqlRefused extends Error {}

// In embedded mode nothing can stop a query once it runs (PGlite has no interrupt), so a
// query must be one whose size the planner can see. A set-returning function's rows are
// estimated from its arguments only by generate_series and unnest (support functions that
// read constants); any other is taken to yield a fixed count (prorows: 100 for the JSON ones)
// whatever it is given. lpad and rpad make a value as long as their length, repeat one as
// long as its text times its count, format as wide as its widths, replace and regexp_replace
// one as long as the text times its replacements, and the planner counts each call the same
// whatever it makes: kept short, a call's work stays near what the estimate assumes.
const MAX_BUILT_CHARS = 1024;
const SIZED_BY_CONSTANTS = 'in embedded mode (which cannot stop a running query) its size must be known before it runs';
/** Set-returning functions of FUNCTIONS whose row count the planner takes from constant arguments. */
const SIZED_SETS = new Set(['generate_series', 'unnest']);
/** The other set-returning functions of FUNCTIONS, estimated at 100 rows: a constant this long yields no more. */
const JSON_SETS = new Set(
  'jsonb_array_elements jsonb_array_elements_text json_array_elements json_array_elements_text jsonb_each jsonb_each_text json_each json_each_text jsonb_object_keys json_object_keys'.split(
    ' ',
  ),
);
const JSON_SET_CHARS = 200;
/**
 * A JSON path runs every accessor on every item the one before made (`$[0,0][0,0]…` doubles
 * at each step), unseen by the planner: refused in embedded mode, as the operators @? and @@.
 */
const JSON_PATHS = new Set([
  'jsonb_path_query',
  'jsonb_path_query_array',
  'jsonb_path_query_first',
  'jsonb_path_exists',
  'jsonb_path_match',
]);

/** A constant as written: a literal, maybe signed or cast, or an ARRAY[...] of them. */
function constant(node: unknown): Node | undefined {
  const n = node as {
    A_Const?: Node;
    TypeCast?: { arg?: unknown };
    A_ArrayExpr?: { elements?: unknown[] };
    A_Expr?: { kind?: string; lexpr?: unknown; rexpr?: unknown; name?: unknown };
  };
  if (n?.A_Const) return n.A_Const;
  if (n?.TypeCast) return constant(n.TypeCast.arg);
  if (n?.A_ArrayExpr) return (n.A_ArrayExpr.elements ?? []).every((element) => constant(element)) ? n.A_ArrayExpr : undefined;
  const minus = n?.A_Expr;
  if (minus && minus.kind === 'AEXPR_OP' && minus.lexpr === undefined && ['-', '+'].includes(names(minus.name).at(-1)!))
    return constant(minus.rexpr);
  return undefined;
}

const constantNumber = (node: unknown): number | undefined => {
  const c = constant(node) as { ival?: { ival?: number }; fval?: { fval?: string } } | undefined;
  if (!c) return undefined;
  return c.ival ? Math.abs(c.ival.ival ?? 0) : c.fval ? Math.abs(Number(c.fval.fval)) : undefined;
};

/** A string literal as written (maybe cast), else undefined. */
const constantText = (node: unknown): string | undefined => {
  const c = constant(node) as { sval?: { sval?: string } } | undefined;
  return c?.sval ? (c.sval.sval ?? '') : undefined;
};

/**
 * format's width is a length like lpad's: each `%[n$][-][width]type` must have a written width
 * of at most MAX_BUILT_CHARS (none taken from an argument, `*`).
 */
function formatWidthsBounded(spec: string): boolean {
  for (const match of spec.matchAll(/%(%|(?:\d+\$)?-?(\*(?:\d+\$)?|\d*)[sIL]?)/g)) {
    const width = match[2] ?? '';
    if (width.startsWith('*') || (width !== '' && !(Number(width) <= MAX_BUILT_CHARS))) return false;
  }
  return true;
}

/**
 * How deep a regular expression may nest its groups in embedded mode: PostgreSQL compiles one
 * recursively, and a pattern of 5,000 nested groups broke PGlite's backend for good.
 */
const MAX_PATTERN_NESTING = 100;

/** In embedded mode a pattern is a constant of bounded nesting (one read from a column could be anything). */
function checkPattern(pattern: unknown, what: string): void {
  const text = constantText(pattern);
  let open = 0;
  let deepest = 0;
  for (const char of text ?? '') {
    if (char === '(' || char === '[' || char === '{') deepest = Math.max(deepest, ++open);
    else if (char === ')' || char === ']' || char === '}') open = Math.max(open - 1, 0);
  }
  if (text === undefined || deepest > MAX_PATTERN_NESTING)
    throw new SqlRefused(
      `${what} takes a constant pattern nesting at most ${MAX_PATTERN_NESTING} groups here: in embedded mode (which cannot stop a running query) a pattern's work must be bounded before it runs`,
    );
}

/** Regular expression functions: the position of their pattern argument. */
const PATTERN_ARGUMENT: Record<string, number> = {
  regexp_replace: 1,
  regexp_match: 1,
  regexp_matches: 1,
  regexp_split_to_array: 1,
  regexp_like: 1,
  regexp_count: 1,
  regexp_substr: 1,
  substring: 1, // substring(text FROM pattern) and substring(text, pattern): a POSIX pattern
};

// The largest number generate_series takes in embedded mode: rows past what any query can
// read, yet exact in a double (the planner's estimate stays right).
const MAX_SERIES_BOUND = 1e15;

/**
 * generate_series never ends when a bound is infinite ('infinity', a float's Infinity), which no
 * cost estimate shows; in embedded mode its bounds are also numbers the planner can count
 * (a series of dates or times is estimated at 1,000 rows whatever its bounds).
 */
function checkSeries(args: unknown[], embedded: boolean): void {
  const infinite = args.some((arg) => /^\s*[+-]?(infinity|inf|nan)\s*$/i.test(constantText(arg) ?? ''));
  if (infinite) throw new SqlRefused('generate_series takes finite bounds (a series to infinity never ends)');
  if (!embedded) return;
  if (!args.every((arg) => (constantNumber(arg) ?? Infinity) <= MAX_SERIES_BOUND))
    throw new SqlRefused(
      `generate_series takes numbers of at most ${MAX_SERIES_BOUND} here (a series of dates: date '2024-01-01' + generate_series(0, 365)): ${SIZED_BY_CONSTANTS}`,
    );
}

/**
 * The types a query may name (a cast, a typed literal, a JSON_TABLE column): the values of
 * datasets and what computing on them needs. Not the catalogs' (regclass, regrole: a name
 * looked up in the catalogs), nor types whose input is itself a language (xml, tsquery,
 * tsvector; jsonpath in embedded mode, see JSON_PATHS).
 */
const TYPES = new Set(
  (
    'bool boolean int2 int4 int8 smallint int integer bigint numeric decimal float4 float8 real float ' +
    'text varchar bpchar char character date time timetz timestamp timestamptz interval json jsonb uuid bytea inet cidr'
  ).split(' '),
);

function checkType(type: Node, rules: Rules): void {
  const parts = names(type.names);
  const name = parts.at(-1)!;
  const allowed =
    (parts.length === 1 || (parts.length === 2 && parts[0] === 'pg_catalog')) &&
    (TYPES.has(name) || (!rules.embedded && name === 'jsonpath'));
  if (!allowed)
    throw new SqlRefused(
      `the type ${parts.filter((part) => part !== 'pg_catalog').join('.')} may not be named here (the types of values: numbers, text, dates and times, boolean, JSON, uuid, bytea, inet)`,
    );
}

function checkFunction(call: Node, rules: Rules): void {
  const parts = names(call.funcname);
  const name = parts.at(-1)!;
  if ((parts.length > 1 && (parts.length > 2 || parts[0] !== 'pg_catalog')) || !FUNCTIONS.has(name)) {
    throw new SqlRefused(`the function ${parts.join('.')} may not be called here (functions that compute on values only)`);
  }
  const args = Array.isArray(call.args) ? call.args : [];
  if (name === 'generate_series') checkSeries(args, rules.embedded);
  if (!rules.embedded) return;
  // substring(text, start[, count]) takes positions; substring(text, pattern) a pattern.
  const positions =
    name === 'substring' && (constantNumber(args[1]) !== undefined || (args.length === 3 && constantText(args[1]) === undefined));
  if (PATTERN_ARGUMENT[name] !== undefined && !positions) checkPattern(args[PATTERN_ARGUMENT[name]], name);
  if (SIZED_SETS.has(name) && !args.every((arg) => constant(arg))) {
    throw new SqlRefused(`${name} takes constant arguments here: ${SIZED_BY_CONSTANTS}`);
  }
  if (JSON_SETS.has(name) && !(args.length === 1 && (constantText(args[0])?.length ?? Infinity) <= JSON_SET_CHARS)) {
    throw new SqlRefused(
      `${name} takes a constant of at most ${JSON_SET_CHARS} characters here (the planner takes it to yield 100 rows whatever it is given): ${SIZED_BY_CONSTANTS}`,
    );
  }
  if (JSON_PATHS.has(name))
    throw new SqlRefused(`${name} may not be called here (a path's work is not seen by the planner): ${SIZED_BY_CONSTANTS}`);
  if (name === 'regexp_matches') {
    // Without the flag g it yields one row at most, as the planner takes it to.
    const flags = args.length > 2 ? constantText(args[2]) : '';
    if (flags === undefined || flags.includes('g'))
      throw new SqlRefused(
        `regexp_matches takes constant flags without g here (regexp_match yields the first match): ${SIZED_BY_CONSTANTS}`,
      );
  }
  if (name === 'lpad' || name === 'rpad' || name === 'repeat') {
    const count = constantNumber(args[1]);
    const text = name === 'repeat' ? constantText(args[0]) : '';
    const chars = name === 'repeat' ? (text?.length ?? Number.NaN) * (count ?? Number.NaN) : count;
    if (chars === undefined || !(chars <= MAX_BUILT_CHARS)) {
      throw new SqlRefused(
        `${name} takes ${name === 'repeat' ? 'a constant text and count' : 'a constant length'} making at most ${MAX_BUILT_CHARS} characters here: ${SIZED_BY_CONSTANTS}`,
      );
    }
  }
  if (name === 'format') {
    const spec = constantText(args[0]);
    if (spec === undefined || !formatWidthsBounded(spec)) {
      throw new SqlRefused(`format takes a constant format with written widths of at most ${MAX_BUILT_CHARS} here: ${SIZED_BY_CONSTANTS}`);
    }
  }
  if (name === 'replace') {
    // A replacement no longer than what it replaces makes the text no longer: nested calls cannot multiply it.
    const from = constantText(args[1]);
    const to = constantText(args[2]);
    if (from === undefined || to === undefined || to.length > Math.max(from.length, 1)) {
      throw new SqlRefused(`replace takes a constant replacement no longer than the constant it replaces here: ${SIZED_BY_CONSTANTS}`);
    }
  }
  if (name === 'regexp_replace') {
    // A pattern may match at every character, and \& copies a match: a written replacement
    // without back-references replacing one match adds at most its length; every match
    // (flag g, or N = 0) may be replaced only by nothing.
    const to = constantText(args[2]);
    const flags =
      args.length === 4 && constantNumber(args[3]) === undefined ? constantText(args[3]) : args.length === 6 ? constantText(args[5]) : '';
    const nth = args.length >= 5 ? constantNumber(args[4]) : 1;
    const every = flags === undefined || flags.includes('g') || nth === undefined || nth === 0;
    if (to === undefined || to.includes('\\') || (to !== '' && every)) {
      throw new SqlRefused(
        `regexp_replace takes a constant replacement without back-references here, and replaces every match only by '': ${SIZED_BY_CONSTANTS}`,
      );
    }
  }
}

/** Only operators of pg_catalog, wherever one is written (A_Expr of every kind, ORDER BY ... USING, x op ANY (subquery)). */
function checkOperatorName(name: unknown, rules: Rules): void {
  const operator = names(name);
  if (operator.length > 1 && (operator.length > 2 || operator[0] !== 'pg_catalog')) {
    throw new SqlRefused(`the operator ${operator.join('.')} may not be used here (operators of pg_catalog only)`);
  }
  // @? and @@ run a JSON path (see JSON_PATHS).
  if (rules.embedded && ['@?', '@@'].includes(operator.at(-1)!))
    throw new SqlRefused(`the operator ${operator.at(-1)} may not be used here: ${SIZED_BY_CONSTANTS}`);
}

/** The regular expression operators: their right side is a pattern. */
const REGEX_OPERATORS = new Set(['~', '~*', '!~', '!~*']);

function checkOperator(expr: Node, rules: Rules): void {
  checkOperatorName(expr.name, rules);
  if (!rules.embedded) return;
  const operator = names(expr.name).at(-1)!;
  if ((expr.kind === 'AEXPR_OP' && REGEX_OPERATORS.has(operator)) || expr.kind === 'AEXPR_SIMILAR') {
    // SIMILAR TO's pattern is wrapped in a call of similar_to_escape.
    const call = (expr.rexpr as { FuncCall?: Node } | undefined)?.FuncCall;
    checkPattern(
      call ? (call.args as unknown[] | undefined)?.[0] : expr.rexpr,
      operator === '~' ? 'the operator ~' : `the operator ${operator}`,
    );
  }
}

/** The A_Expr kinds PostgreSQL turns into several comparisons, each with its own copy of an operand. */
const DUPLICATING = new Set(['AEXPR_BETWEEN', 'AEXPR_NOT_BETWEEN', 'AEXPR_BETWEEN_SYM', 'AEXPR_NOT_BETWEEN_SYM', 'AEXPR_IN']);

const containsDuplicating = (node: unknown): boolean =>
  node !== null &&
  typeof node === 'object' &&
  Object.entries(node as Node).some(
    ([key, value]) => (key === 'A_Expr' && DUPLICATING.has(String((value as Node).kind))) || containsDuplicating(value),
  );

/**
 * `x BETWEEN a AND b` is analysed as `x >= a AND x <= b` with a copy of x (SYMMETRIC: four
 * copies of x, two of a and b), `x IN (c1, c2)` as a comparison per column: nested in one
 * another they multiply, 4^n copies to analyse and plan (8 levels of BETWEEN SYMMETRIC held a
 * PostgreSQL backend past a 20 s statement_timeout). A copied operand may hold none of them.
 */
function checkDuplicated(expr: Node): void {
  const kind = String(expr.kind);
  if (!DUPLICATING.has(kind)) return;
  const copied = kind.endsWith('_SYM') ? [expr.lexpr, expr.rexpr] : [expr.lexpr];
  if (copied.some(containsDuplicating)) {
    throw new SqlRefused(
      'BETWEEN and IN (list) may not be nested in the value they compare (PostgreSQL copies it for each comparison): compare it in a subquery or with >= and <=',
    );
  }
}

/** Checks a table reference; answers how deep it nests: a WITH query's body's depth, else 0. */
function checkRelation(range: Node, scope: Scope, rules: Rules): number {
  const table = String(range.relname);
  const qualified = range.schemaname !== undefined || range.catalogname !== undefined;
  // An unqualified name is a WITH query's when one is in scope (PostgreSQL looks there
  // first), else a table; a qualified name is always a table.
  const cte = qualified ? undefined : scope.ctes.find((visible) => visible.has(table))?.get(table);
  if (cte !== undefined) return cte;
  if (
    qualified
      ? range.catalogname === undefined && range.schemaname === rules.schema && rules.datasets.has(table)
      : rules.datasets.has(table)
  )
    return 0;
  const shown = [range.catalogname, range.schemaname, table].filter((part): part is string => typeof part === 'string').join('.');
  throw new SqlRefused(`"${shown}" is not a dataset: a query reads the tables of schema ${rules.schema} only`);
}

/**
 * Functions of pg_catalog (PostgreSQL 15, PGlite's 17) off the list that take any row (record, "any", anyelement): what
 * `t.f` of a table, subquery or join could call when t has no column f.
 */
const ROW_FUNCTIONS = new Set(
  'pg_typeof pg_column_size pg_column_compression pg_column_toast_chunk_id pg_collation_for hash_record hash_record_extended record_out record_send quote_nullable any_out anyelement_out anynonarray_out anycompatible_out anycompatiblenonarray_out any_value json_agg_strict jsonb_agg_strict pg_restore_relation_stats pg_restore_attribute_stats'.split(
    ' ',
  ),
);

const FIELD_AS_CALL = 'PostgreSQL reads a field it cannot find as a call of the function of that name';

/**
 * `a.b` is the column b of the table or alias a when a is one where the reference stands;
 * otherwise PostgreSQL takes a as a column and b as a field of it, or, finding none, as the
 * call b(a) of any function (`t.n.pg_advisory_lock`). So the first name must be a table or
 * alias in scope, and a field of a value, `(x).b`, is never selected.
 */
function checkColumn(ref: Node, scope: Scope): void {
  const fields = Array.isArray(ref.fields) ? (ref.fields as Node[]) : [];
  const named = names(fields.filter((field) => 'String' in field));
  if (named.length <= 1) return;
  const shown = named.join('.');
  if (named.length > 2) throw new SqlRefused(`"${shown}" may not be written here: name a column as table.column (${FIELD_AS_CALL})`);
  const [relation, column] = named as [string, string];
  const columns = scope.relations.find((visible) => visible.has(relation))?.get(relation);
  if (columns === undefined)
    throw new SqlRefused(`"${shown}": ${relation} is no table or alias of the FROM clause here (${FIELD_AS_CALL})`);
  if (columns === 'row' && ROW_FUNCTIONS.has(column))
    throw new SqlRefused(
      `"${shown}": ${column} is a function, not a column (${FIELD_AS_CALL}): name the column apart with AS in a subquery`,
    );
  if (columns !== 'row' && !columns.has(column))
    throw new SqlRefused(`"${shown}": ${relation} is a function's result, whose columns are ${[...columns].join(', ')} (${FIELD_AS_CALL})`);
}

/** The columns of the allowed set-returning functions that yield more than their own name's. */
const FUNCTION_COLUMNS = new Map<string, string[]>([
  ...['json_each', 'jsonb_each', 'json_each_text', 'jsonb_each_text'].map((name): [string, string[]] => [name, ['key', 'value']]),
  ...['json_array_elements', 'jsonb_array_elements', 'json_array_elements_text', 'jsonb_array_elements_text'].map(
    (name): [string, string[]] => [name, ['value']],
  ),
]);

/** What a FROM item brings into scope: its alias (else its table's or function's name) and what it may be read for. */
function fromNames(item: Node): Relations {
  const [kind, body] = Object.entries(item)[0] ?? [];
  const b = body as Node | undefined;
  const alias = b?.alias as { aliasname?: string; colnames?: unknown } | undefined;
  if (kind === 'RangeFunction') {
    const calls = ((b!.functions as { List?: { items?: unknown[] } }[] | undefined) ?? []).map(
      (f) => (f.List?.items?.[0] as { FuncCall?: Node } | undefined)?.FuncCall,
    );
    // CAST(…), COALESCE(…), CURRENT_USER… in FROM are items too, named by PostgreSQL after
    // their syntax ("float8", "coalesce"), their value no row: unnamed here, an outer alias of
    // that name would stand for them. Only calls of functions are read from.
    if (calls.some((call) => call === undefined))
      throw new SqlRefused('only calls of functions may be read from in FROM (a CAST, COALESCE or CURRENT_USER there: select it instead)');
    const functionNames = calls.map((call) => names(call!.funcname).at(-1)!);
    // Without an alias the item is named after its (first) function; without column names a
    // single function's one column is named as its alias (or itself).
    const name = alias?.aliasname ?? functionNames[0];
    if (name === undefined) return new Map();
    const columns = alias?.colnames
      ? names(alias.colnames)
      : functionNames.flatMap((f, i) => {
          // unnest of several arrays yields a column named unnest for each.
          const several = f === 'unnest' && ((calls[i]!.args as unknown[] | undefined)?.length ?? 0) > 1;
          return FUNCTION_COLUMNS.get(f) ?? [calls.length === 1 && !several ? name : f];
        });
    if (b!.ordinality === true) columns.push('ordinality');
    return new Map([[name, new Set(columns)]]);
  }
  // Every item PostgreSQL names: a name it has that the guard did not know would let an outer
  // alias of that name stand for it.
  const sampled = (b?.relation as { RangeVar?: Node } | undefined)?.RangeVar;
  const name =
    alias?.aliasname ??
    (kind === 'RangeVar'
      ? String(b!.relname)
      : kind === 'RangeTableSample' && sampled
        ? ((sampled.alias as { aliasname?: string } | undefined)?.aliasname ?? String(sampled.relname))
        : kind === 'JsonTable'
          ? 'json_table'
          : undefined);
  return new Map(name === undefined ? [] : [[name, 'row']]);
}

/**
 * Checks a FROM item; answers the names it brings into scope and how deep it nests. `outer` is
 * what the enclosing queries see; `preceding` the names of the items before it in the same
 * FROM, which only a LATERAL item sees (a function or JSON_TABLE is always one). A JOIN's
 * condition sees its two sides.
 */
function visitFrom(item: Node, outer: Scope, preceding: Relations, rules: Rules, depth: number): [Relations, number] {
  const join = item.JoinExpr as Node | undefined;
  if (join) {
    const [left, leftDepth] = visitFrom(join.larg as Node, outer, preceding, rules, depth + 1);
    const [right, rightDepth] = visitFrom(join.rarg as Node, outer, new Map([...preceding, ...left]), rules, depth + 1);
    const both = new Map<string, 'row' | ReadonlySet<string>>([...left, ...right]);
    const inner: Scope = { ...outer, relations: [both, ...outer.relations] };
    const quals = visit(join.quals, inner, rules, depth + 1);
    const alias = (join.alias as { aliasname?: string } | undefined)?.aliasname;
    // JOIN … USING (…) AS j names the joined columns j, besides the two sides.
    const usingAlias = (join.join_using_alias as { aliasname?: string } | undefined)?.aliasname;
    if (usingAlias !== undefined) both.set(usingAlias, 'row');
    return [alias === undefined ? both : new Map([[alias, 'row']]), Math.max(leftDepth, rightDepth, quals)];
  }
  const [kind, body] = Object.entries(item)[0] ?? [];
  const lateral = kind === 'JsonTable' || kind === 'RangeFunction' || (body as Node | undefined)?.lateral === true;
  const scope: Scope = lateral ? { ...outer, relations: [preceding, ...outer.relations] } : outer;
  return [fromNames(item), visit(item, scope, rules, depth)];
}

/**
 * A SELECT (or one side of a set operation): its WITH queries, each seeing the names PostgreSQL
 * lets it see, then its FROM, then the rest of it seeing them all. Answers how deep it nests.
 */
function visitSelect(select: Node, outer: Scope, rules: Rules, depth: number): number {
  const withClause = select.withClause as { ctes?: { CommonTableExpr: Node }[]; recursive?: boolean } | undefined;
  let scope = outer;
  let reached = depth;
  if (withClause) {
    if (withClause.recursive && rules.embedded) throw new SqlRefused(`WITH RECURSIVE may not be used here: ${SIZED_BY_CONSTANTS}`);
    const ctes = (withClause.ctes ?? []).map((cte) => cte.CommonTableExpr);
    // Inlined at every reference, n of them each reading the one before twice make a query of
    // 2^n relations to plan (planning is not stopped by statement_timeout). Without the
    // keywords, one read more than once is computed once; one read once is inlined, which
    // copies nothing.
    if (ctes.some((cte) => cte.ctematerialized === 'CTEMaterializeNever')) {
      throw new SqlRefused('WITH ... AS NOT MATERIALIZED may not be used here: inlined at every reference, it can multiply the query');
    }
    // Without RECURSIVE a WITH query sees only the ones before it, not itself: inside its own
    // body its name is a table's. With RECURSIVE every one sees all of them (a reference to
    // itself is iterated, not nested: it counts as 0).
    const depths = new Map<string, number>(withClause.recursive ? ctes.map((cte) => [String(cte.ctename), 0]) : []);
    for (const cte of ctes) {
      const body = visit(cte, { ...outer, ctes: [new Map(depths), ...outer.ctes] }, rules, depth + 1);
      depths.set(String(cte.ctename), body - depth);
      reached = Math.max(reached, body);
    }
    scope = { ...outer, ctes: [depths, ...outer.ctes] };
  }
  const relations = new Map<string, 'row' | ReadonlySet<string>>();
  for (const item of (select.fromClause as Node[] | undefined) ?? []) {
    const [named, from] = visitFrom(item, scope, relations, rules, depth + 1);
    for (const [name, columns] of named) relations.set(name, columns);
    reached = Math.max(reached, from);
  }
  const inner: Scope = { ...scope, relations: [relations, ...scope.relations] };
  for (const [key, value] of Object.entries(select))
    if (key !== 'withClause' && key !== 'fromClause') reached = Math.max(reached, visit({ [key]: value }, inner, rules, depth));
  return reached;
}

/** Checks every node under `node`, by the key it is found under (libpg-query's node names); answers how deep it nests. */
function visit(node: unknown, scope: Scope, rules: Rules, depth: number): number {
  if (depth > MAX_DEPTH)
    throw new SqlRefused(`the query nests deeper than ${MAX_DEPTH} levels (of operators, calls, subqueries, WITH queries): flatten it`);
  let reached = depth;
  if (Array.isArray(node)) {
    for (const item of node) reached = Math.max(reached, visit(item, scope, rules, depth + 1));
    return reached;
  }
  if (node === null || typeof node !== 'object') return reached;
  for (const [key, value] of Object.entries(node as Node)) {
    if (value === null || typeof value !== 'object') continue;
    const refused = REFUSED[key] ?? (rules.embedded ? REFUSED_EMBEDDED[key] : undefined);
    if (refused) throw new SqlRefused(refused);
    // larg and rarg: the sides of a UNION, INTERSECT or EXCEPT (each may have its own WITH); a JOIN's are visited in visitFrom.
    if (key === 'SelectStmt' || key === 'larg' || key === 'rarg') {
      reached = Math.max(reached, visitSelect(value as Node, scope, rules, depth + 1));
      continue;
    }
    if (key === 'RangeVar') {
      const cte = checkRelation(value as Node, scope, rules);
      if (depth + cte > MAX_DEPTH)
        throw new SqlRefused(`the query nests deeper than ${MAX_DEPTH} levels (of operators, calls, subqueries, WITH queries): flatten it`);
      reached = Math.max(reached, depth + cte);
    } else if (key === 'FuncCall') checkFunction(value as Node, rules);
    else if (key === 'A_Expr') {
      checkOperator(value as Node, rules);
      checkDuplicated(value as Node);
    } else if (key === 'SortBy') checkOperatorName((value as Node).useOp, rules);
    else if (key === 'SubLink') checkOperatorName((value as Node).operName, rules);
    else if (key === 'ColumnRef') checkColumn(value as Node, scope);
    else if (key === 'A_Indirection' && ((value as Node).indirection as Node[] | undefined)?.some((part) => 'String' in part))
      throw new SqlRefused(`a field of a value, (x).name, may not be selected here (${FIELD_AS_CALL})`);
    else if (key === 'TypeName' || key === 'typeName') checkType(value as Node, rules);
    reached = Math.max(reached, visit(value, scope, rules, depth + 1));
  }
  return reached;
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
    // Reading the parser's tree of a very deep query can overflow the JS stack too.
    if (err instanceof RangeError) throw new SqlRefused('the query nests too deeply: flatten it');
    throw new SqlRefused(`the query is not valid SQL: ${(err as Error).message}`);
  }
  const statements = tree.stmts ?? [];
  if (statements.length !== 1) throw new SqlRefused(statements.length === 0 ? 'the query is empty' : 'send one statement at a time');
  const top = statements[0]!.stmt;
  if (!('SelectStmt' in top)) throw new SqlRefused(`only SELECT queries run here (got ${Object.keys(top)[0]})`);
  try {
    visit(top, { ctes: [], relations: [] }, { schema, datasets, embedded }, 0);
  } catch (err) {
    // MAX_DEPTH keeps the walk far from the stack's end; should it be reached all the same, it is the query's size.
    if (err instanceof RangeError) throw new SqlRefused(`the query nests too deeply: flatten it`);
    throw err;
  }
}
