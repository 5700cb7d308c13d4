import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse as csvParseSync } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../src/formats/limits.js';
import { headerKeys, parseCsv, type CsvDialect, type CsvReport } from '../src/formats/csv.js';
import { sniffCsv } from '../src/formats/sniff.js';
import { decodeText, decodeUtf8, type Encoding } from '../src/formats/decode.js';
import { IngestError } from '../src/core/errors.js';
import { parseJson } from '../src/formats/json.js';
import { parseNdjson } from '../src/formats/ndjson.js';
import { readRecords, type Input } from '../src/formats/parse.js';
import { hasNulEscape, type ParsedRecord } from '../src/formats/record.js';
import { xlsxOf } from './files.js';
import { random, type Random } from './random.js';

/** A local file as an input. */
const fileInput = (path: string): Input => ({
  path,
  open: async () => createReadStream(path, { highWaterMark: 256 * 1024 }),
  scratchDir: dirname(path),
});

// ---------------------------------------------------------------------------------------------
// Helpers: every input is fed in many chunkings, and all of them must give the same outcome.

type Parser = (text: AsyncIterable<string>) => AsyncGenerator<ParsedRecord>;

interface Outcome {
  records: ParsedRecord[];
  /** The message of the IngestError that ended the parse, if one did. */
  error?: string;
}

async function* feed<T>(chunks: T[]): AsyncGenerator<T> {
  for (const chunk of chunks) yield chunk;
}

function sized<T extends { length: number; slice(a: number, b?: number): T }>(text: T, size: number): T[] {
  const chunks: T[] = [];
  for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
  return chunks;
}

/**
 * The chunkings of one input: fixed sizes (1, 2, 3, 7 and whole), a split in two at every
 * position, and 1-char chunks with empty chunks in between.
 */
function chunkings<T extends { length: number; slice(a: number, b?: number): T }>(text: T, empty: T): [string, T[]][] {
  const out: [string, T[]][] = [];
  for (const size of [1, 2, 3, 7]) out.push([`${size}-char chunks`, sized(text, size)]);
  out.push(['whole', [text]]);
  for (let p = 1; p < text.length; p++) out.push([`split at ${p}`, [text.slice(0, p), text.slice(p)]]);
  out.push(['1-char chunks with empty ones', [empty, ...sized(text, 1).flatMap((c) => [c, empty])]]);
  return out;
}

/** A record as plain data: without its text as written (once that text is checked to hold the same data). */
function withoutRaw(record: ParsedRecord): ParsedRecord {
  if (record.values !== undefined) return { data: record.data, line: record.line }; // a CSV record: its data as an object
  if (record.raw === undefined) return record;
  expect(JSON.parse(record.raw)).toStrictEqual(record.data);
  const { raw: _, ...rest } = record;
  return rest;
}

async function run(parser: Parser, chunks: string[]): Promise<Outcome> {
  const records: ParsedRecord[] = [];
  try {
    for await (const record of parser(feed(chunks))) {
      // A row error is where a strict reading of the input stops.
      if (record.error !== undefined) throw new IngestError(record.error);
      records.push(withoutRaw(record));
    }
  } catch (err) {
    if (!(err instanceof IngestError)) throw err; // anything else is a bug in the parser
    return { records, error: err.message };
  }
  return { records };
}

/** Parses text in every chunking; asserts they all agree, and returns the outcome. */
async function parseAll(parser: Parser, text: string): Promise<Outcome> {
  const [[, whole], ...rest] = [['whole', [text]] as [string, string[]], ...chunkings(text, '')];
  const expected = await run(parser, whole);
  for (const [label, chunks] of rest) {
    const got = await run(parser, chunks);
    expect(got, `${label} of ${JSON.stringify(text.slice(0, 80))}`).toEqual(expected);
  }
  return expected;
}

async function records(parser: Parser, text: string): Promise<ParsedRecord[]> {
  const outcome = await parseAll(parser, text);
  expect(outcome.error, `parsing ${JSON.stringify(text.slice(0, 80))}`).toBeUndefined();
  return outcome.records;
}

async function data(parser: Parser, text: string): Promise<unknown[]> {
  return (await records(parser, text)).map((r) => r.data);
}

/** The IngestError message of text (the same in every chunking). */
async function failure(parser: Parser, text: string): Promise<string> {
  const outcome = await parseAll(parser, text);
  expect(outcome.error, `parsing ${JSON.stringify(text.slice(0, 80))} should fail`).toBeDefined();
  return outcome.error!;
}

const linesBefore = (text: string, end: number) => 1 + (text.slice(0, end).match(/\r\n|\r|\n/g)?.length ?? 0);

// ---------------------------------------------------------------------------------------------

describe('chunking helper', () => {
  it('covers every split position', () => {
    const all = chunkings('abcd', '');
    expect(all.map(([, c]) => c.join(''))).toEqual(all.map(() => 'abcd'));
    expect(all.filter(([l]) => l.startsWith('split')).map(([, c]) => c[0])).toEqual(['a', 'ab', 'abc']);
    expect(all.find(([l]) => l === '2-char chunks')![1]).toEqual(['ab', 'cd']);
  });
});

/** Every record (line and values) and row error of a CSV text, the same in every chunking, and its report. */
async function everything(text: string, dialect: CsvDialect = {}, report = {} as CsvReport): Promise<unknown[]> {
  let expected: unknown[] | undefined;
  for (const [label, chunks] of [['whole', [text]] as [string, string[]], ...chunkings(text, '').slice(0, 4)]) {
    const got: unknown[] = [];
    for await (const r of parseCsv(feed(chunks), undefined, dialect, report)) got.push(r.error ?? [r.line, r.values]);
    if (expected) expect(got, label).toEqual(expected);
    expected = got;
  }
  return expected!;
}

