/**
 * A job's records made into rows of its stage table, with every value checked or counted as it
 * passes: one column per field of the input (named by the rule in names.ts, keeping the name
 * as written), each value staged as text (a CSV cell as written, a JSON value as its JSON text,
 * missing as NULL). A column with a type it must hold (declared by the submit, or the dataset's
 * own) has each value checked, and a value that does not fit makes its record a row error; any
 * other column's type is inferred over every value. What the loader has learnt is its state,
 * committed with each batch, so a resumed run goes on from it.
 */
import { isTabular, type Format } from '../core/job.js';
import { IngestError } from '../core/errors.js';
import { rowError, type ParsedRecord, type RowProblem } from '../formats/record.js';
import { topLevelFields } from './json-fields.js';
import { uniqueColumnName } from './names.js';
import { withLayout } from './column-spec.js';
import { localeHints } from './value-forms.js';
import {
  jsonFits,
  jsonStorable,
  NULL_MARKERS,
  TypeTally,
  type ColumnSpec,
  type ColumnType,
  type Reading,
  type TallyHints,
  type TallyState,
} from './types.js';

export interface LoadColumn {
  /** The dataset column's name. */
  name: string;
  /** The field's name as the input wrote it. */
  original: string;
  /** The type every value must fit (declared, or the dataset's), or null when it is inferred. */
  target: ColumnType | null;
  /** The narrowest type holding every value seen so far (null: none yet). */
  seen: ColumnType | null;
  /** How the column's text is read into its type (absent: as PostgreSQL reads it). */
  reading?: Reading;
  /** What a CSV column's values have shown so far (absent in a state written before readings). */
  tally?: TallyState;
}

/** A column as the loader has typed it so far, with the evidence (shown by a preview). */
export interface ColumnGuess {
  name: string;
  original: string;
  type: ColumnType;
  reading?: Reading;
  /** Why the type is what it is, e.g. "day > 12 on line 40", "text: \"n/a x\" on line 7". */
  evidence: string[];
}

export interface LoadState {
  columns: LoadColumn[];
}

/**
 * PostgreSQL's limit is 1600 columns a table; the dataset tables have three of their own
 * (`_intake_id`, `_intake_job_id`, `_intake_record_no`).
 */
export const MAX_DATASET_COLUMNS = 1597;

/** The stage table's column for the loader's column `index`. */
export const stageColumn = (index: number) => `c${index}`;

/** What the loader needs to know of the job. */
export interface LoaderOptions {
  format: Format;
  /** Types the values of a column must fit, by column name or by the name as written; `*`: any other column. */
  targets: ReadonlyMap<string, ColumnSpec>;
  /** Key columns of a merge (names or names as written): each record must have a value for each. */
  key: readonly string[];
  /** A locale hint (`de-DE`) that settles columns the values leave ambiguous. */
  locale?: string;
  /** The order of a date's day and month where the values leave it open. */
  dateOrder?: 'DMY' | 'MDY';
  /** Values that mean NULL in a typed column (default: NA, N/A, null, NULL, -, and empty). */
  nullValues?: readonly string[];
}

/** What settles what a column's values leave open. */
function tallyHints(options: LoaderOptions): TallyHints {
  const locale = localeHints(options.locale);
  const order = options.dateOrder ?? locale.order;
  return {
    ...(locale.decimal !== undefined && { decimal: locale.decimal }),
    ...(order !== undefined && { order, orderGiven: options.dateOrder !== undefined }),
    nulls: new Set(options.nullValues ?? NULL_MARKERS),
  };
}

// Characters COPY's text format needs escaped.
const COPY_SPECIAL = /[\\\n\r\t]/;
const escapeCopy = (s: string) =>
  COPY_SPECIAL.test(s) ? s.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t')) : s;

// JSON.stringify writes a surrogate as a \uD800–\uDFFF escape only when it is unpaired
// (pairs stay characters); an escape is one preceded by an even number of backslashes.
const LONE_SURROGATE = /(?:^|[^\\])(?:\\\\)*\\ud[89a-f][0-9a-f]{2}/i;

export class Loader {
  readonly columns: LoadColumn[];
  private readonly tallies: TypeTally[];
  private readonly byOriginal = new Map<string, number>();
  private readonly used = new Set<string>();
  private readonly keyColumns = new Set<number>();
  private readonly keyNames: readonly string[];
  private readonly hints: TallyHints;

