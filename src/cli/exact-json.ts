import { randomUUID } from 'node:crypto';

/**
 * JSON whose numbers keep every digit. Intake sends bigint and numeric values as JSON numbers
 * with all their digits (`12345678901234567890`, `10.50`); JSON.parse would make them doubles
 * (`12345678901234567000`, `10.5`), and Node 20 cannot show a reviver the source text.
 */

/** A number whose text a double would not give back, as it was written. */
export class Exact {
  constructor(readonly text: string) {}
}

// A string (matched whole, so a number inside one is left alone), or a number.
const TOKEN = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

/** JSON.parse, but a number a double would change comes back as an Exact. */
export function parseExact(text: string): unknown {
  const kept: string[] = [];
  const mark = `exact-${randomUUID()}`; // a key no answer holds
  const marked = text.replace(TOKEN, (token) =>
    token.startsWith('"') || String(Number(token)) === token ? token : `{"${mark}":${kept.push(token) - 1}}`,
  );
  return JSON.parse(marked, (_key, value: unknown) =>
    value !== null && typeof value === 'object' && Object.hasOwn(value, mark)
      ? new Exact(kept[(value as Record<string, number>)[mark]!]!)
      : value,
  );
}

/** JSON.stringify of what parseExact returned, each Exact written as its text. */
export function toJson(value: unknown): string {
  if (value instanceof Exact) return value.text;
  if (Array.isArray(value)) return `[${value.map(toJson).join(',')}]`;
  if (value !== null && typeof value === 'object')
    return `{${Object.entries(value)
      .map(([key, item]) => `${JSON.stringify(key)}:${toJson(item)}`)
      .join(',')}}`;
  return JSON.stringify(value);
}
