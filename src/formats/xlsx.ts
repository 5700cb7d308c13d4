/**
 * Excel workbooks (.xlsx: Office Open XML in a zip). The zip is read by entry (yauzl) and the
 * sheet's XML streamed through a SAX parser (saxes), so a sheet of a million rows is never
 * held whole: only its shared strings (the workbook's table of distinct texts) are, up to a
 * bound. Rows come out as CSV records do: the first row names the columns, each value as
 * text (numbers as Excel stored them, dates as ISO 8601 by their cell format, booleans as
 * true/false, an error cell such as #N/A as empty), so a dataset infers their types the same way.
 */
import { posix } from 'node:path';
import { SaxesParser, type SaxesTagPlain } from 'saxes';
import type { InputLimits } from './limits.js';
import { CsvRecord, headerKeys } from './csv.js';
import { IngestError } from '../core/errors.js';
import { rowError, type ParsedRecord } from './record.js';
import type { Zip } from './zip.js';

// Distinct texts of a workbook held in memory while its sheet is read: in characters, and in
// number (an empty one still costs a slot).
const MAX_SHARED_STRING_CHARS = 128 * 1024 ** 2;
const MAX_SHARED_STRINGS = 8 * 1024 ** 2;
const MAX_EXCEL_COLUMNS = 16_384; // XFD

const REL_TYPE = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships/';

/** Runs a SAX parser over XML text given whole (the small parts of a workbook). */
function parseXml(
  xml: string,
  onOpen: (tag: SaxesTagPlain) => void,
  onText?: (text: string) => void,
  onClose?: (tag: SaxesTagPlain) => void,
): void {
  const parser = new SaxesParser();
  parser.on('opentag', onOpen);
  if (onText) parser.on('text', onText);
  if (onClose) parser.on('closetag', onClose);
  try {
    parser.write(xml).close();
  } catch (err) {
    throw new IngestError(`the workbook's XML is damaged: ${(err as Error).message}`);
  }
}

/** An attribute by its local name, whatever its namespace prefix (r:id, x:r …). */
function attribute(tag: SaxesTagPlain, local: string): string | undefined {
  for (const [name, value] of Object.entries(tag.attributes)) {
    if (name === local || name.endsWith(`:${local}`)) return value;
  }
  return undefined;
}

const localName = (tag: { name: string }) => tag.name.slice(tag.name.indexOf(':') + 1);

/** The relationships of a part: id → [type, target path in the zip]. */
async function relationships(zip: Zip, part: string): Promise<Map<string, { type: string; path: string }>> {
  const relsPath = posix.join(posix.dirname(part), '_rels', `${posix.basename(part)}.rels`);
  const entry = zip.find(relsPath);
  const rels = new Map<string, { type: string; path: string }>();
  if (!entry) return rels;
  parseXml(await zip.text(entry), (tag) => {
    if (localName(tag) !== 'Relationship') return;
    const target = attribute(tag, 'Target') ?? '';
    const path = target.startsWith('/') ? target.slice(1) : posix.normalize(posix.join(posix.dirname(part), target));
    rels.set(attribute(tag, 'Id') ?? '', { type: attribute(tag, 'Type') ?? '', path });
  });
  return rels;
}

// Built-in number formats that show dates or times (ECMA-376 18.8.30, and the East Asian ones).
const DATE_FORMAT_IDS = new Set([
  14, 15, 16, 17, 18, 19, 20, 21, 22, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 45, 46, 47, 50, 51, 52, 53, 54, 55, 56, 57, 58,
]);

/** What a number format shows a serial number as: a date (with or without a time), a time of day, or a number. */
type Shown = 'date' | 'time' | 'number';

function shownAs(id: number, code: string | undefined): Shown {
  if (code === undefined) return DATE_FORMAT_IDS.has(id) ? ([18, 19, 20, 21, 45, 46, 47].includes(id) ? 'time' : 'date') : 'number';
  // Quoted text, escaped characters and [colours] say nothing about the value; an elapsed time
  // ([h]:mm) stays a number of days.
  const bare = code
    .split(';')[0]!
    .replace(/"[^"]*"|\\.|_.|\*./g, '')
    .replace(/\[[^\]]*\]/g, '');
  if (/[dy]/i.test(bare)) return 'date';
  return /[hs]/i.test(bare) || /AM\/PM|A\/P/i.test(bare) ? 'time' : 'number';
}