  constructor(
    private readonly options: LoaderOptions,
    state: LoadState | null,
  ) {
    this.hints = tallyHints(options);
    this.columns = state?.columns.map((c) => ({ ...c })) ?? [];
    this.tallies = this.columns.map((c) => this.tallyFor(c.name, c.original, c.seen, c.tally));
    this.columns.forEach((c, i) => {
      this.byOriginal.set(c.original, i);
      this.used.add(c.name);
    });
    this.keyNames = options.key;
    for (const k of options.key) {
      const i = this.columns.findIndex((c) => c.name === k || c.original === k);
      if (i >= 0) this.keyColumns.add(i);
    }
  }

  /** The target of a column, by its name or its name as written, or `*`. */
  private targetOf(name: string, original: string): ColumnSpec | undefined {
    const targets = this.options.targets;
    return targets.get(name) ?? targets.get(original) ?? targets.get('*');
  }

  private tallyFor(name: string, original: string, seen: ColumnType | null, state?: TallyState): TypeTally {
    const target = this.targetOf(name, original);
    return new TypeTally(seen, state, this.hints, target && withLayout(target));
  }

  /** The columns as typed so far, how each is read, and why. */
  describe(): ColumnGuess[] {
    return this.columns.map((c, i) => {
      if (!isTabular(this.options.format))
        return { name: c.name, original: c.original, type: c.target ?? this.tallies[i]!.type ?? 'text', evidence: [] };
      const { type, reading, evidence } = this.tallies[i]!.resolve();
      return { name: c.name, original: c.original, type: c.target ?? type ?? 'text', ...(reading && { reading }), evidence };
    });
  }

  state(): LoadState {
    const tabular = isTabular(this.options.format);
    this.columns.forEach((c, i) => {
      const tally = this.tallies[i]!;
      if (!tabular) {
        c.seen = tally.type;
        return;
      }
      const { type, reading } = tally.resolve();
      c.seen = c.target === null ? type : null;
      if (reading) c.reading = reading;
      else delete c.reading;
      c.tally = tally.state();
    });
    return { columns: this.columns };
  }

  /**
   * A tabular input's header, in the file's order (from its first record, good or bad: a
   * row error carries it too); nothing when the columns are known already.
   */
  header(names: readonly string[]): void {
    if (this.columns.length > 0) return;
    if (names.length > MAX_DATASET_COLUMNS) {
      throw new IngestError(`the header has ${names.length} columns, and a dataset holds at most ${MAX_DATASET_COLUMNS}`);
    }
    for (const name of names) this.addColumn(name);
  }

  /** The key columns given that no column of the input has (CSV: known from its header). */
  missingKeys(): string[] {
    return this.keyNames.filter((k) => !this.columns.some((c) => c.name === k || c.original === k));
  }

  private addColumn(original: string): number | undefined {
    if (this.columns.length >= MAX_DATASET_COLUMNS) return undefined;
    const index = this.columns.length;
    const name = uniqueColumnName(original, index, this.used);
    const target = this.targetOf(name, original)?.type ?? null;
    this.columns.push({ name, original, target, seen: null });
    this.tallies.push(this.tallyFor(name, original, null));
    this.byOriginal.set(original, index);
    if (this.keyNames.includes(name) || this.keyNames.includes(original)) this.keyColumns.add(index);
    return index;
  }

  /**
   * The record as a stage row (COPY text, without the line break, its first field the record
   * number) and how many columns it fills, or the row error that keeps it out.
   */
  row(record: Extract<ParsedRecord, { data: object }>, recordNo: number): { text: string; width: number } | RowProblem {
    return isTabular(this.options.format) ? this.csvRow(record, recordNo) : this.jsonRow(record, recordNo);
  }

  private csvRow(record: Extract<ParsedRecord, { data: object }>, recordNo: number): { text: string; width: number } | RowProblem {
    // The columns and values in the file's order: never an object's keys, which list
    // integer-like names first (the values of `a,2,b` would go to `2,a,b`).
    const { columns, values } = record;
    if (columns === undefined || values === undefined) throw new Error('a tabular record comes with its columns and values');
    this.header(columns);
    const excerpt = () => record.text ?? values.join(',');
    // Checked first, counted after: a record kept out leaves no trace in the inferred types.
    for (let i = 0; i < values.length; i++) {
      const value = values[i]!;
      const column = this.columns[i]!;
      if (value === '') {
        if (this.keyColumns.has(i)) return this.noKey(record, recordNo, column.name, excerpt(), true);
      } else if (column.target !== null) {
        const problem = this.tallies[i]!.check(value);
        if (problem !== null) return this.misfit(record, recordNo, column, value, excerpt(), true, problem);
      }
    }
    // One test of the whole row for what COPY's text format must escape: most rows have none,
    // and then no value needs a look of its own. (A NUL never gets here: the decoder refuses it.)
    const special = COPY_SPECIAL.test(values.join(''));
    const quotedEmpty = record.emptyQuoted;
    let text = String(recordNo);
    for (let i = 0; i < values.length; i++) {
      const value = values[i]!;
      if (value === '') {
        // As COPY reads a CSV: a field written "" is an empty string (a text column keeps it), an
        // empty field is NULL. A typed column's cast makes both NULL.
        text += quotedEmpty !== undefined && quotedEmpty.includes(i) ? '\t' : '\t\\N';
        continue;
      }
      if (this.columns[i]!.target === null) this.tallies[i]!.text(value, record.line);
      else this.tallies[i]!.commit(record.line);
      text += `\t${special ? escapeCopy(value) : value}`;
    }
    return { text, width: values.length };
  }

