import { describe, expect, it } from 'vitest';
import { parseCsv, type CsvDialect, type CsvReport } from '../src/formats/csv.js';
import { DEFAULT_LIMITS } from '../src/formats/limits.js';
import { findTable, joinHeader, sniffCsv, tableWidth, type Delimiter, type Escape, type Quote } from '../src/formats/sniff.js';
import { random } from './random.js';

async function* feed(chunks: string[]): AsyncGenerator<string> {
  for (const chunk of chunks) yield chunk;
}

interface Read {
  /** Records as [line, values], row errors as their message. */
  rows: unknown[];
  report: CsvReport;
  columns: readonly string[] | undefined;
  emptyQuoted: (readonly number[] | undefined)[];
}

/** Everything parseCsv gives for a text, checked to be the same whole, in 1-character chunks and split in two. */
async function read(text: string, dialect: CsvDialect = {}, limits = DEFAULT_LIMITS): Promise<Read> {
  let first: Read | undefined;
  const halves = [text.slice(0, text.length >> 1), text.slice(text.length >> 1)];
  for (const chunks of [[text], halves, text.length < 400 ? [...text] : halves]) {
    const report = {} as CsvReport;
    const rows: unknown[] = [];
    const emptyQuoted: (readonly number[] | undefined)[] = [];
    let columns: readonly string[] | undefined;
    for await (const r of parseCsv(feed(chunks), limits, dialect, report)) {
      columns = r.columns;
      if (r.error !== undefined) rows.push(r.error);
      else {
        rows.push([r.line, r.values]);
        emptyQuoted.push((r as { emptyQuoted?: readonly number[] }).emptyQuoted);
      }
    }
    const got = { rows, report, columns, emptyQuoted };
    if (first) expect(got, `${chunks.length} chunks of ${JSON.stringify(text.slice(0, 60))}`).toEqual(first);
    first = got;
  }
  return first!;
}

const values = async (text: string, dialect: CsvDialect = {}) => (await read(text, dialect)).rows;

describe('sniffCsv', () => {
  it('scores candidate dialects by consistent rows and typed cells', () => {
    const d = (text: string, given: CsvDialect = {}) => {
      const s = sniffCsv(text, given);
      return `${JSON.stringify(s.delimiter)} ${s.quote} ${s.escape} ${s.line_ending} ${s.width}`;
    };
    expect(d('a,b,c\n1,2,3\n4,5,6\n')).toBe('"," " double LF 3');
    expect(d('a;b;c\r\n1,5;2,25;3\r\n4;5;6\r\n')).toBe('";" " double CRLF 3');
    expect(d('a\tb\n1\t2\n')).toBe('"\\t" " double LF 2');
    expect(d('a|b\r1|2\r')).toBe('"|" " double CR 2');
    // Space-delimited: runs of spaces, aligned columns.
    expect(d('id   name    price\n1    apple   2.5\n22   pear    3\n')).toBe('" " " double LF 3');
    // Text with spaces in a comma file stays a comma file.
    expect(d('id,note\n1,a long sentence here\n2,and another one\n')).toBe('"," " double LF 2');
    expect(d('a, b, c\n1, 2, 3\n')).toBe('", " " double LF 3');
    expect(d("name,city\n'Smith, J','Paris'\n'Doe, A','Rome'\n")).toBe('"," \' double LF 2');
    expect(d('id,note\n1,"say \\"hi\\", then go"\n2,"a \\"b\\""\n')).toBe('"," " backslash LF 2');
    // A single column, one line, nothing.
    expect(d('name\nAda Lovelace\nGrace Hopper\n')).toBe('"," " double LF 1');
    expect(d('one line')).toBe('"," " double LF 1');
    expect(d('')).toBe('"," " double LF 1');
    // What is given wins.
    expect(d('a;b\n1;2\n', { delimiter: '|', quote: "'", escape: 'backslash' })).toBe('"|" \' backslash LF 1');
  });

  it('counts numbers, dates and words as typed cells: a European export sniffs as ;', () => {
    const text = 'Datum;Betrag;Kunde\n31.12.2025;8.493,25;Müller, K.\n01.01.2026;16,18 €;Schmidt\n';
    expect(sniffCsv(text, {}).delimiter).toBe(';');
    expect(sniffCsv('price|when\n$74.69|2025-01-02\n1,234.5|2025-01-03\n', {}).delimiter).toBe('|');
  });
});