/** How each cell style (the s attribute: an index into cellXfs) shows numbers. */
async function cellStyles(zip: Zip, path: string | undefined): Promise<Shown[]> {
  const entry = path === undefined ? undefined : zip.find(path);
  if (!entry) return [];
  const codes = new Map<number, string>();
  const formats: number[] = [];
  let inCellXfs = false;
  parseXml(
    await zip.text(entry),
    (tag) => {
      const name = localName(tag);
      if (name === 'numFmt') codes.set(Number(attribute(tag, 'numFmtId')), attribute(tag, 'formatCode') ?? '');
      else if (name === 'cellXfs') inCellXfs = true;
      else if (name === 'xf' && inCellXfs) formats.push(Number(attribute(tag, 'numFmtId') ?? 0));
    },
    undefined,
    (tag) => {
      if (localName(tag) === 'cellXfs') inCellXfs = false;
    },
  );
  return formats.map((id) => shownAs(id, codes.get(id)));
}

/** The workbook's shared strings (rich text runs joined; phonetic guides left out). */
async function sharedStrings(zip: Zip, path: string | undefined): Promise<string[]> {
  const entry = path === undefined ? undefined : zip.find(path);
  if (!entry) return [];
  const strings: string[] = [];
  let chars = 0;
  let current: string | null = null;
  let inText = false;
  let inPhonetic = false;
  const parser = new SaxesParser();
  parser.on('opentag', (tag) => {
    const name = localName(tag);
    if (name === 'si') current = '';
    else if (name === 't') inText = !inPhonetic;
    else if (name === 'rPh') inPhonetic = true;
  });
  const tooMany = () =>
    new IngestError(
      `the workbook's shared strings hold more than ${MAX_SHARED_STRINGS} strings or ${MAX_SHARED_STRING_CHARS} characters: save the sheet as CSV instead`,
    );
  parser.on('text', (text) => {
    if (!inText || current === null) return;
    if (chars + current.length + text.length > MAX_SHARED_STRING_CHARS) throw tooMany();
    current += text;
  });
  parser.on('closetag', (tag) => {
    const name = localName(tag);
    if (name === 't') inText = false;
    else if (name === 'rPh') inPhonetic = false;
    else if (name === 'si') {
      chars += current!.length;
      if (strings.length >= MAX_SHARED_STRINGS) throw tooMany();
      strings.push(current!);
      current = null;
    }
  });
  const decoder = new TextDecoder('utf-8', { fatal: true });
  try {
    for await (const chunk of zip.read(entry)) parser.write(decoder.decode(chunk, { stream: true }));
    parser.close();
  } catch (err) {
    if (err instanceof IngestError) throw err;
    throw new IngestError(`the workbook's shared strings are damaged: ${(err as Error).message}`);
  }
  return strings;
}

const DAY_MS = 86_400_000;
const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/**
 * An Excel serial date as ISO 8601: days since 1899-12-30 (so that Lotus's phantom
 * 1900-02-29, serial 60, falls where Excel shows it for every later day), or since 1904-01-01
 * in a 1904 workbook; the time of day to the millisecond, with no zone (read as UTC).
 */
export function serialToIso(serial: number, date1904: boolean, shown: 'date' | 'time'): string {
  const epoch = date1904 ? Date.UTC(1904, 0, 1) : Date.UTC(1899, 11, 30);
  const ms = Math.round(serial * DAY_MS);
  const at = new Date(epoch + (date1904 || serial >= 61 || serial < 1 ? ms : ms + DAY_MS));
  if (Number.isNaN(at.getTime()) || at.getUTCFullYear() > 9999) return String(serial); // past Excel's last day, 9999-12-31
  const time = `${pad(at.getUTCHours())}:${pad(at.getUTCMinutes())}:${pad(at.getUTCSeconds())}${at.getUTCMilliseconds() ? `.${pad(at.getUTCMilliseconds(), 3)}` : ''}`;
  if (shown === 'time' && serial < 1) return time;
  const day = `${pad(at.getUTCFullYear(), 4)}-${pad(at.getUTCMonth() + 1)}-${pad(at.getUTCDate())}`;
  return ms % DAY_MS === 0 ? day : `${day}T${time}`;
}

