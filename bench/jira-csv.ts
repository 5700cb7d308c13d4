/**
 * A deterministic Jira-issue-like CSV: id, key, summary (3–9 words, some with commas and
 * doubled quotes), status, priority, assignee (an email), created, updated (ISO timestamps),
 * story_points (often empty), labels (';'-separated). About 143 bytes a row.
 */
const WORDS = (
  'login page fails when user resets password cache timeout during export report dashboard ' +
  'widget shows wrong totals api returns error for empty payload search index out of date ' +
  'mobile layout broken on small screens upgrade dependency to fix security warning'
).split(' ');
const STATUSES = ['To Do', 'In Progress', 'In Review', 'Done', 'Blocked'];
const PRIORITIES = ['Lowest', 'Low', 'Medium', 'High', 'Highest'];
const PEOPLE = ['ada', 'grace', 'linus', 'barbara', 'ken', 'margaret', 'dennis', 'radia'];
const LABELS = ['backend', 'frontend', 'infra', 'ux', 'security', 'tech-debt', 'customer'];

/** mulberry32: a small, fast, seedable PRNG, so every run generates the same file. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const HEADER = 'id,key,summary,status,priority,assignee,created,updated,story_points,labels';

/** Yields the CSV in chunks of about 1 MiB: the header, then `rows` rows. */
export function* jiraCsv(rows: number, seed = 42): Generator<string> {
  const random = prng(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const base = Date.UTC(2024, 0, 1);
  let chunk = HEADER + '\n';
  for (let i = 0; i < rows; i++) {
    const words: string[] = [];
    const n = 3 + Math.floor(random() * 7);
    for (let w = 0; w < n; w++) words.push(pick(WORDS));
    let summary = words.join(' ');
    const r = random();
    if (r < 0.15)
      summary = `"${summary.replace(' ', ', ')}"`; // a comma inside
    else if (r < 0.25) summary = `"${summary} ""${pick(WORDS)}"""`; // doubled quotes inside
    const created = base + Math.floor(random() * 3e10);
    const updated = created + Math.floor(random() * 1e9);
    const points = random() < 0.6 ? '' : String(pick([1, 2, 3, 5, 8, 13]));
    const labels = Array.from({ length: Math.floor(random() * 3) }, () => pick(LABELS)).join(';');
    chunk +=
      `${i + 1},PROJ-${i + 1},${summary},${pick(STATUSES)},${pick(PRIORITIES)},${pick(PEOPLE)}@example.com,` +
      `${new Date(created).toISOString()},${new Date(updated).toISOString()},${points},${labels}\n`;
    if (chunk.length >= 1 << 20) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}