describe('parseCsv', () => {
  it('reads a header row and the records, with the line where each starts', async () => {
    expect(await records(parseCsv, 'id,name\n1,Ann\n2,Bob\n')).toEqual([
      { data: { id: '1', name: 'Ann' }, line: 2 },
      { data: { id: '2', name: 'Bob' }, line: 3 },
    ]);
  });

  it('reads the last record without a final line break', async () => {
    expect(await data(parseCsv, 'a,b\n1,2\n3,4')).toEqual([
      { a: '1', b: '2' },
      { a: '3', b: '4' },
    ]);
  });

  it('reads quoted fields with commas, doubled quotes and line breaks', async () => {
    const text = 'a,b,c\n"x, y","say ""hi""","line 1\nline 2\r\nline 3"\n"",",",""""\n4,"5",6';
    expect(await records(parseCsv, text)).toEqual([
      { data: { a: 'x, y', b: 'say "hi"', c: 'line 1\nline 2\r\nline 3' }, line: 2 },
      { data: { a: '', b: ',', c: '"' }, line: 5 },
      { data: { a: '4', b: '5', c: '6' }, line: 6 },
    ]);
  });

  it('accepts CRLF, LF, lone CR and a mix of them', async () => {
    const expected = [
      { data: { a: '1', b: '2' }, line: 2 },
      { data: { a: '3', b: '4' }, line: 3 },
    ];
    expect(await records(parseCsv, 'a,b\r\n1,2\r\n3,4\r\n')).toEqual(expected);
    expect(await records(parseCsv, 'a,b\n1,2\n3,4\n')).toEqual(expected);
    expect(await records(parseCsv, 'a,b\r1,2\r3,4\r')).toEqual(expected);
    expect(await records(parseCsv, 'a,b\r\n1,2\n3,4\r')).toEqual(expected);
    expect(await records(parseCsv, 'a,b\n1,2\r3,4')).toEqual(expected);
    expect(await records(parseCsv, 'a,b\r1,2\n3,4\r\n\r5,6\n')).toEqual([...expected, { data: { a: '5', b: '6' }, line: 5 }]);
  });

  it('counts a CRLF inside a quoted field as one line', async () => {
    expect(await records(parseCsv, 'a,b\r\n"1\r\n1",2\r\n3,4\r\n')).toEqual([
      { data: { a: '1\r\n1', b: '2' }, line: 2 },
      { data: { a: '3', b: '4' }, line: 4 },
    ]);
    expect(await failure(parseCsv, 'a,b\r\n"1\r\n1",2\r\n3\r\n5,6\r\n')).toMatch(/line 4\b/);
  });

  it('strips a UTF-8 BOM from the first header name, and only there', async () => {
    const got = await records(parseCsv, '\uFEFFid,name\n1,\uFEFFx\n');
    expect(got).toEqual([{ data: { id: '1', name: '\uFEFFx' }, line: 2 }]);
    expect(Object.keys(got[0]!.data!)[0]).toBe('id');
  });

  it('gives "" for empty fields, quoted or not', async () => {
    expect(await data(parseCsv, 'a,b,c\n,,\n"",x,""\n1,,\n')).toEqual([
      { a: '', b: '', c: '' },
      { a: '', b: 'x', c: '' },
      { a: '1', b: '', c: '' },
    ]);
  });

  it('skips empty lines, wherever they are, keeping line numbers right', async () => {
    expect(await records(parseCsv, '\n\r\na,b\n\n1,2\r\n\r\n\n3,4\n\n')).toEqual([
      { data: { a: '1', b: '2' }, line: 5 },
      { data: { a: '3', b: '4' }, line: 8 },
    ]);
  });

  it('keeps a single-column record that is an empty quoted field', async () => {
    expect(await data(parseCsv, 'a\n""\nx\n')).toEqual([{ a: '' }, { a: 'x' }]);
  });

  it('gives 0 records for a header-only file (with or without line break) and an empty file', async () => {
    expect(await records(parseCsv, 'a,b\n')).toEqual([]);
    expect(await records(parseCsv, 'a,b')).toEqual([]);
    expect(await records(parseCsv, '')).toEqual([]);
    expect(await records(parseCsv, '\uFEFF')).toEqual([]);
  });

  it('renames duplicate and empty header names: name, name_2, name_3; column_N (1-based)', async () => {
    expect(await data(parseCsv, 'name,name,,name, \n1,2,3,4,5\n')).toEqual([
      { name: '1', name_2: '2', column_3: '3', name_3: '4', column_5: '5' },
    ]);
    expect(headerKeys(['a_2', 'a', 'a'])).toEqual(['a_2', 'a', 'a_3']);
    expect(headerKeys(['column_2', ''])).toEqual(['column_2', 'column_2_2']);
  });

  it('keeps every value when header names are special object keys', async () => {
    const [record] = await data(parseCsv, '__proto__,constructor,toString\n1,2,3\n');
    expect(Object.keys(record as object)).toEqual(['__proto__', 'constructor', 'toString']);
    expect(JSON.parse(JSON.stringify(record))).toEqual(JSON.parse('{"__proto__":"1","constructor":"2","toString":"3"}'));
    expect(Object.getPrototypeOf(record)).toBe(Object.prototype);
  });

  it('makes a row of too few or too many fields inside the table a row error, naming the line', async () => {
    expect(await failure(parseCsv, 'a,b\n1,2\n3\n4,5\n')).toBe('CSV error on line 3: expected 2 fields as in the header, found 1');
    expect(await failure(parseCsv, 'a,b\n1,2\n\n3,4,5\n6,7')).toBe('CSV error on line 4: expected 2 fields as in the header, found 3');
    // The records before the bad one are read.
    expect((await parseAll(parseCsv, 'a,b\n1,2\n3\n4,5\n')).records).toHaveLength(1);
    // A multi-line record is reported at the line where it starts: a quoted field that holds a
    // line break and closes where a field ends is one field, whatever the record's count.
    expect(await failure(parseCsv, 'a,b\n1,2\n"x\ny",2,3\n4,5\n')).toMatch(/^CSV error on line 3: .*found 3$/);
    // Whitespace is data: a blank-looking line is a record.
    expect(await failure(parseCsv, 'a,b\n1,2\n  \n3,4\n')).toMatch(/line 3: expected 2 fields.*found 1/);
  });

  it('reads an unclosed quote that swallows lines as a character, line by line, and never fails the job', async () => {
    expect(await data(parseCsv, 'a,b\n1,"2\n3,4\n')).toEqual([
      { a: '1', b: '"2' },
      { a: '3', b: '4' },
    ]);
    expect(await data(parseCsv, 'a,b\n1,2\n"')).toEqual([{ a: '1', b: '2' }]);
    // The quote runs to the end of the file: each line it swallowed is a record again.
    expect(await records(parseCsv, 'a,b\n1,2\n3,"x\n4,5\n6,7\n8,9')).toEqual([
      { data: { a: '1', b: '2' }, line: 2 },
      { data: { a: '3', b: '"x' }, line: 3 },
      { data: { a: '4', b: '5' }, line: 4 },
      { data: { a: '6', b: '7' }, line: 5 },
      { data: { a: '8', b: '9' }, line: 6 },
    ]);
    // A quote that closes lines later, on a record that does not fit: read again line by line
    // when each line then fits the table; else one row error (two fields are too few to tell).
    expect(await everything('a,b,c\n1,"x,2\n3,4,5"\n6,7,8\n')).toEqual([
      [2, ['1', '"x', '2']],
      [3, ['3', '4', '5"']],
      [4, ['6', '7', '8']],
    ]);
    expect(await everything('a,b\n1,"x\n2,y",3\n4,5\n')).toEqual([
      'CSV error on line 2: expected 2 fields as in the header, found 3',
      [4, ['4', '5']],
    ]);
    // A multi-line field that fits is a multi-line field.
    expect(await data(parseCsv, 'a,b\n1,"x\ny"\n3,z\n')).toEqual([
      { a: '1', b: 'x\ny' },
      { a: '3', b: 'z' },
    ]);
    // The line read again does not fit: a row error with its line, the others stand.
    const got = await parseAll(parseCsv, 'a,b,c\n1,2,3\n4,"5\n6,7,8\n');
    expect(got.records).toEqual([{ data: { a: '1', b: '2', c: '3' }, line: 2 }]);
    expect(got.error).toBe('CSV error on line 3: expected 3 fields as in the header, found 2');
  });

  it('keeps a quote inside an unquoted field, or one that does not close a quoted field, as a character', async () => {
    expect(await data(parseCsv, 'a,b\n1,x"y\n2,5" tall\n')).toEqual([
      { a: '1', b: 'x"y' },
      { a: '2', b: '5" tall' },
    ]);
    expect(await data(parseCsv, 'a,b\n1,"He said "hi" to me"\n2,x\n')).toEqual([
      { a: '1', b: 'He said "hi" to me' },
      { a: '2', b: 'x' },
    ]);
    // Text after a closing quote that would swallow the line: the field as written.
    expect(await data(parseCsv, 'a,b\n1,2\n"1"x,2\n')).toEqual([
      { a: '1', b: '2' },
      { a: '"1"x', b: '2' },
    ]);
    expect(await data(parseCsv, 'a,b,c\n"abc"def,x,"y"\n1,2,3\n')).toEqual([
      { a: '"abc"def', b: 'x', c: 'y' },
      { a: '1', b: '2', c: '3' },
    ]);
  });

  it('sniffs the delimiter, quote and escape from a sample, and takes the ones given', async () => {
    const sniff = (text: string) => {
      const { delimiter, quote, escape } = sniffCsv(text, {});
      return [delimiter, quote, escape].join(' ');
    };
    expect(sniffCsv('a;b;c\n1;2,5;3\n', {}).delimiter).toBe(';');
    expect(sniffCsv('a\tb\n1\t2\n', {}).delimiter).toBe('\t');
    expect(sniffCsv('a|b\n"x|y"|2\n', {}).delimiter).toBe('|');
    expect(sniffCsv('name,note\n"a;b;c",x\n', {}).delimiter).toBe(',');
    expect(sniffCsv('single\nvalue\n', {}).delimiter).toBe(',');
    expect(sniffCsv('a;b\n1;2', {}).delimiter).toBe(';');
    expect(sniff('id name price\n1 apple 2.5\n2 pear 3\n')).toBe('  " double');
    expect(sniff('a, b, c\n1, 2, 3\n4, 5, 6\n')).toBe(',  " double');
    expect(sniff("id,name\n1,'Smith, J'\n2,'Doe, A'\n")).toBe(", ' double");
    expect(sniff('id;note\n1;"say \\"hi\\""\n2;"x"\n')).toBe('; " backslash');
    expect(sniffCsv('a,b\r\n1,2\r\n', {}).line_ending).toBe('CRLF');
    expect(sniffCsv('a,b\r1,2\r', {}).line_ending).toBe('CR');
    expect(sniffCsv('a,b\n1,2\n', {}).line_ending).toBe('LF');
    expect(sniffCsv('a;b\n1;2\n', { delimiter: ',' }).delimiter).toBe(',');
    // A European export: semicolons, decimal commas, CRLF.
    expect(await data(parseCsv, 'Artikel;Preis;Menge\r\nÄpfel;1,99;3\r\nBirnen;2,49;5\r\n')).toEqual([
      { Artikel: 'Äpfel', Preis: '1,99', Menge: '3' },
      { Artikel: 'Birnen', Preis: '2,49', Menge: '5' },
    ]);
    const given = async (text: string, dialect: CsvDialect) => {
      const out: unknown[] = [];
      for await (const r of parseCsv([text], undefined, dialect)) out.push(r.data ?? r.error);
      return out;
    };
    expect(await given('a;b\n1;2\n', { delimiter: ',' })).toEqual([{ 'a;b': '1;2' }]);
    expect(await given('1\t2\n3\t4\n', { delimiter: '\t', header: false })).toEqual([
      { column_1: '1', column_2: '2' },
      { column_1: '3', column_2: '4' },
    ]);
    expect(await given('1,2\n3\n4,5\n', { header: false })).toEqual([
      { column_1: '1', column_2: '2' },
      'CSV error on line 2: expected 2 fields as in the other rows, found 1',
      { column_1: '4', column_2: '5' },
    ]);
  });

  it('agrees with csv-parse on random valid CSV, and gets every record line right', async () => {
    const rnd = random(7);
    const pieces = ['a', 'B c', ',', '"', '""', '\n', '\r\n', 'é', '😀', '', ' ', 'x'];
    for (let doc = 0; doc < 150; doc++) {
      const columns = 1 + rnd.int(4);
      const field = (quoteEmpty: boolean) => {
        let value = '';
        for (let n = rnd.int(4); n > 0; n--) value += rnd.pick(pieces);
        const must = /[",\r\n]/.test(value) || (quoteEmpty && value === '');
        return { value, text: must || rnd.next() < 0.2 ? `"${value.replace(/"/g, '""')}"` : value };
      };
      const header = Array.from({ length: columns }, (_, i) => rnd.pick(['id', 'name', '', 'id', `c${i}`]));
      let text = rnd.next() < 0.2 ? '\uFEFF' : '';
      text += header.map((name) => (name === '' && columns === 1 ? '""' : name)).join(','); // else an empty line
      const expected: ParsedRecord[] = [];
      const keys = headerKeys(header);
      for (let row = rnd.int(6); row > 0; row--) {
        text += rnd.pick(['\n', '\r\n']);
        while (rnd.next() < 0.2) text += rnd.pick(['\n', '\r\n']); // empty lines
        const line = linesBefore(text, text.length);
        const fields = Array.from({ length: columns }, () => field(columns === 1));
        text += fields.map((f) => f.text).join(',');
        expected.push({ data: Object.fromEntries(keys.map((k, i) => [k, fields[i]!.value])), line });
      }
      if (rnd.next() < 0.5) text += rnd.pick(['\n', '\r\n']);
      const got = await records(parseCsv, text);
      expect(got, JSON.stringify(text)).toEqual(expected);
      const reference = csvParseSync(text, { columns: headerKeys, bom: true, skip_empty_lines: true, record_delimiter: ['\r\n', '\n'] });
      expect(got.map((r) => r.data)).toEqual(reference);
    }
  });
});

describe('parseJson', () => {
  it('reads a top-level array of objects', async () => {
    expect(await records(parseJson, '[{"a":1},{"b":"two"},{}]')).toEqual([
      { data: { a: 1 }, line: 1 },
      { data: { b: 'two' }, line: 1 },
      { data: {}, line: 1 },
    ]);
  });

  it('reads {"records": [...]}', async () => {
    expect(await data(parseJson, '{"records":[{"a":1},{"a":2}]}')).toEqual([{ a: 1 }, { a: 2 }]);
  });

  it('skips other keys, before and after "records", whatever their values hold', async () => {
    const text = `{
      "meta": {"note": "a \\"quoted\\" ] } [ { , : text", "list": [[1, [2]], {"x": {"y": []}}], "records": "not these"},
      "count": 2, "ok": true, "nothing": null, "neg": -1.5e3, "s": "]}", "esc": "\\\\", "arr": [],
      "records": [{"a": 1}, {"a": 2}],
      "other": {"records": [{"z": 0}], "deep": [[[["]"]]]]},
      "tail": "\\\\\\""
    }`;
    expect(await data(parseJson, text)).toEqual([{ a: 1 }, { a: 2 }]);
  });

  it('treats an escaped key that means "records" as "records"', async () => {
    expect(await data(parseJson, '{"rec\\u006frds":[{"a":1}]}')).toEqual([{ a: 1 }]);
  });

  it('keeps nested values as JSON', async () => {
    const record = { a: { b: [1, { c: [true, null, 'x'] }], d: {} }, e: [[], [[]]], f: 1.25e-3 };
    expect(await data(parseJson, JSON.stringify([record, record]))).toEqual([record, record]);
  });

  it('gives 0 records for an empty array, also as "records"', async () => {
    expect(await records(parseJson, '[]')).toEqual([]);
    expect(await records(parseJson, ' [ \n ] \n')).toEqual([]);
    expect(await records(parseJson, '{"records": []}')).toEqual([]);
    expect(await records(parseJson, '{"a": 1, "records": [ ], "b": [2]}')).toEqual([]);
  });

  it('allows JSON whitespace everywhere, with right line numbers', async () => {
    const text = '\r\n\t [ \n  { "a" :\r\n 1 } ,\n\n\t{\n"b"\n:\n[\n2\n]\n}\r\n ]  \n\t';
    expect(await records(parseJson, text)).toEqual([
      { data: { a: 1 }, line: 3 },
      { data: { b: [2] }, line: 6 },
    ]);
    const wrapped = ' {\n "x" : [ 1 , 2 ] ,\n "records"\n :\n [\n {"a":1}\n ,\n{"b":2} ] \n } \n';
    expect(await records(parseJson, wrapped)).toEqual([
      { data: { a: 1 }, line: 6 },
      { data: { b: 2 }, line: 8 },
    ]);
  });

  it('reads strings holding ] } , [ { : quotes, backslashes and unicode escapes', async () => {
    const values = ['x]', '}', ',', '[{', ':', '"', '\\', '\\"', '"]', '\\\\', 'a\\', '\u00e9\u2603\ud83d\ude00', '\n\t\u2028'];
    for (const value of values) {
      const doc = `[{"v":${JSON.stringify(value)},"w":1},{"${value === '"' ? '\\"' : 'k'}":[${JSON.stringify(value)}]}]`;
      const got = await data(parseJson, doc);
      expect(got, doc).toEqual(JSON.parse(doc));
    }
    expect(await data(parseJson, '[{"u":"\\u00e9\\u2603\\ud83d\\ude00\\u005d\\u0022\\/"}]')).toEqual([{ u: 'é☃😀]"/' }]);
    expect(await data(parseJson, '[{"a":"é☃😀"}]')).toEqual([{ a: 'é☃😀' }]);
  });

  it('fails on a record that is not an object, naming the record and its line', async () => {
    expect(await failure(parseJson, '[{"a":1}, 42]')).toBe('record 1 (line 1) is a number, expected a JSON object');
    expect(await failure(parseJson, '[{"a":1},\n"x"]')).toBe('record 1 (line 2) is a string, expected a JSON object');
    expect(await failure(parseJson, '[null]')).toBe('record 0 (line 1) is null, expected a JSON object');
    expect(await failure(parseJson, '[{},{},\n\n[{"a":1}]]')).toBe('record 2 (line 3) is an array, expected a JSON object');
    expect(await failure(parseJson, '[true]')).toBe('record 0 (line 1) is a boolean, expected a JSON object');
    expect(await failure(parseJson, '{"records":[{"a":1},-1.5 ]}')).toBe('record 1 (line 1) is a number, expected a JSON object');
    expect(await failure(parseJson, '[{"a":1},"]"]')).toBe('record 1 (line 1) is a string, expected a JSON object');
    // The records before the bad one are read.
    expect((await parseAll(parseJson, '[{"a":1}, 42]')).records).toEqual([{ data: { a: 1 }, line: 1 }]);
  });

  it('fails on invalid JSON inside a record, naming the record and its line', async () => {
    expect(await failure(parseJson, '[{"a":1},\n{"b":}]')).toMatch(/^JSON error in record 1 \(line 2\): /);
    expect(await failure(parseJson, '[{"a":tru}]')).toMatch(/^JSON error in record 0 \(line 1\): /);
    expect(await failure(parseJson, '[{"a":1]')).toMatch(/^JSON error in record 0 \(line 1\): /);
    expect(await failure(parseJson, '[{"a":"x\ny"}]')).toMatch(/^JSON error in record 0 \(line 1\): /);
    expect(await failure(parseJson, '[{"a":1}\n,\n{"a":"\\x"}]')).toMatch(/^JSON error in record 1 \(line 3\): /);
    expect(await failure(parseJson, '[tru]')).toMatch(/^JSON error in record 0 \(line 1\): /);
  });

  it('fails on a truncated file', async () => {
    expect(await failure(parseJson, '[{"a":1}')).toBe('the JSON document ends early at line 1 (truncated file?)');
    expect(await failure(parseJson, '[{"a":')).toBe(
      'the JSON document ends early at line 1, inside record 0 (which starts on line 1) (truncated file?)',
    );
    expect(await failure(parseJson, '{"records":[{"a":1}')).toBe('the JSON document ends early at line 1 (truncated file?)');
    expect(await failure(parseJson, '[\n{"a":1},\n{"b":"x\\')).toBe(
      'the JSON document ends early at line 3, inside record 1 (which starts on line 3) (truncated file?)',
    );
    // Line breaks inside a string (invalid, but the file ends first) still count.
    expect(await failure(parseJson, '[{"a":1},\n{"b":"x\ny\n')).toBe(
      'the JSON document ends early at line 4, inside record 1 (which starts on line 2) (truncated file?)',
    );
    for (const text of [
      '[',
      '{',
      '{"rec',
      '{"records"',
      '{"records":',
      '{"records":[',
      '{"records":[]',
      '{"x":[1,',
      '[{"a":1},',
      '{"a":"]}"',
    ]) {
      expect(await failure(parseJson, text), text).toMatch(/^the JSON document ends early at line 1/);
    }
    // A truncated bare scalar says what it is.
    expect(await failure(parseJson, '[{"a":1}, 12')).toBe('record 1 (line 1) is a number, expected a JSON object');
  });

  it('fails on trailing, leading and doubled commas', async () => {
    expect(await failure(parseJson, '[{"a":1},]')).toBe(`JSON error at line 1: expected record 1, found "]"`);
    expect(await failure(parseJson, '[,{"a":1}]')).toBe(`JSON error at line 1: expected record 0, found ","`);
    expect(await failure(parseJson, '[{"a":1},,{"a":2}]')).toBe(`JSON error at line 1: expected record 1, found ","`);
    expect(await failure(parseJson, '{"records":[{"a":1}],}')).toMatch(
      /^JSON error at line 1: expected a key in double quotes, found "}"$/,
    );
    expect(await failure(parseJson, '{"records":[],"":1,}')).toMatch(/^JSON error at line 1: expected a key/);
    expect(await failure(parseJson, '{"":1,}')).toMatch(/^JSON error at line 1: expected a key/);
    expect(await failure(parseJson, '{,"records":[]}')).toMatch(/^JSON error at line 1: expected a key/);
  });

  it('fails on data after the end of the document', async () => {
    expect(await failure(parseJson, '[{"a":1}] x')).toBe('JSON error at line 1: unexpected data after the end of the document');
    expect(await failure(parseJson, '[{"a":1}]\n\n[]')).toBe('JSON error at line 3: unexpected data after the end of the document');
    expect(await failure(parseJson, '{"records":[]}}')).toMatch(/unexpected data after the end/);
    expect(await failure(parseJson, '[]]')).toMatch(/unexpected data after the end/);
  });

  it('fails on a top-level scalar, string or other non-container', async () => {
    for (const text of ['42', '"records"', 'null', 'true', '-1', '\n\n"x"', ']', '}']) {
      expect(await failure(parseJson, text), text).toMatch(
        /^JSON error at line \d: expected a JSON array of objects or \{"records": \[\.\.\.\]\}, found /,
      );
    }
    expect(await failure(parseJson, '\n\n"x"')).toMatch(/^JSON error at line 3: /);
  });

  it('fails on an object without "records", saying so', async () => {
    expect(await failure(parseJson, '{}')).toBe('the JSON object has no "records" array');
    expect(await failure(parseJson, '{"foo":1}')).toBe('the JSON object has no "records" array');
    expect(await failure(parseJson, ' { "Records": [{"a":1}], "record": [] } ')).toBe('the JSON object has no "records" array');
  });

  it('fails when "records" is not an array, or appears twice', async () => {
    for (const value of ['{}', '1', '"[]"', 'null', '{"records":[]}']) {
      expect(await failure(parseJson, `{"records": ${value}}`), value).toBe('JSON error at line 1: "records" must be an array of objects');
    }
    expect(await failure(parseJson, '{"records":[],\n"records":[]}')).toBe('JSON error at line 2: "records" appears twice');
  });

  it('fails on an empty or whitespace-only file, saying it is empty', async () => {
    for (const text of ['', ' ', '\n\r\n\t  \n']) {
      expect(await failure(parseJson, text)).toBe('the file is empty: expected a JSON array of objects or {"records": [...]}');
    }
  });

  it('fails on invalid values of the skipped keys', async () => {
    expect(await failure(parseJson, '{"meta": [1, 2}, "records": [{"a":1}]}')).toMatch(/^JSON error in the value of "meta" \(line 1\): /);
    expect(await failure(parseJson, '{"m": {"a": ]]}, "records": []}')).toMatch(/^JSON error in the value of "m" \(line 1\): /);
    expect(await failure(parseJson, '{"records": [], "m":\n tru}')).toMatch(/^JSON error in the value of "m" \(line 2\): /);
    expect(await failure(parseJson, '{"m": "a\nb", "records": []}')).toMatch(/^JSON error in the value of "m" \(line 1\): /);
    expect(await failure(parseJson, '{"meta": , "records": []}')).toBe(
      'JSON error at line 1: expected a value for the key "meta", found ","',
    );
    expect(await failure(parseJson, '{"meta": }')).toBe('JSON error at line 1: expected a value for the key "meta", found "}"');
    expect(await failure(parseJson, '{"a" 1}')).toBe(`JSON error at line 1: expected ':' after the key "a", found "1"`);
    expect(await failure(parseJson, '{"a": 1 "records": []}')).toBe(`JSON error at line 1: expected ',' or '}', found "\\""`);
    expect(await failure(parseJson, "{'records': []}")).toMatch(
      /^JSON error at line 1: expected a key in double quotes or '}', found "'"$/,
    );
  });

  it('fails on an invalid key with an IngestError', async () => {
    expect(await failure(parseJson, '{"a\\q": 1, "records": []}')).toMatch(/^JSON error at line 1: invalid key in the top-level object: /);
    expect(await failure(parseJson, '{"x": 1,\n"a\nb": 1, "records": []}')).toMatch(/^JSON error at line 2: invalid key/);
  });

  it('fails on garbage between records', async () => {
    expect(await failure(parseJson, '[{"a":1} {"a":2}]')).toBe(`JSON error at line 1: expected ',' or ']' after record 0, found "{"`);
    expect(await failure(parseJson, '[{"a":1}:]')).toMatch(/expected ',' or ']' after record 0, found ":"/);
    expect(await failure(parseJson, '[}]')).toBe('JSON error at line 1: expected record 0, found "}"');
    expect(await failure(parseJson, '[{"a":1}, x]')).toBe('JSON error at line 1: expected record 1, found "x"');
  });

  it('rejects \\u0000 (PostgreSQL cannot store it) but not an escaped backslash before "u0000"', async () => {
    expect(await failure(parseJson, '[{"a":1},{"a":"x\\u0000"}]')).toBe(
      'record 1 (line 1) contains \\u0000, which PostgreSQL cannot store',
    );
    expect(await failure(parseJson, '[{"\\\\\\u0000":1}]')).toMatch(/contains \\u0000/);
    expect(await data(parseJson, '[{"a":"\\\\u0000"}]')).toEqual([{ a: '\\u0000' }]);
    expect(await failure(parseJson, '[{"a":"\\u00000"}]')).toMatch(/contains \\u0000/);
    expect(hasNulEscape('"\\u00000"')).toBe(true);
    expect(hasNulEscape('"\\\\u0000"')).toBe(false);
    expect(hasNulEscape('"\\\\\\u0000"')).toBe(true);
    expect(hasNulEscape('\\u0000')).toBe(true);
    expect(hasNulEscape('"\\u0001"')).toBe(false);
  });

  it('agrees with JSON.parse on random valid documents, with every record line right', async () => {
    const rnd = random(42);
    for (let doc = 0; doc < 120; doc++) {
      const { text, expected } = randomDocument(rnd, true);
      const got = await records(parseJson, text);
      expect(got, text).toEqual(expected);
    }
  });

  it('fails exactly when it should on randomly damaged documents', async () => {
    const rnd = random(1234);
    const inserts = ['{', '}', '[', ']', ',', ':', '"', '\\', ' ', '\n', '1', 'a', 'n', '-'];
    for (let round = 0; round < 1500; round++) {
      let { text } = randomDocument(rnd, false);
      for (let edits = 1 + rnd.int(2); edits > 0; edits--) {
        const p = rnd.int(text.length + 1);
        const op = rnd.int(4);
        if (op === 0) text = text.slice(0, p) + text.slice(p + 1);
        else if (op === 1) text = text.slice(0, p) + rnd.pick(inserts) + text.slice(p);
        else if (op === 2) text = text.slice(0, p) + rnd.pick(inserts) + text.slice(p + 1);
        else text = text.slice(0, p);
      }
      const want = oracle(text);
      const got = await run(parseJson, [text]);
      if (want === 'error') expect(got.error, `${JSON.stringify(text)} should fail`).toBeDefined();
      else {
        expect(got.error, JSON.stringify(text)).toBeUndefined();
        expect(got.records.map((r) => r.data)).toEqual(want);
      }
      for (const chunks of [sized(text, 1), sized(text, 2 + rnd.int(9))]) {
        expect(await run(parseJson, chunks), JSON.stringify(text)).toEqual(got);
      }
    }
  });
});

/** What parseJson must give for text: the records, or 'error'. */
function oracle(text: string): unknown[] | 'error' {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return 'error';
  }
  let list: unknown = value;
  if (!Array.isArray(value)) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, 'records')) return 'error';
    list = (value as { records: unknown }).records;
  }
  if (!Array.isArray(list)) return 'error';
  if (!list.every((r) => r !== null && typeof r === 'object' && !Array.isArray(r))) return 'error';
  return list;
}