describe('findTable and joinHeader', () => {
  const rows = (...lines: string[]) => lines.map((l, i) => ({ line: i + 1, fields: l.split(',') }));

  it('finds the preamble, a header over several rows, or none', () => {
    expect(findTable(rows('Report for 2025', 'id,name', '1,a'), 2, {})).toMatchObject({ skipLines: 1, headerRows: 1 });
    expect(findTable(rows('Price,,Qty', 'EUR,USD,', '1.5,2,3', '4,5,6'), 3, {})).toMatchObject({ skipLines: 0, headerRows: 2 });
    expect(findTable(rows('1,2025-01-01', '2,2025-01-02'), 2, {})).toMatchObject({ skipLines: 0, headerRows: 0 });
    expect(findTable(rows('id,name', 'x,y'), 2, {})).toMatchObject({ skipLines: 0, headerRows: 1 });
    expect(findTable(rows('note', 'id,name', '1,a'), 2, { headerRow: 1 })).toMatchObject({ skipLines: 0, headerRows: 1 });
    expect(findTable(rows('1,2', '3,4'), 2, { header: true })).toMatchObject({ skipLines: 0, headerRows: 1 });
    // A header over three rows, merged cells written empty: the body's types are read under it.
    const weather = rows(
      'Station,Temperature,,Precipitation',
      ',Min,Max,Total',
      ',°C,°C,mm',
      'Berlin,-2.5,4.1,38.2',
      'Hamburg,-1.0,5.3,61.0',
    );
    expect(findTable(weather, 4, {})).toEqual({ skipLines: 0, headerRows: 3, kinds: [undefined, 'number', 'number', 'number'] });
    // Data rows of text with empty cells under the header are data.
    expect(findTable(rows('name,note,n', 'x y,,a', ',b,c', 'z,w,1'), 3, {})).toMatchObject({ headerRows: 1 });
  });

  it('takes the table for the wide, consistent block, not a preamble or footer of another width', () => {
    // key;value lines above a wider table, as many or fewer: the table.
    expect(tableWidth([2, 2, 2, 2, 5, 5, 5, 5])).toBe(5);
    expect(tableWidth([2, 2, 2, 3, 3])).toBe(3);
    // More of them than the table's cells: the table only when a blank line sets it apart.
    expect(tableWidth([2, 2, 2, 2, 2, 3, 3])).toBe(2);
    expect(tableWidth([2, 2, 2, 2, 2, 3, 3], [false, false, false, false, false, true, false])).toBe(3);
    // A long table under a short preamble; a footer; one odd row; ragged rows inside.
    expect(tableWidth([1, 1, 1, ...Array<number>(1000).fill(3)])).toBe(3);
    expect(tableWidth([3, 3, 3, 3, 3, 1, 4, 4])).toBe(3);
    expect(tableWidth([3, 3, 4, 3, 3])).toBe(3);
    expect(tableWidth([3, 3, 4, 3, 4, 3, 4])).toBe(3);
    expect(tableWidth([])).toBe(1);
  });

  it('joins a header written over rows, a spanning name filling the cells to its right', () => {
    expect(
      joinHeader([
        ['Price', '', 'Qty'],
        ['EUR', 'USD', ''],
      ]),
    ).toEqual(['Price EUR', 'Price USD', 'Qty']);
    expect(joinHeader([['a', 'b']])).toEqual(['a', 'b']);
    expect(
      joinHeader([
        ['Name', 'Age'],
        ['(text)', '(years)'],
      ]),
    ).toEqual(['Name (text)', 'Age (years)']);
  });
});

