/**
 * The top-level fields of one JSON object, each with its value's text exactly as written: a
 * number keeps every digit (`123456789012345678901234567890`, which a double would round), a
 * nested value stays JSON text for a jsonb column. The text must be one valid JSON object (the
 * parsers check that before a record gets here). A key given twice keeps its last value, as
 * JSON.parse does.
 */
export function topLevelFields(json: string): Map<string, string> {
  const fields = new Map<string, string>();
  let i = skipSpace(json, json.indexOf('{') + 1);
  if (json.charCodeAt(i) === 0x7d) return fields; // {}
  for (;;) {
    const keyEnd = stringEnd(json, i);
    const rawKey = json.slice(i, keyEnd);
    const key = rawKey.includes('\\') ? (JSON.parse(rawKey) as string) : rawKey.slice(1, -1);
    i = skipSpace(json, skipSpace(json, keyEnd) + 1); // past the colon
    const valueEnd = valueEndAt(json, i);
    fields.delete(key); // a repeated key goes where its last value is, as JSON.parse orders it
    fields.set(key, json.slice(i, valueEnd));
    i = skipSpace(json, valueEnd);
    if (json.charCodeAt(i) === 0x7d) return fields;
    i = skipSpace(json, i + 1); // past the comma
  }
}

/** A string value's text unquoted: cheap when it holds no escape, as dates and most values do. */
export function jsonString(text: string): string {
  return text.includes('\\') ? (JSON.parse(text) as string) : text.slice(1, -1);
}

function skipSpace(s: string, i: number): number {
  for (;;) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return i;
    i++;
  }
}

/** The index just past the string starting at i (at its opening quote). */
function stringEnd(s: string, i: number): number {
  for (let j = i + 1; ; j++) {
    const c = s.charCodeAt(j);
    if (c === 0x5c) j++;
    else if (c === 0x22) return j + 1;
    else if (Number.isNaN(c)) throw new Error('unterminated string');
  }
}

/** The index just past the value starting at i. */
function valueEndAt(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c === 0x22) return stringEnd(s, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    for (let j = i; j < s.length; j++) {
      const d = s.charCodeAt(j);
      if (d === 0x22) j = stringEnd(s, j) - 1;
      else if (d === 0x7b || d === 0x5b) depth++;
      else if ((d === 0x7d || d === 0x5d) && --depth === 0) return j + 1;
    }
    throw new Error('unterminated value');
  }
  let j = i;
  for (; j < s.length; j++) {
    const d = s.charCodeAt(j);
    if (d === 0x2c || d === 0x7d || d === 0x20 || d === 0x0a || d === 0x0d || d === 0x09) break;
  }
  return j;
}