/**
 * A random JSON document of records (an array, or {"records": [...]} among other keys), with
 * random whitespace between tokens and nasty strings, and the records with their start lines.
 */
function randomDocument(rnd: Random, nasty: boolean): { text: string; expected: ParsedRecord[] } {
  // (Damaged documents get no "records" in strings: an edit could make it a second key.)
  const pieces = ['a', ']', '}', '[', '{', ',', ':', '"', '\\', '/', '\n', '\t', 'é', '☃', '😀', '\u2028', ' ', '\u0001'];
  if (nasty) pieces.push('records');
  const ws = () => (rnd.next() < 0.6 ? '' : rnd.pick([' ', '\n', '\r\n', '\t', ' \n  ', '\n\n']));
  const str = (s: string) =>
    '"' +
    Array.from(s, (ch) => {
      if (rnd.next() < 0.15) {
        return Array.from({ length: ch.length }, (_, i) => '\\u' + ch.charCodeAt(i).toString(16).padStart(4, '0')).join('');
      }
      return JSON.stringify(ch).slice(1, -1);
    }).join('') +
    '"';
  const randomString = () => Array.from({ length: rnd.int(5) }, () => rnd.pick(pieces)).join('');
  const randomKey = () => (nasty ? randomString() : rnd.pick(['a', 'b', 'c', 'x1', 'é']));
  const value = (depth: number): [unknown, string] => {
    const kind = rnd.int(depth > 2 ? 5 : 7);
    switch (kind) {
      case 0:
        return [null, 'null'];
      case 1: {
        const b = rnd.next() < 0.5;
        return [b, String(b)];
      }
      case 2: {
        const n = rnd.pick([0, 1, -1, 42, 1.5, -0.25, 1e21, 123456789]);
        const t = rnd.pick([String(n), n === 1.5 ? '15e-1' : String(n)]);
        return [n, t];
      }
      case 3:
      case 4: {
        const s = randomString();
        return [s, str(s)];
      }
      case 5:
        return object(depth + 1);
      default: {
        const items = Array.from({ length: rnd.int(4) }, () => value(depth + 1));
        return [items.map(([v]) => v), '[' + ws() + items.map(([, t]) => t).join(ws() + ',' + ws()) + ws() + ']'];
      }
    }
  };
  function object(depth: number): [Record<string, unknown>, string] {
    const entries = Array.from({ length: rnd.int(4) }, () => [randomKey(), value(depth)] as const);
    const result: Record<string, unknown> = {};
    for (const [k, [v]] of entries) Object.defineProperty(result, k, { value: v, enumerable: true, writable: true, configurable: true });
    const text = '{' + ws() + entries.map(([k, [, t]]) => str(k) + ws() + ':' + ws() + t).join(ws() + ',' + ws()) + ws() + '}';
    return [result, text];
  }

  let text = ws();
  const wrapped = rnd.next() < 0.5;
  const otherKey = () => (nasty ? rnd.pick(['meta', 'Records', 'records ', 'record', 'x', '']) : rnd.pick(['meta', 'x']));
  if (wrapped) {
    text += '{' + ws();
    for (let n = rnd.int(3); n > 0; n--) text += str(otherKey()) + ws() + ':' + ws() + value(0)[1] + ws() + ',' + ws();
    text += str('records') + ws() + ':' + ws();
  }
  text += '[' + ws();
  const expected: ParsedRecord[] = [];
  const count = rnd.int(5);
  for (let n = 0; n < count; n++) {
    if (n > 0) text += ws() + ',' + ws();
    const line = linesBefore(text, text.length);
    const [data, t] = object(0);
    text += t;
    expected.push({ data, line });
  }
  text += ws() + ']';
  if (wrapped) {
    for (let n = rnd.int(3); n > 0; n--) text += ws() + ',' + ws() + str(otherKey()) + ws() + ':' + ws() + value(0)[1];
    text += ws() + '}';
  }
  text += ws();
  return { text, expected };
}