describe('parseCsv on messy files', () => {
  it('skips title lines and notes above the header, and reports them', async () => {
    const got = await read('Sales report 2025\nSource: ERP export\n\nid,price,qty\n1,2.5,3\n2,3.5,4\n');
    expect(got.rows).toEqual([
      [5, ['1', '2.5', '3']],
      [6, ['2', '3.5', '4']],
    ]);
    expect(got.report).toEqual({
      delimiter: ',',
      quote: '"',
      escape: 'double',
      line_ending: 'LF',
      header_row: 4,
      header_rows: 1,
      columns: ['id', 'price', 'qty'],
      skipped: [{ from: 1, to: 3, why: 'above the table', text: 'Sales report 2025' }],
      skipped_lines: 3,
    });
    // An Excel title row: one cell over a wider table.
    const excel = await read('Quarterly sales by region,,,\nregion,q1,q2,q3\nnorth,1,2,3\nsouth,4,5,6\n');
    expect(excel.report.header_row).toBe(2);
    expect(excel.rows[0]).toEqual([3, ['north', '1', '2', '3']]);
  });

  it('joins a header written over two rows', async () => {
    const got = await read('Price,,Qty\nEUR,USD,\n1.5,2,3\n4,5,6\n');
    expect(got.report.columns).toEqual(['Price EUR', 'Price USD', 'Qty']);
    expect(got.report.header_rows).toBe(2);
    expect(got.columns).toEqual(['Price EUR', 'Price USD', 'Qty']);
    expect(got.rows).toEqual([
      [3, ['1.5', '2', '3']],
      [4, ['4', '5', '6']],
    ]);
  });

  it('detects a file without a header: its first row is typed like the rows below', async () => {
    const got = await read('1,2025-01-01,3.5\n2,2025-01-02,4.5\n');
    expect(got.report.header_row).toBeNull();
    expect(got.report.header_rows).toBe(0);
    expect(got.columns).toEqual(['column_1', 'column_2', 'column_3']);
    expect(got.rows).toEqual([
      [1, ['1', '2025-01-01', '3.5']],
      [2, ['2', '2025-01-02', '4.5']],
    ]);
    // Years over other numbers are names.
    expect((await read('region,2024,2025\nnorth,10.5,12\nsouth,7,8.25\n')).report.columns).toEqual(['region', '2024', '2025']);
    // Text columns can't tell: the first row is the header, unless said otherwise.
    expect((await read('a,b\nc,d\n')).report.columns).toEqual(['a', 'b']);
    expect((await read('a,b\nc,d\n', { header: false })).rows).toEqual([
      [1, ['a', 'b']],
      [2, ['c', 'd']],
    ]);
  });

  it('ends the table at trailing notes, a totals line of another shape and a second table', async () => {
    const notes = await read('id,name,amount\n1,a,5\n2,b,6\nTotal,11\n\nGenerated by X\n');
    expect(notes.rows).toEqual([
      [2, ['1', 'a', '5']],
      [3, ['2', 'b', '6']],
    ]);
    expect(notes.report.skipped).toEqual([{ from: 4, to: 6, why: 'after the table', text: 'Total,11' }]);
    expect(notes.report.skipped_lines).toBe(3);
    // A second table, longer than notes are, after a blank line: never merged, never row errors.
    const second = ['id,name,amount'];
    for (let i = 1; i <= 150; i++) second.push(`${i},n${i},${i * 2}`);
    second.push('', 'code,label');
    for (let i = 0; i < 100; i++) second.push(`c${i},label ${i}`);
    const two = await read(second.join('\n') + '\n');
    expect(two.rows).toHaveLength(150);
    expect(two.rows.at(-1)).toEqual([151, ['150', 'n150', '300']]);
    expect(two.report.skipped).toEqual([{ from: 153, to: 253, why: 'after the table', text: 'code,label' }]);
  });

  it('ends the table only at a row that does not look like data: a data-like last row is a row error', async () => {
    // One field more, numbers where numbers are: a bad row, not a note.
    expect(await values('id,name,n\n1,a,5\n2,b,6\n3,c,7,extra\n')).toEqual([
      [2, ['1', 'a', '5']],
      [3, ['2', 'b', '6']],
      'CSV error on line 4: expected 3 fields as in the header, found 4',
    ]);
    expect(await values('id,name,n\n1,a,5\n2,b\n', { ragged: 'ignore_extra' })).toEqual([
      [2, ['1', 'a', '5']],
      'CSV error on line 3: expected 3 fields as in the header, found 2',
    ]);
    // Words where the column holds dates, far fewer fields, or after a blank line: the end.
    const totals = await read('date;cat;what;amount\n03.01.2026;a;x;45,20\n05.01.2026;b;y;12,90\nTotal;;58,10\n');
    expect(totals.rows).toHaveLength(2);
    expect(totals.report.skipped).toEqual([{ from: 4, to: 4, why: 'after the table', text: 'Total;;58,10' }]);
    expect((await read('a,b,c,d\n1,2,3,4\nSource: x\n')).report.skipped_lines).toBe(1);
    // Fewer fields, but a number under numbers: two values run together, a row error.
    expect(await values('n,x\n1,2.5\n3,4.5\n56.5\n')).toEqual([
      [2, ['1', '2.5']],
      [3, ['3', '4.5']],
      'CSV error on line 4: expected 2 fields as in the header, found 1',
    ]);
    expect((await read('a,b,c\n1,2,3\n\n4,5,6,7\n')).report.skipped_lines).toBe(1);
  });

  it('finds the table under a preamble of key;value lines, and a narrower header under ragged=ignore_extra', async () => {
    const bank = await read(
      '"Kontoumsätze";\n"Konto:";"DE89"\n"Zeitraum:";"12.2025"\n"Stand:";"8.493,25 EUR"\n\n"Tag";"Empfänger";"Betrag"\n"01.12.2025";"Stadtwerke";"-84,00"\n',
    );
    expect(bank.report.header_row).toBe(6);
    expect(bank.rows).toEqual([[7, ['01.12.2025', 'Stadtwerke', '-84,00']]]);
    const extra = await read('id,name,score\n1,Ada,9.5,\n2,Grace,8.0,,\n3,Linus,7.25,note\n', { ragged: 'ignore_extra' });
    expect(extra.report.columns).toEqual(['id', 'name', 'score']);
    expect(extra.rows).toHaveLength(3);
  });

  it('reads empty fields with a space delimiter (a space each where a row is short), under # comments', async () => {
    const got = await read("# run 17\n# operator: mk\nid name note\n1 'a b' x\n 'c' y\n3 'd' \n4  z\n");
    expect(got.report.delimiter).toBe(' ');
    expect(got.report.header_row).toBe(3);
    expect(got.rows).toEqual([
      [4, ['1', 'a b', 'x']],
      [5, ['', 'c', 'y']],
      [6, ['3', 'd', '']],
      [7, ['4', '', 'z']],
    ]);
    // Aligned columns: runs of spaces are one delimiter.
    expect((await read('x   y\n10  2.5\n200 3.25\n')).rows).toEqual([
      [2, ['10', '2.5']],
      [3, ['200', '3.25']],
    ]);
  });

  it('takes a backslash escape when every backslash is doubled, doubled quotes when one stands alone', async () => {
    expect((await read('path,n\n"C:\\\\temp",1\n"D:\\\\x",2\n')).rows).toEqual([
      [2, ['C:\\temp', '1']],
      [3, ['D:\\x', '2']],
    ]);
    expect((await read('path,n\n"C:\\temp",1\n"\\\\srv\\x",2\n')).rows).toEqual([
      [2, ['C:\\temp', '1']],
      [3, ['\\\\srv\\x', '2']],
    ]);
  });

  it('makes rows of another shape inside the table row errors (ragged=error), or pads or cuts them', async () => {
    const text = 'a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n';
    expect(await values(text)).toEqual([
      [2, ['1', '2', '3']],
      'CSV error on line 3: expected 3 fields as in the header, found 2',
      'CSV error on line 4: expected 3 fields as in the header, found 4',
      [5, ['10', '11', '12']],
    ]);
    expect(await values(text, { ragged: 'pad' })).toEqual([
      [2, ['1', '2', '3']],
      [3, ['4', '5', '']],
      'CSV error on line 4: expected 3 fields as in the header, found 4',
      [5, ['10', '11', '12']],
    ]);
    expect(await values(text, { ragged: 'ignore_extra' })).toEqual([
      [2, ['1', '2', '3']],
      'CSV error on line 3: expected 3 fields as in the header, found 2',
      [4, ['6', '7', '8']],
      [5, ['10', '11', '12']],
    ]);
    // More ragged rows in a row than notes would be: row errors, not the table's end.
    const many = ['a,b'];
    for (let i = 0; i < 100; i++) many.push(`${i},x`);
    for (let i = 0; i < 70; i++) many.push(`${i}`);
    many.push('8,9');
    const got = await values(many.join('\n'));
    expect(got).toHaveLength(171);
    expect(got.filter((r) => typeof r === 'string')).toHaveLength(70);
    expect(got.at(-1)).toEqual([172, ['8', '9']]);
  });

  it('gives a header-only file its columns and no records', async () => {
    const got = await read('id,name,price\n');
    expect(got.rows).toEqual([]);
    expect(got.report.columns).toEqual(['id', 'name', 'price']);
    expect(got.report.header_row).toBe(1);
  });

  it('lists the fields written "" (an empty string, where an empty field is NULL)', async () => {
    const got = await read('a,b,c\n"",,x\n1,"",""\n');
    expect(got.rows).toEqual([
      [2, ['', '', 'x']],
      [3, ['1', '', '']],
    ]);
    expect(got.emptyQuoted).toEqual([[0], [1, 2]]);
  });

  it('takes the header row and lines to skip when given', async () => {
    expect((await read('x\ny\nid,name\n1,a\n', { headerRow: 3 })).rows).toEqual([[4, ['1', 'a']]]);
    expect((await read('x\ny\nid,name\n1,a\n', { skipLines: 2 })).report.header_row).toBe(3);
  });

  it("reads ' quotes, backslash escapes, space and ', ' delimiters", async () => {
    expect(await values("id,name\n1,'Smith, J'\n2,'O''Brien'\n")).toEqual([
      [2, ['1', 'Smith, J']],
      [3, ['2', "O'Brien"]],
    ]);
    expect(await values('id;note\n1;"say \\"hi\\""\n2;"C:\\\\temp"\n', { escape: 'backslash' })).toEqual([
      [2, ['1', 'say "hi"']],
      [3, ['2', 'C:\\temp']],
    ]);
    expect(await values('id  name   price\n1   apple  2.5\n  2 pear   3  \n')).toEqual([
      [2, ['1', 'apple', '2.5']],
      [3, ['2', 'pear', '3']],
    ]);
    expect(await values('a, b, c\n1, "x, y", 3\n')).toEqual([[2, ['1', 'x, y', '3']]]);
  });
});

