/**
 * npm run bench:parsers [-- ROWS]: the CSV parser picked by measurement. Parses the same
 * deterministic Jira-like CSV (default 300,000 rows, ~45 MB) with Intake's streaming parser
 * (src/formats/csv.ts) and with csv-parse (the common choice, `columns: true`), alternating,
 * five runs each, and prints the medians and their ratio.
 */
import { parse } from 'csv-parse';
import { parseCsv } from '../src/formats/csv.js';
import { jiraCsv } from './jira-csv.js';

const rows = Number(process.argv[2] ?? 300_000);
const chunks = [...jiraCsv(rows)]; // in memory: only parsing is measured

async function* feed(): AsyncGenerator<string> {
  yield* chunks;
}

async function intake(): Promise<number> {
  let n = 0;
  for await (const record of parseCsv(feed())) if (record.data) n++;
  return n;
}

async function csvParse(): Promise<number> {
  let n = 0;
  const parser = parse({ columns: true, record_delimiter: ['\r\n', '\n'] });
  const writing = (async () => {
    for (const chunk of chunks) if (!parser.write(chunk)) await new Promise((resolve) => parser.once('drain', resolve));
    parser.end();
  })();
  for await (const _ of parser) n++;
  await writing;
  return n;
}

async function time(fn: () => Promise<number>): Promise<number> {
  const started = performance.now();
  const n = await fn();
  if (n !== rows) throw new Error(`parsed ${n} records, expected ${rows}`);
  return performance.now() - started;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const ours: number[] = [];
const theirs: number[] = [];
for (let run = 0; run < 5; run++) {
  ours.push(await time(intake));
  theirs.push(await time(csvParse));
}
const mb = chunks.reduce((sum, c) => sum + c.length, 0) / 1024 ** 2;
const rate = (ms: number) => `${((mb / ms) * 1000).toFixed(0)} MB/s`;
console.log(`${rows.toLocaleString('en-US')} rows, ${mb.toFixed(0)} MB, median of 5`);
console.log(`Intake's parser  ${median(ours).toFixed(0)} ms  ${rate(median(ours))}`);
console.log(`csv-parse        ${median(theirs).toFixed(0)} ms  ${rate(median(theirs))}`);
console.log(`csv-parse / Intake: ${(median(theirs) / median(ours)).toFixed(2)} ×`);