describe('parseNdjson', () => {
  it('reads one object per line, LF or CRLF, with line numbers', async () => {
    const expected = [
      { data: { a: 1 }, line: 1 },
      { data: { b: [1, { c: '}' }] }, line: 2 },
      { data: {}, line: 3 },
    ];
    expect(await records(parseNdjson, '{"a":1}\n{"b":[1,{"c":"}"}]}\n{}\n')).toEqual(expected);
    expect(await records(parseNdjson, '{"a":1}\r\n{"b":[1,{"c":"}"}]}\r\n{}\r\n')).toEqual(expected);
  });

  it('skips blank lines, counting them', async () => {
    expect(await records(parseNdjson, '\n{"a":1}\n\n  \t\r\n\r\n{"a":2}\n\n')).toEqual([
      { data: { a: 1 }, line: 2 },
      { data: { a: 2 }, line: 6 },
    ]);
    expect(await records(parseNdjson, '')).toEqual([]);
    expect(await records(parseNdjson, '\n\r\n \n')).toEqual([]);
  });

  it('reads the last line without a line break', async () => {
    expect(await records(parseNdjson, '{"a":1}\n{"a":2}')).toEqual([
      { data: { a: 1 }, line: 1 },
      { data: { a: 2 }, line: 2 },
    ]);
    expect(await records(parseNdjson, '{"a":1}\r\n {"a":2} \r')).toHaveLength(2);
  });

  it('reads values with escapes, unicode and inner whitespace', async () => {
    expect(await data(parseNdjson, ' { "s" : "a\\nb\\"c\\u00e9", "t": "😀" } \n')).toEqual([{ s: 'a\nb"cé', t: '😀' }]);
  });

  it('fails on an invalid JSON line, naming it', async () => {
    expect(await failure(parseNdjson, '{"a":1}\n\n{"a":\n{"a":3}\n')).toMatch(/^invalid JSON on line 3: /);
    expect(await failure(parseNdjson, '{"a":1}\r\n{"a":2}\r\n[{"a":1},\r\n')).toMatch(/^invalid JSON on line 3: /);
    expect(await failure(parseNdjson, '{"a":1}\n{"a":2')).toMatch(/^invalid JSON on line 2: /);
    expect(await failure(parseNdjson, '{"a":1} {"a":2}\n')).toMatch(/^invalid JSON on line 1: /);
    expect((await parseAll(parseNdjson, '{"a":1}\n{"a":\n')).records).toHaveLength(1);
  });

  it('fails on a line that is not an object', async () => {
    expect(await failure(parseNdjson, '{"a":1}\n[{"a":2}]\n')).toBe('line 2 is an array, expected a JSON object');
    expect(await failure(parseNdjson, '\n\n42')).toBe('line 3 is a number, expected a JSON object');
    expect(await failure(parseNdjson, '"x"\n')).toBe('line 1 is a string, expected a JSON object');
    expect(await failure(parseNdjson, 'null\n')).toBe('line 1 is null, expected a JSON object');
  });

  it('rejects \\u0000 but not an escaped backslash before "u0000"', async () => {
    expect(await failure(parseNdjson, '{"a":1}\n{"a":"\\u0000"}\n')).toBe('line 2 contains \\u0000, which PostgreSQL cannot store');
    expect(await data(parseNdjson, '{"a":"\\\\u0000"}\n')).toEqual([{ a: '\\u0000' }]);
  });
});