describe('parseCsv on adversarial input', () => {
  it('quotes everywhere', async () => {
    expect(await values('a,b\n"""",""""""\n"x""y","""z"""\n')).toEqual([
      [2, ['"', '""']],
      [3, ['x"y', '"z"']],
    ]);
    const chaos = await values('a,b\n"",""\n""","\n",\n"\n1,2\n');
    expect(chaos.at(-1)).toEqual([6, ['1', '2']]);
  });

  it('a one-column file, one line, only blank lines, a BOM, CR-only line endings', async () => {
    expect(await values('name\nAda Lovelace\nGrace Hopper\n')).toEqual([
      [2, ['Ada Lovelace']],
      [3, ['Grace Hopper']],
    ]);
    expect((await read('just one line')).report.columns).toEqual(['just one line']);
    expect(await values('\n\n\r\n\n')).toEqual([]);
    const bom = await read('\uFEFFid,name\r\n1,a\r\n');
    expect(bom.columns).toEqual(['id', 'name']);
    expect(bom.report.line_ending).toBe('CRLF');
    const cr = await read('id,name\r1,"a\rb"\r2,c\r');
    expect(cr.rows).toEqual([
      [2, ['1', 'a\rb']],
      [4, ['2', 'c']],
    ]);
    expect(cr.report.line_ending).toBe('CR');
  });

  it("a delimiter inside quotes in a '-quoted file; a backslash at the end of the file", async () => {
    expect(await values("id;name\n1;'a;b'\n2;'c'\n")).toEqual([
      [2, ['1', 'a;b']],
      [3, ['2', 'c']],
    ]);
    expect(await values('a,b\n1,2\n3,"x\\', { escape: 'backslash' })).toEqual([
      [2, ['1', '2']],
      [3, ['3', '"x\\']],
    ]);
  });

  it('a huge unclosed quote past the limits: read again as a character, within bounded memory', async () => {
    const limits = { ...DEFAULT_LIMITS, maxFieldLength: 1000, maxRecordLength: 2000 };
    const lines = ['a,b', '1,"open'];
    for (let i = 0; i < 3000; i++) lines.push(`${i},v${i}`);
    const chunks = [];
    const text = lines.join('\n') + '\n';
    for (let i = 0; i < text.length; i += 500) chunks.push(text.slice(i, i + 500));
    const got: unknown[] = [];
    for await (const r of parseCsv(feed(chunks), limits)) got.push(r.error ?? r.values);
    expect(got).toHaveLength(3001);
    expect(got[0]).toEqual(['1', '"open']);
    expect(got[3000]).toEqual(['2999', 'v2999']);
    // On one line, past the limits: a row error, and the rest is read.
    const long = `a,b\n1,"${'x'.repeat(5000)}\n2,3\n`;
    const out: unknown[] = [];
    for await (const r of parseCsv(feed([long]), limits)) out.push(r.error ?? r.values);
    expect(out).toEqual(['CSV error on line 2: field 2 is longer than 1000 characters (MAX_FIELD_LENGTH)', ['2', '3']]);
  });
});