/** A cell reference's column, 0-based (C7 → 2), or -1 when it has none. */
function columnOf(ref: string | undefined): number {
  if (!ref) return -1;
  let column = 0;
  let i = 0;
  for (; i < ref.length; i++) {
    const c = ref.charCodeAt(i) | 0x20;
    if (c < 0x61 || c > 0x7a) break;
    column = column * 26 + (c - 0x60);
  }
  return i === 0 ? -1 : column - 1;
}

export interface WorkbookOptions {
  /** The sheet to read, by name (or 1-based position); the first by default. */
  sheet?: string;
  header?: boolean;
}

/** The records of one sheet of a workbook, in row order. */
export async function* parseXlsx(zip: Zip, limits: InputLimits, options: WorkbookOptions = {}): AsyncGenerator<ParsedRecord> {
  const root = await relationships(zip, '');
  const workbookPath = [...root.values()].find((rel) => rel.type.endsWith('/officeDocument'))?.path ?? 'xl/workbook.xml';
  const workbook = zip.find(workbookPath);
  if (!workbook) throw new IngestError('the file is a zip but not an Excel workbook (.xlsx): it has no workbook part');
  const sheets: { name: string; id: string }[] = [];
  let date1904 = false;
  parseXml(await zip.text(workbook), (tag) => {
    const name = localName(tag);
    if (name === 'sheet') sheets.push({ name: attribute(tag, 'name') ?? '', id: attribute(tag, 'id') ?? '' });
    else if (name === 'workbookPr') date1904 = ['1', 'true'].includes(attribute(tag, 'date1904') ?? '');
  });
  const rels = await relationships(zip, workbookPath);
  const wanted = options.sheet;
  const sheet =
    wanted === undefined
      ? sheets[0]
      : (sheets.find((s) => s.name === wanted) ??
        sheets.find((s) => s.name.toLowerCase() === wanted.toLowerCase()) ??
        (/^\d+$/.test(wanted) ? sheets[Number(wanted) - 1] : undefined));
  if (!sheet) {
    const names = sheets.map((s) => JSON.stringify(s.name)).join(', ');
    throw new IngestError(
      wanted === undefined ? 'the workbook has no sheets' : `the workbook has no sheet ${JSON.stringify(wanted)}: its sheets are ${names}`,
    );
  }
  const sheetEntry = zip.find(rels.get(sheet.id)?.path ?? '');
  if (!sheetEntry) throw new IngestError(`the workbook's sheet ${JSON.stringify(sheet.name)} is missing from the file`);
  const partOf = (type: string) =>
    [...rels.values()].find((rel) => rel.type === `${REL_TYPE}${type}` || rel.type.endsWith(`/${type}`))?.path;
  const styles = await cellStyles(zip, partOf('styles'));
  const strings = await sharedStrings(zip, partOf('sharedStrings'));
  yield* sheetRows(zip, sheetEntry, { strings, styles, date1904, limits, header: options.header ?? true, sheetName: sheet.name });
}

interface SheetContext {
  strings: string[];
  styles: Shown[];
  date1904: boolean;
  limits: InputLimits;
  header: boolean;
  sheetName: string;
}