describe('decodeUtf8', () => {
  async function decodeAll(bytes: Buffer): Promise<{ text: string; error?: string }> {
    let expected: { text: string; error?: string } | undefined;
    for (const [label, chunks] of [['whole', [bytes]] as [string, Buffer[]], ...chunkings(bytes, Buffer.alloc(0))]) {
      let text = '';
      let error: string | undefined;
      try {
        for await (const piece of decodeUtf8(feed(chunks))) {
          expect(piece.length, 'no empty chunks').toBeGreaterThan(0);
          text += piece;
        }
      } catch (err) {
        if (!(err instanceof IngestError)) throw err;
        error = err.message;
      }
      const got = error === undefined ? { text } : { text: '', error };
      if (expected === undefined) expected = got;
      else expect(got, `${label} of ${bytes.toString('hex')}`).toEqual(expected);
    }
    return expected!;
  }
  const decodeError = async (bytes: Buffer) => {
    const { error } = await decodeAll(bytes);
    expect(error, bytes.toString('hex')).toBeDefined();
    return error!;
  };

  it('decodes multi-byte characters split across chunks at every position', async () => {
    const text = 'ascii é ß ☃ € 😀 𝄞 \u2028 end\n';
    expect(await decodeAll(Buffer.from(text))).toEqual({ text });
  });

  it('strips a leading BOM (also when split), and only a leading one', async () => {
    expect(await decodeAll(Buffer.from('\uFEFFa,b\n'))).toEqual({ text: 'a,b\n' });
    expect(await decodeAll(Buffer.from('a\uFEFFb'))).toEqual({ text: 'a\uFEFFb' });
    expect(await decodeAll(Buffer.from('\uFEFF'))).toEqual({ text: '' });
  });

  it('gives nothing for no bytes', async () => {
    expect(await decodeAll(Buffer.alloc(0))).toEqual({ text: '' });
  });

  it('fails on invalid UTF-8, naming the byte and line', async () => {
    expect(await decodeError(Buffer.from([0x61, 0xff, 0x62]))).toBe(
      'the file is not valid UTF-8: invalid byte sequence 0xFF at byte 1 (line 1)',
    );
    expect(await decodeError(Buffer.concat([Buffer.from('a\nbé\n'), Buffer.from([0xe2, 0x41])]))).toBe(
      'the file is not valid UTF-8: invalid byte sequence 0xE2 0x41 at byte 6 (line 3)',
    );
    // A Latin-1 file.
    expect(await decodeError(Buffer.from('id,name\n1,caf\xe9\n', 'latin1'))).toBe(
      'the file is not valid UTF-8: invalid byte sequence 0xE9 0x0A at byte 13 (line 2)',
    );
    expect(await decodeError(Buffer.from([0x61, 0xf0, 0x9f, 0x98, 0x41]))).toMatch(/sequence 0xF0 0x9F 0x98 0x41 at byte 1 \(line 1\)$/);
    // Overlong encodings, surrogates, code points past U+10FFFF, lone continuation bytes.
    for (const bad of [
      [0xc0, 0x80],
      [0xe0, 0x80, 0x80],
      [0xed, 0xa0, 0x80],
      [0xf4, 0x90, 0x80, 0x80],
      [0xf5],
      [0x80],
      [0xf0, 0x9f, 0x41],
    ]) {
      expect(await decodeError(Buffer.from([0x78, 0x0a, ...bad, 0x79])), String(bad)).toMatch(
        /^the file is not valid UTF-8: .* at byte 2 \(line 2\)$/,
      );
    }
  });

  it('fails on a NUL byte, naming the byte and line', async () => {
    expect(await decodeError(Buffer.from('ab\ncd\0e'))).toBe(
      'the file contains a NUL byte at byte 5 (line 2): it looks binary, not CSV or JSON text',
    );
    // Whichever comes first is reported.
    expect(await decodeError(Buffer.from([0x61, 0x00, 0xff]))).toMatch(/NUL byte at byte 1/);
    expect(await decodeError(Buffer.from([0x61, 0xff, 0x00]))).toMatch(/not valid UTF-8.* at byte 1/);
  });

  it('fails on a file that ends inside a multi-byte character', async () => {
    const snowman = Buffer.from('☃');
    expect(await decodeError(Buffer.concat([Buffer.from('ab\nc'), snowman.subarray(0, 2)]))).toBe(
      'the file is not valid UTF-8: it ends inside a multi-byte character starting at byte 4 (line 2; truncated?)',
    );
    expect(await decodeError(Buffer.from([0xf0, 0x9f, 0x98]))).toMatch(/ends inside a multi-byte character starting at byte 0 \(line 1;/);
  });
});

describe('readRecords', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'intake-parsers-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const file = (name: string, content: string | Buffer) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };
  async function readAll(path: string, format: 'csv' | 'json' | 'ndjson') {
    const out: ParsedRecord[] = [];
    for await (const record of readRecords(fileInput(path), format)) {
      if (record.error !== undefined) throw new IngestError(record.error);
      out.push(withoutRaw(record));
    }
    return out;
  }

  it('reads a CSV file (with BOM and CRLF)', async () => {
    const path = file('a.csv', '\uFEFFid,name\r\n1,"Ann, A."\r\n2,Bob\r\n');
    expect(await readAll(path, 'csv')).toEqual([
      { data: { id: '1', name: 'Ann, A.' }, line: 2 },
      { data: { id: '2', name: 'Bob' }, line: 3 },
    ]);
  });

  it('reads a JSON file, array or {"records": [...]}', async () => {
    expect(await readAll(file('a.json', '[\n{"a":1},\n{"a":"é"}\n]\n'), 'json')).toEqual([
      { data: { a: 1 }, line: 2 },
      { data: { a: 'é' }, line: 3 },
    ]);
    expect(await readAll(file('b.json', '\uFEFF{"meta":{},"records":[{"a":1}]}'), 'json')).toEqual([{ data: { a: 1 }, line: 1 }]);
  });

  it('reads an NDJSON file', async () => {
    expect(await readAll(file('a.ndjson', '{"a":1}\n\n{"a":2}'), 'ndjson')).toEqual([
      { data: { a: 1 }, line: 1 },
      { data: { a: 2 }, line: 3 },
    ]);
  });

  it('reads files larger than one read chunk, with characters across chunk edges', async () => {
    const rows = Array.from({ length: 6000 }, (_, i) => ({ id: i, s: `é☃😀 "q" ] } , \\ ${'x'.repeat(i % 97)}` }));
    const json = await readAll(file('big.json', JSON.stringify({ meta: { s: ']' }, records: rows }, null, 1)), 'json');
    expect(json.map((r) => r.data)).toEqual(rows);
    const ndjson = await readAll(file('big.ndjson', rows.map((r) => JSON.stringify(r)).join('\r\n')), 'ndjson');
    expect(ndjson.map((r) => r.data)).toEqual(rows);
    expect(ndjson[5999]!.line).toBe(6000);
    const csv = 'id,s\n' + rows.map((r) => `${r.id},"${r.s.replace(/"/g, '""')}"`).join('\n');
    const parsed = await readAll(file('big.csv', csv), 'csv');
    expect(parsed.map((r) => r.data)).toEqual(rows.map((r) => ({ id: String(r.id), s: r.s })));
  });

  it('reads bytes that are not UTF-8 after nothing but ASCII as Windows-1252, and fails on them after UTF-8 text', async () => {
    const decoded = async (bytes: Buffer) => {
      const found: string[] = [];
      let text = '';
      for await (const piece of decodeText(
        (async function* () {
          yield bytes.subarray(0, 64 * 1024);
          for (let at = 64 * 1024; at < bytes.length; at += 64 * 1024) yield bytes.subarray(at, at + 64 * 1024);
        })(),
        undefined,
        (encoding) => found.push(encoding),
      ))
        text += piece;
      return { found, text };
    };
    const latin = Buffer.concat([Buffer.from('name\n'), Buffer.from([0x4d, 0xfc, 0x6e]), Buffer.from('\n')]); // "Mün" in windows-1252
    expect(await decoded(latin)).toEqual({ found: ['utf-8', 'windows-1252'], text: 'name\nMün\n' });
    const late = Buffer.concat([Buffer.from(`a\n${'x'.repeat(300 * 1024)}\n`), Buffer.from([0xff]), Buffer.from('\n')]);
    expect(await decoded(late)).toEqual({ found: ['utf-8', 'windows-1252'], text: `a\n${'x'.repeat(300 * 1024)}\nÿ\n` });
    const mixed = Buffer.concat([Buffer.from('a\nZoë\n'), Buffer.from([0xff]), Buffer.from('\n')]);
    await expect(readAll(file('mixed.csv', mixed), 'csv')).rejects.toThrow(
      new IngestError(
        'the file is not valid UTF-8: invalid byte sequence 0xFF at byte 7 (line 3); it looks like windows-1252: retry with encoding=windows-1252',
      ),
    );
    // Control bytes are not text: not read as Windows-1252 either.
    await expect(readAll(file('binary.csv', Buffer.from([0x61, 0x0a, 0xff, 0x01, 0x0a])), 'csv')).rejects.toThrow(/not valid UTF-8/);
    await expect(readAll(file('nul.csv', 'a,b\n1,\0\n'), 'csv')).rejects.toBeInstanceOf(IngestError);
  });

  it('reads the encoding it is given, and UTF-16 by its byte order mark', async () => {
    const latin = Buffer.from([...Buffer.from('name\n'), 0x4d, 0xfc, 0x6e, 0x0a, 0xa4, 0x0a]); // "Mün", then "¤" in windows-1252 but "€" in iso-8859-15
    const names = async (path: string, encoding?: Encoding) => {
      const out: unknown[] = [];
      for await (const r of readRecords(fileInput(path), 'csv', undefined, undefined, { encoding })) out.push(r.data?.name ?? r.error);
      return out;
    };
    expect(await names(file('w1252.csv', latin), 'windows-1252')).toEqual(['Mün', '¤']);
    expect(await names(file('iso.csv', latin), 'iso-8859-15')).toEqual(['Mün', '€']);
    expect(await names(file('le.csv', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('name\nZoë\n', 'utf16le')])))).toEqual(['Zoë']);
    expect(await names(file('be.csv', Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from('name\n😀\n', 'utf16le').swap16()])))).toEqual([
      '😀',
    ]);
    await expect(names(file('w1252-nul.csv', Buffer.from('name\na\0b\n')), 'windows-1252')).rejects.toThrow(
      new IngestError('the file contains a NUL character (character 6 read as windows-1252): it is not windows-1252 text, or not text'),
    );
  });

  it('fails with an IngestError on bad content, for every format', async () => {
    await expect(readAll(file('bad2.csv', 'a,b\n1\n2,3\n'), 'csv')).rejects.toThrow(/CSV error on line 2/);
    await expect(readAll(file('bad2.json', '[{"a":1},]'), 'json')).rejects.toBeInstanceOf(IngestError);
    await expect(readAll(file('bad2.ndjson', '{}\n[]'), 'ndjson')).rejects.toThrow('line 2 is an array, expected a JSON object');
  });

  it('can be stopped early', async () => {
    const paths = {
      csv: file('many.csv', 'a\n' + '1\n'.repeat(300_000)),
      json: file('many.json', '[' + '{"a":1},'.repeat(100_000) + '{"a":1}]'),
      ndjson: file('many.ndjson', '{"a":1}\n'.repeat(100_000)),
    };
    for (const format of ['csv', 'json', 'ndjson'] as const) {
      let n = 0;
      for await (const _ of readRecords(fileInput(paths[format]), format)) if (++n === 3) break;
      expect(n).toBe(3);
    }
  });
});

