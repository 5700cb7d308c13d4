/**
 * Logs a person reads: on a terminal, each pino JSON line becomes `12:00:01 INFO  message
 * key=value …` (errors with their stack); elsewhere (a file, a pipe, a log collector) the JSON
 * lines are kept as they are. LOG_FORMAT=json or pretty chooses.
 */
import { Writable } from 'node:stream';

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
const COLORS: Record<number, string> = { 40: '\x1b[33m', 50: '\x1b[31m', 60: '\x1b[31m' };
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'err']);

// A value with a space, a quote, an = or a control character is quoted (JSON escapes the
// control characters: a logged value cannot move the terminal's cursor or change its colours).
const shown = (value: unknown) =>
  typeof value === 'string' ? (/[\s"=\x00-\x1f\x7f]/.test(value) ? JSON.stringify(value) : value) : JSON.stringify(value);
const printable = (text: string) => text.replace(/[\x00-\x09\x0b-\x1f\x7f]/g, '\ufffd');

/** One pino JSON line as a person reads it; a line that is not pino's JSON is left as it is. */
export function prettyLine(line: string, color: boolean): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const level = Number(entry.level);
  const time = new Date(Number(entry.time)).toTimeString().slice(0, 8);
  const fields = Object.entries(entry)
    .filter(([key, value]) => !SKIP.has(key) && value !== undefined)
    .map(([key, value]) => `${key}=${shown(value)}`);
  const err = entry.err as { message?: string; stack?: string } | undefined;
  const label = color && COLORS[level] ? `${COLORS[level]}${LEVELS[level]}\x1b[0m` : (LEVELS[level] ?? String(level));
  const text = [time, label, printable(typeof entry.msg === 'string' ? entry.msg : JSON.stringify(entry.msg ?? '')), ...fields]
    .filter((part) => part !== '')
    .join(' ');
  return err ? `${text}\n  ${printable(String(err.stack ?? err.message))}` : text;
}

/** A destination for pino that writes pretty lines to `out`. */
export function prettyStream(out: NodeJS.WriteStream): Writable {
  let pending = '';
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) if (line !== '') out.write(`${prettyLine(line, Boolean(out.isTTY))}\n`);
      done();
    },
  });
}