async function* sheetRows(zip: Zip, entry: Parameters<Zip['read']>[0], context: SheetContext): AsyncGenerator<ParsedRecord> {
  const { strings, styles, date1904, limits } = context;
  const parser = new SaxesParser();
  const done: ParsedRecord[] = [];
  let keys: string[] | null = null;
  let hasProto = false;
  let rowNumber = 0;
  let cells: string[] = [];
  let cell: { column: number; type: string; style: number } | null = null;
  let text = '';
  let collecting = false; // inside <v> or an inline string's <t>
  let phonetic = false; // inside a phonetic guide (<rPh>), whose text is not the cell's
  let fault: IngestError | undefined;

  const cellValue = (): string => {
    const { type, style } = cell!;
    switch (type) {
      case 's': {
        if (text === '') return '';
        const value = strings[Number(text)];
        if (value === undefined)
          throw new IngestError(
            `${context.sheetName}!row ${rowNumber}: a cell refers to shared string ${text.slice(0, 20)}, which the workbook does not have`,
          );
        return value;
      }
      case 'b':
        return text === '1' ? 'true' : text === '0' ? 'false' : text;
      case 'e':
        return ''; // #N/A, #DIV/0! …: no value
      case 'inlineStr':
      case 'str':
      case 'd':
        return text;
      default: {
        const shown = styles[style] ?? 'number';
        if (shown === 'number' || text === '') return text;
        const serial = Number(text);
        return Number.isFinite(serial) && serial >= 0 ? serialToIso(serial, date1904, shown) : text;
      }
    }
  };

  /** A row error of the row being read (with the header, known by then, as its columns). */
  const problem = (message: string, values: string[]): ParsedRecord => ({
    ...rowError(rowNumber, message, values.join(',')),
    columns: keys ?? [],
  });

  const endRow = () => {
    let width = cells.length;
    while (width > 0 && (cells[width - 1] === undefined || cells[width - 1] === '')) width--;
    const values = Array.from({ length: width }, (_, i) => cells[i] ?? '');
    cells = [];
    if (width === 0) return; // an empty row, like a blank line
    if (keys === null) {
      if (width > limits.maxColumns)
        throw new IngestError(`the sheet's first row has more than ${limits.maxColumns} columns (MAX_COLUMNS)`);
      keys = context.header ? headerKeys(values) : values.map((_, i) => `column_${i + 1}`);
      hasProto = keys.includes('__proto__');
      if (context.header) return;
    }
    if (width > keys.length) {
      done.push(
        problem(
          `row ${rowNumber} has a value in column ${width}, beyond the ${keys.length} columns of the ${context.header ? 'header' : 'first row'}`,
          values,
        ),
      );
      return;
    }
    let length = 0;
    for (const value of values) {
      if (value.length > limits.maxFieldLength) {
        done.push(problem(`row ${rowNumber}: a cell is longer than ${limits.maxFieldLength} characters (MAX_FIELD_LENGTH)`, values));
        return;
      }
      length += value.length;
    }
    if (length > limits.maxRecordLength) {
      done.push(problem(`row ${rowNumber} is longer than ${limits.maxRecordLength} characters (MAX_RECORD_LENGTH)`, values));
      return;
    }
    while (values.length < keys.length) values.push('');
    done.push(new CsvRecord(keys, hasProto, values, rowNumber));
  };

  parser.on('opentag', (tag) => {
    switch (localName(tag)) {
      case 'row': {
        const r = Number(attribute(tag, 'r'));
        rowNumber = Number.isSafeInteger(r) && r > rowNumber ? r : rowNumber + 1;
        cells = [];
        break;
      }
      case 'c': {
        const ref = columnOf(attribute(tag, 'r'));
        const column = ref >= 0 ? ref : cells.length;
        if (column >= MAX_EXCEL_COLUMNS) throw new IngestError(`row ${rowNumber}: a cell lies beyond column XFD, the last Excel has`);
        cell = { column, type: attribute(tag, 't') ?? 'n', style: Number(attribute(tag, 's') ?? 0) };
        text = '';
        break;
      }
      case 'v':
      case 't':
        if (cell && !phonetic) collecting = true;
        break;
      case 'rPh':
        phonetic = true;
        break;
    }
  });
  parser.on('text', (chunk) => {
    if (collecting && text.length <= limits.maxFieldLength) text += chunk;
  });
  parser.on('closetag', (tag) => {
    switch (localName(tag)) {
      case 'v':
      case 't':
        collecting = false;
        break;
      case 'rPh':
        phonetic = false;
        break;
      case 'c':
        if (cell) cells[cell.column] = cellValue();
        cell = null;
        break;
      case 'row':
        endRow();
        break;
    }
  });

  const decoder = new TextDecoder('utf-8', { fatal: true });
  try {
    for await (const chunk of zip.read(entry)) {
      parser.write(decoder.decode(chunk, { stream: true }));
      yield* done;
      done.length = 0;
    }
    parser.close();
    yield* done;
  } catch (err) {
    fault =
      err instanceof IngestError
        ? err
        : new IngestError(`the sheet ${JSON.stringify(context.sheetName)} is damaged near row ${rowNumber}: ${(err as Error).message}`);
  }
  if (fault) throw fault;
}