describe('parseCsv property: random tables in random dialects', () => {
  const DIALECTS: [Delimiter, Quote, Escape][] = [
    [',', '"', 'double'],
    [';', '"', 'double'],
    ['\t', '"', 'double'],
    ['|', '"', 'double'],
    [',', "'", 'double'],
    [';', '"', 'backslash'],
  ];
  const PIECES = ['a', 'Bob', '12', '3.5', '2025-01-02', ' ', '', 'x y', ',', ';', '|', '\t', '"', "'", '\\', '\n', '\r\n', 'é'];

  /** A table, its text in a dialect, and the line each row starts on. */
  function table(rnd: ReturnType<typeof random>, [delimiter, quote, escape]: [Delimiter, Quote, Escape], pieces = PIECES) {
    const width = 2 + rnd.int(4);
    const header = Array.from({ length: width }, (_, i) => `col${i}`);
    const rows = Array.from({ length: 3 + rnd.int(8) }, () =>
      Array.from({ length: width }, () => {
        let v = '';
        for (let n = rnd.int(3); n > 0; n--) v += rnd.pick(pieces);
        return v;
      }),
    );
    const special = new RegExp(`[${delimiter === '\t' ? '\\t' : delimiter}"'\\\\\\r\\n]|^ | $`);
    const write = (v: string) => {
      if (!special.test(v) && v !== '') return v;
      const inner = escape === 'backslash' ? v.replace(/\\/g, '\\\\').replaceAll(quote, `\\${quote}`) : v.replaceAll(quote, quote + quote);
      return quote + inner + quote;
    };
    const lines = [header, ...rows].map((r) => r.map(write).join(delimiter));
    return { header, rows, lines };
  }
  const lineOf = (lines: string[], k: number) => 1 + lines.slice(0, k).reduce((n, l) => n + (l.match(/\r\n|\r|\n/g)?.length ?? 0) + 1, 0);

  it('reads them back exactly', async () => {
    const rnd = random(25);
    for (let doc = 0; doc < 200; doc++) {
      const dialect = rnd.pick(DIALECTS);
      const { rows, lines } = table(rnd, dialect);
      const text = lines.join('\n') + '\n';
      const given: CsvDialect = { delimiter: dialect[0], quote: dialect[1], escape: dialect[2], header: true };
      const expected = rows.map((r, k) => [lineOf(lines, k + 1), r]);
      expect(await values(text, given), JSON.stringify(text)).toEqual(expected);
    }
  });

  it('with one pollution, reads the other rows exactly, and the polluted one exactly or as a row error', async () => {
    const rnd = random(2025);
    for (let doc = 0; doc < 200; doc++) {
      const dialect = rnd.pick(DIALECTS);
      // Values without line breaks: a stray quote next to a quoted line break is ambiguous to a
      // person too (which line does it belong to?).
      const { rows, lines } = table(
        rnd,
        dialect,
        PIECES.filter((p) => !/[\r\n]/.test(p)),
      );
      const [delimiter, quote] = dialect;
      const k = 1 + rnd.int(rows.length); // the polluted row (lines[k])
      const kind = rnd.int(4);
      const polluted = [...lines];
      let preamble = 0;
      if (kind === 0)
        polluted[k] = `${polluted[k]!}x${quote}y`; // a stray quote inside an unquoted field
      else if (kind === 1)
        polluted[k] = `${quote}${polluted[k]!}`; // an opening quote that never closes
      else if (kind === 2) polluted[k] = rnd.next() < 0.5 ? polluted[k]! + delimiter : polluted[k]!.replace(delimiter, '');
      else {
        polluted.unshift('Exported from the shop on 2025-01-02, all rights reserved');
        preamble = 1;
      }
      const text = polluted.join('\n') + '\n';
      const given: CsvDialect = { delimiter, quote, escape: dialect[2], header: preamble === 0 ? true : undefined };
      if (preamble) given.headerRow = 2;
      const got = await values(text, given);
      const at = (j: number) => lineOf(polluted, j + 1 + preamble);
      const others = rows.map((r, j) => [at(j), r]).filter((_, j) => kind === 3 || j !== k - 1);
      const clean = got.filter((r) => Array.isArray(r) && (kind === 3 || r[0] !== at(k - 1)));
      // The other rows come back exactly, in order.
      expect(
        clean.filter((r) => others.some((o) => JSON.stringify(o) === JSON.stringify(r))),
        JSON.stringify(text),
      ).toEqual(others);
      if (kind !== 3) {
        const mine = got.filter((r) => !others.some((o) => JSON.stringify(o) === JSON.stringify(r)));
        // The polluted row: recovered (its values as written, or as they were), or a row error on its line.
        for (const r of mine) {
          const line = typeof r === 'string' ? Number(/^CSV error on line (\d+):/.exec(r)?.[1]) : (r as [number])[0];
          expect(line, JSON.stringify(text)).toBeGreaterThanOrEqual(at(k - 1));
          expect(line, JSON.stringify(text)).toBeLessThan(at(k));
        }
      }
    }
  });
});