  /**
   * A CSV record checked and counted as `row` does, without its stage row: for the fast path,
   * where COPY reads the file itself. The row error that keeps it out, or null.
   */
  tally(record: Extract<ParsedRecord, { data: object }>, recordNo: number): RowProblem | null {
    const { columns, values } = record;
    if (columns === undefined || values === undefined) throw new Error('a tabular record comes with its columns and values');
    this.header(columns);
    for (let i = 0; i < values.length; i++) {
      const value = values[i]!;
      if (value === '') {
        if (this.keyColumns.has(i)) return this.noKey(record, recordNo, this.columns[i]!.name, record.text ?? values.join(','), true);
      } else if (this.columns[i]!.target !== null) {
        const problem = this.tallies[i]!.check(value);
        if (problem !== null) return this.misfit(record, recordNo, this.columns[i]!, value, record.text ?? values.join(','), true, problem);
      }
    }
    for (let i = 0; i < values.length; i++) {
      const value = values[i]!;
      if (value === '') continue;
      if (this.columns[i]!.target === null) this.tallies[i]!.text(value, record.line);
      else this.tallies[i]!.commit(record.line);
    }
    return null;
  }

  private jsonRow(record: Extract<ParsedRecord, { data: object }>, recordNo: number): { text: string; width: number } | RowProblem {
    const raw = record.raw ?? JSON.stringify(record.data);
    if ((raw.includes('\\ud') || raw.includes('\\uD')) && LONE_SURROGATE.test(JSON.stringify(record.data))) {
      return rowError(
        record.line,
        `record ${recordNo} (line ${record.line}) contains an unpaired UTF-16 surrogate, which PostgreSQL cannot store`,
        raw,
      );
    }
    const staged: (string | undefined)[] = [];
    for (const [key, value] of topLevelFields(raw)) {
      let i = this.byOriginal.get(key);
      if (i === undefined) {
        i = this.addColumn(key);
        if (i === undefined) {
          return rowError(
            record.line,
            `record ${recordNo} (line ${record.line}) would make the dataset wider than ${MAX_DATASET_COLUMNS} columns`,
            raw,
          );
        }
      }
      const column = this.columns[i]!;
      if (value === 'null') continue;
      if (column.target !== null ? !jsonFits(value, column.target) : !jsonStorable(value))
        return this.misfit(record, recordNo, column, value, raw);
      staged[i] = value;
    }
    for (const k of this.keyNames) {
      const i = this.columns.findIndex((c) => c.name === k || c.original === k);
      const value = i < 0 ? undefined : staged[i];
      if (value === undefined || value === '""') return this.noKey(record, recordNo, this.columns[i]?.name ?? k, raw);
    }
    let text = String(recordNo);
    for (let i = 0; i < this.columns.length; i++) {
      const value = staged[i];
      if (value === undefined) text += '\t\\N';
      else {
        if (this.columns[i]!.target === null) this.tallies[i]!.json(value);
        text += `\t${escapeCopy(value)}`;
      }
    }
    return { text, width: this.columns.length };
  }

  private misfit(
    record: ParsedRecord,
    recordNo: number,
    column: LoadColumn,
    value: string,
    excerpt: string,
    asWritten = false,
    problem?: string,
  ): RowProblem {
    const shown = JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
    const why =
      problem !== undefined
        ? `column "${column.name}" ${problem}`
        : column.target === null
          ? `column "${column.name}" cannot hold ${shown}: PostgreSQL's numbers hold at most 131072 digits before the point and 16383 after it`
          : `column "${column.name}" is ${column.target} and cannot hold ${shown}`;
    return rowError(record.line, `record ${recordNo} (line ${record.line}): ${why}`, excerpt, asWritten);
  }

  private noKey(record: ParsedRecord, recordNo: number, column: string, excerpt: string, asWritten = false): RowProblem {
    return rowError(
      record.line,
      `record ${recordNo} (line ${record.line}) has no value for the key column "${column}"`,
      excerpt,
      asWritten,
    );
  }
}