describe('an Excel workbook that would not fit in memory', () => {
  it('fails when its shared strings pass the bound, in number or in characters, before they are held', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'intake-xlsx-'));
    try {
      const sst = (body: string) =>
        `<?xml version="1.0" encoding="UTF-8"?>\n<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">${body}</sst>`;
      const many = join(dir, 'many.xlsx');
      writeFileSync(many, xlsxOf({ S: [['a'], [1]] }, { sharedStringsXml: sst('<si/>'.repeat(8 * 1024 ** 2 + 1)) }));
      const long = join(dir, 'long.xlsx');
      writeFileSync(long, xlsxOf({ S: [['a'], [1]] }, { sharedStringsXml: sst(`<si><t>${'x'.repeat(129 * 1024 ** 2)}</t></si>`) }));
      for (const path of [many, long]) {
        const read = async () => {
          // Shared strings this repetitive compress far past MAX_DECOMPRESSION_RATIO: that bound is another test's.
          for await (const _ of readRecords(fileInput(path), 'xlsx', undefined, { ...DEFAULT_LIMITS, maxDecompressionRatio: 0 })) {
            // reading
          }
        };
        await expect(read()).rejects.toThrow(
          "the workbook's shared strings hold more than 8388608 strings or 134217728 characters: save the sheet as CSV instead",
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('a CSV record: its columns, values and text in the file order (issue 23, items 0, 3, 9)', () => {
  /** Every item of a CSV (records and row errors), the same in every chunking: what a dataset loads from each. */
  async function items(text: string, dialect: CsvDialect = {}) {
    const read = async (chunks: string[]) => {
      const out: unknown[] = [];
      for await (const r of parseCsv(feed(chunks), undefined, dialect)) {
        out.push(
          r.error === undefined
            ? { columns: r.columns, values: r.values, text: r.text, line: r.line }
            : { columns: r.columns, error: r.error, excerpt: r.excerpt },
        );
      }
      return out;
    };
    const expected = await read([text]);
    for (const [label, chunks] of chunkings(text, '')) expect(await read(chunks), label).toEqual(expected);
    return expected;
  }

  it('keeps each header name with its own values, whatever the names (digits, __proto__, repeated, empty)', async () => {
    expect(await items('a,2,b\nx,y,z\n')).toEqual([{ columns: ['a', '2', 'b'], values: ['x', 'y', 'z'], text: 'x,y,z', line: 2 }]);
    expect(await items('b,10,1,__proto__,,a,a\n1,2,3,4,5,6,7')).toEqual([
      {
        columns: ['b', '10', '1', '__proto__', 'column_5', 'a', 'a_2'],
        values: ['1', '2', '3', '4', '5', '6', '7'],
        text: '1,2,3,4,5,6,7',
        line: 2,
      },
    ]);
  });

  it('gives a row error the header, so a bad first row does not hide it', async () => {
    expect(await items('id,v\n1\n2,b\n')).toEqual([
      { columns: ['id', 'v'], error: 'CSV error on line 2: expected 2 fields as in the header, found 1', excerpt: '1' },
      { columns: ['id', 'v'], values: ['2', 'b'], text: '2,b', line: 3 },
    ]);
  });

  it('shows a bad row as written: its own delimiter, quotes and tabs', async () => {
    expect(await items('a;b;c\n"x;1";8,493;25;9\n1;2;3\n')).toEqual([
      { columns: ['a', 'b', 'c'], error: 'CSV error on line 2: expected 3 fields as in the header, found 4', excerpt: '"x;1";8,493;25;9' },
      { columns: ['a', 'b', 'c'], values: ['1', '2', '3'], text: '1;2;3', line: 3 },
    ]);
    const [bad] = await items('a\tb\n1\t2\t3\n4\t5\n', { delimiter: '\t' });
    expect(bad).toMatchObject({ excerpt: '1\t2\t3' });
    // A record over several lines that does not fit is shown whole, its line breaks as spaces;
    // a long one is cut.
    const [multi] = await items('a,b\n"x\ny",2,3\n4,5\n');
    expect(multi).toMatchObject({ excerpt: '"x y",2,3' });
    const [long] = await items(`a,b\n${'9,'.repeat(200)}9\n1,2\n`);
    expect(long).toMatchObject({ excerpt: `${'9,'.repeat(59)}9…` });
  });
});
