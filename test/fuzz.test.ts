/**
 * Property-based fuzzing of the HTTP surface, with fast-check, over real sockets.
 *
 * A real Intake (startServer, with API_TOKENS) is sent generated requests on raw TCP
 * connections (node:net): every /api route, spelled in hostile ways (percent-encoding,
 * case, dot segments, double slashes, trailing slashes, `;` parameters, absolute form),
 * with hostile query strings, headers and bodies. Raw sockets, not fetch: fetch normalises
 * paths and cannot send an absolute-form request target, and those are exactly the spellings
 * a router can get wrong.
 *
 * Properties:
 *  (a) without a valid token no request reaches an /api handler: nothing answers 2xx or 3xx,
 *      no event stream opens, and nothing changes (the job list is the same afterwards);
 *  (b) nothing ever answers 5xx, every connection is answered or closed within a timeout, an
 *      answer that says it is JSON is JSON, and the server's own record of the statuses it
 *      sent holds no 5xx (checked with every request of (a), (c) and (d), and at the end);
 *  (c) with the valid token, the requests that do reach the handlers never answer 5xx;
 *  (d) a submit is accepted (2xx) only with a media type the API documents (README: a body
 *      that is not multipart / JSON / NDJSON is a 415);
 *  (e) a CSV's columns keep their own values whatever the header's names (digits, `__proto__`,
 *      repeated, empty: what an object would reorder or lose), with any delimiter;
 *  (f) a POST /api/sql query that reads a catalog or Intake's own tables (spelled quoted,
 *      qualified, in upper case; wrapped in WITH queries named like it, subqueries, LATERAL,
 *      set operations) or calls a refused function is a 422, never answered;
 *  (g) the same queries run as the role intake_sql, with no guard, read nothing of Intake's.
 *
 * FUZZ_RUNS (default 300) sets the runs per property; `npm run test:fuzz` runs 5000. A failure
 * prints fast-check's seed and path, and the request as it went on the wire; replay it with
 *   FUZZ_SEED=<seed> FUZZ_PATH=<path> npx vitest run test/fuzz.test.ts -t '<the test name>'
 * (the same requests, but for the port and the job ids, which each run's server makes anew).
 * FUZZ_TIMEOUT_MS (default 5000) is how long one request may go unanswered.
 */
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headerKeys } from '../src/formats/csv.js';
import { JOB_STATUSES, SOURCE_TYPES, TERMINAL_STATUSES, type JobStatus } from '../src/core/job.js';
import { backends, createSandbox, startServer, type Sandbox, type TestServer } from './helpers.js';
import { zipOf } from './files.js';

const RUNS = positiveInteger('FUZZ_RUNS', 300);
const ANSWER_TIMEOUT_MS = positiveInteger('FUZZ_TIMEOUT_MS', 5_000);
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
const REPLAY_PATH = process.env.FUZZ_PATH;
// Generous: the runs themselves take milliseconds each, shrinking a failure takes more.
const TEST_TIMEOUT_MS = 120_000 + RUNS * 150;

/** 32 characters, as API_TOKENS wants (16 or more). */
const TOKEN = 'f0e1d2c3b4a5968778695a4b3c2d1e0f';

function positiveInteger(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, not ${JSON.stringify(raw)}`);
  return value;
}

function runParameters(): fc.Parameters<[FuzzRequest]> {
  return { numRuns: RUNS, ...(SEED !== undefined && { seed: SEED }), ...(REPLAY_PATH && { path: REPLAY_PATH }) };
}

// ---------------------------------------------------------------------------------------------
// The raw HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

/** A request as it goes on the wire. Header values are latin1 strings (one char, one byte). */
interface FuzzRequest {
  /** The route it was aimed at, for the report (its spelling may well route elsewhere). */
  route: string;
  method: string;
  target: string;
  headers: [string, string][];
  body: Uint8Array;
  /** Sent with Transfer-Encoding: chunked, cut in two at this byte; else with Content-Length. */
  chunkAt?: number;
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

function serialize(request: FuzzRequest): Buffer {
  const lines = [`${request.method} ${request.target} HTTP/1.1`, ...request.headers.map(([name, value]) => `${name}: ${value}`)];
  let body = Buffer.from(request.body);
  if (request.chunkAt !== undefined && body.length > 0) {
    // Well-formed chunked encoding: the point is the handler, not the parser.
    const at = request.chunkAt % body.length;
    const chunks = [body.subarray(0, at), body.subarray(at)].filter((chunk) => chunk.length > 0);
    lines.push('Transfer-Encoding: chunked');
    body = Buffer.concat([
      ...chunks.flatMap((chunk) => [Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]),
      Buffer.from('0\r\n\r\n'),
    ]);
  } else if (body.length > 0 || BODY_METHODS.has(request.method)) {
    lines.push(`Content-Length: ${body.length}`);
  }
  // One request per connection: the server closing it is how an answer is known to be whole.
  lines.push('Connection: close');
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), body]);
}

/** A line with its control and non-ASCII characters escaped (as JSON would), so that it prints as one line. */
const visible = (text: string) => JSON.stringify(text).slice(1, -1);

/** The request as a readable, replayable text: fast-check prints it as the counterexample. */
function describeRequest(request: FuzzRequest): string {
  const body = Buffer.from(request.body);
  const lines = [`${request.method} ${request.target} HTTP/1.1`, ...request.headers.map(([name, value]) => `${name}: ${value}`)].map(
    visible,
  );
  if (request.chunkAt !== undefined) lines.push(`(body sent chunked, cut at byte ${request.chunkAt % Math.max(1, body.length)})`);
  lines.push(
    body.length === 0
      ? '(no body)'
      : `(body: ${body.length} bytes${body.length > 300 ? ', the first 300' : ''}, as latin1) ${JSON.stringify(body.subarray(0, 300).toString('latin1'))}`,
  );
  return `[aimed at ${request.route}]\n${lines.map((line) => `  ${line}`).join('\n')}`;
}

interface Answer {
  status?: number;
  statusLine?: string;
  headers: Record<string, string>;
  /** The body as received (chunked transfer coding not undone), up to BODY_CAP. */
  body: Buffer;
  /** The server closed the connection after the whole body, and it was not cut at BODY_CAP. */
  bodyComplete: boolean;
  /** How the exchange ended: the server closed it; we closed an event stream after its headers; a reset; nothing in time. */
  ending: 'closed' | 'event-stream' | 'reset' | 'timeout';
  error?: string;
}

const BODY_CAP = 1 << 20;

const isEventStream = (answer: Pick<Answer, 'headers'>) =>
  (answer.headers['content-type'] ?? '').toLowerCase().startsWith('text/event-stream');

function parseHead(text: string): Pick<Answer, 'status' | 'statusLine' | 'headers'> {
  const [statusLine = '', ...lines] = text.split('\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(statusLine);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { status: match ? Number(match[1]) : undefined, statusLine, headers };
}

/**
 * Sends one request on a new connection and reads the answer until the server closes the
 * connection (it was asked to), or, for an event stream, only its status line and headers.
 */
function exchange(port: number, request: FuzzRequest): Promise<Answer> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let received = Buffer.alloc(0);
    let head: Pick<Answer, 'status' | 'statusLine' | 'headers'> | undefined;
    let settled = false;
    const timer = setTimeout(() => finish('timeout'), ANSWER_TIMEOUT_MS);
    function finish(ending: Answer['ending'], error?: string) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (!head && received.length > 0) {
        // Bytes that never made a head: keep them for the report.
        head = { statusLine: received.subarray(0, 200).toString('latin1'), headers: {} };
        received = Buffer.alloc(0);
      }
      const bodyComplete = ending === 'closed' && received.length < BODY_CAP;
      resolve({ ...(head ?? { headers: {} }), body: received, bodyComplete, ending, ...(error && { error }) });
    }
    socket.on('data', (chunk: Buffer) => {
      if (received.length < BODY_CAP) received = Buffer.concat([received, chunk]);
      while (!head) {
        const end = received.indexOf('\r\n\r\n');
        if (end < 0) return;
        const parsed = parseHead(received.subarray(0, end).toString('latin1'));
        received = received.subarray(end + 4);
        // An interim answer (100 Continue) is followed by the real one.
        if (parsed.status !== undefined && parsed.status >= 100 && parsed.status < 200) continue;
        head = parsed;
      }
      if (isEventStream(head)) finish('event-stream');
    });
    socket.on('end', () => finish('closed'));
    socket.on('close', () => finish('closed'));
    socket.on('error', (err: NodeJS.ErrnoException) => finish('reset', `${err.code ?? ''} ${err.message}`.trim()));
    socket.write(serialize(request));
  });
}

/** What is wrong with any answer, whoever asked: (b). */
function answerProblems(answer: Answer): string[] {
  const problems: string[] = [];
  if (answer.ending === 'timeout') {
    problems.push(
      answer.status === undefined
        ? `no answer within ${ANSWER_TIMEOUT_MS} ms and the connection not closed`
        : `answered ${answer.status} but did not close the connection within ${ANSWER_TIMEOUT_MS} ms (the request said Connection: close)`,
    );
  }
  if (answer.status !== undefined && answer.status >= 500) problems.push(`answered ${answer.status}`);
  if (answer.status === undefined && answer.statusLine !== undefined)
    problems.push('answered something that is not an HTTP/1.1 status line');
  problems.push(...jsonProblems(answer));
  return problems;
}

/** The body with the chunked transfer coding undone; undefined if it does not decode. */
function decodedBody(answer: Answer): Buffer | undefined {
  if (!/\bchunked\b/i.test(answer.headers['transfer-encoding'] ?? '')) return answer.body;
  const chunks: Buffer[] = [];
  for (let at = 0; ;) {
    const end = answer.body.indexOf('\r\n', at);
    if (end < 0) return undefined;
    const size = Number.parseInt(answer.body.subarray(at, end).toString('latin1').split(';')[0]!, 16);
    if (Number.isNaN(size)) return undefined;
    if (size === 0) return Buffer.concat(chunks);
    chunks.push(answer.body.subarray(end + 2, end + 2 + size));
    at = end + 2 + size + 2;
  }
}

/** An answer that says it is JSON must be JSON (a client parses it): a non-finite number written as `Infinity` is not. */
function jsonProblems(answer: Answer): string[] {
  if (answer.status === undefined || answer.status === 204 || answer.status === 304 || !answer.bodyComplete || answer.body.length === 0)
    return [];
  if (mediaType(answer.headers['content-type']) !== 'application/json') return [];
  const body = decodedBody(answer);
  if (body === undefined) return [`answered ${answer.status} with a chunked body that does not decode`];
  try {
    JSON.parse(body.toString('utf8'));
    return [];
  } catch (err) {
    return [`answered ${answer.status} as application/json with a body that is not JSON (${(err as Error).message})`];
  }
}

/** What is wrong with an answer to a request without a valid token: (a). */
function unauthorizedProblems(answer: Answer): string[] {
  const problems: string[] = [];
  if (answer.status !== undefined && answer.status >= 200 && answer.status < 400) {
    problems.push(`answered ${answer.status} without a valid token: the request reached a handler`);
  }
  if (isEventStream(answer)) problems.push('opened an event stream without a valid token');
  return problems;
}

function report(request: FuzzRequest, answer: Answer, problems: string[]): string {
  const body = answer.body.subarray(0, 500).toString('utf8');
  return [
    problems.join('; '),
    describeRequest(request),
    `answer: ${answer.statusLine === undefined ? '(none)' : JSON.stringify(answer.statusLine)} (${answer.ending}${answer.error ? `: ${answer.error}` : ''})`,
    ...(body ? [`answer body: ${JSON.stringify(body)}`] : []),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/** Everything the generators need to know about the server under test. */
interface Target {
  port: number;
  /** Ids of jobs that exist (when the fuzzing starts: a DELETE may remove them). */
  jobIds: string[];
}

/**
 * For a oneof whose first choice is the ordinary one (no body, no hostile part, the valid
 * value): a failure then shrinks towards it, so a counterexample keeps only the hostile parts
 * it needs.
 */
const SHRINK_TO_FIRST = { withCrossShrink: true } as const;

/** `arb` once in `oneIn` draws, else undefined (fc.option's freq counts the other way round). */
const sometimes = <T>(arb: fc.Arbitrary<T>, oneIn: number) =>
  fc.oneof(SHRINK_TO_FIRST, { weight: oneIn - 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });

const utf8 = (text: string) => new Uint8Array(Buffer.from(text, 'utf8'));
const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
const hex = (byte: number, upper: boolean) => `%${byte.toString(16).padStart(2, '0')[upper ? 'toUpperCase' : 'toLowerCase']()}`;

/** Percent-encodes all but `keep` of a text's UTF-8 bytes (a lone surrogate becomes U+FFFD, as on any wire). */
function percentEncode(text: string, keep: RegExp, upper = true): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const char = String.fromCharCode(byte);
    out += byte < 0x80 && keep.test(char) ? char : hex(byte, upper);
  }
  return out;
}
const SEGMENT_SAFE = /[A-Za-z0-9\-._~!$&'()*+,=:@]/;
const QUERY_SAFE = /[A-Za-z0-9\-._~!$'()*,:@/]/;

// --- Path spellings --------------------------------------------------------------------------

/**
 * One character of a path respelled: percent-encoded (either hex case), which a router decodes
 * (so the request still routes, and an access check that reads the raw URL is fooled), or
 * case-flipped, or a `%XX` encoded again, which route nowhere. Positions near the start (the
 * `/api/` an access check would look at) come up more often.
 */
const respellingAtArb = fc.oneof(fc.integer({ min: 0, max: 5 }), fc.nat());
const routableRespellingArb = fc.record({ at: respellingAtArb, how: fc.constantFrom('pct', 'PCT') });
const charRespellingArb = fc.record({ at: respellingAtArb, how: fc.constantFrom('pct', 'PCT', 'case', 'double-pct') });

/** The path (or key) split into characters, a `%XX` escape counting as one. */
function pathTokens(path: string): string[] {
  const tokens: string[] = [];
  for (let i = 0; i < path.length;) {
    const escape = /^%[0-9A-Fa-f]{2}/.exec(path.slice(i));
    const token = escape ? escape[0] : path[i]!;
    tokens.push(token);
    i += token.length;
  }
  return tokens;
}

function respell(text: string, ops: { at: number; how: string }[], from = 0): string {
  const tokens = pathTokens(text);
  if (tokens.length <= from) return text;
  for (const { at, how } of ops) {
    const i = from + (at % (tokens.length - from));
    const token = tokens[i]!;
    if (token.length === 3) {
      tokens[i] =
        how === 'double-pct'
          ? `%25${token.slice(1)}`
          : how === 'case'
            ? `%${token.slice(1).toLowerCase() === token.slice(1) ? token.slice(1).toUpperCase() : token.slice(1).toLowerCase()}`
            : token;
    } else if (how === 'case') {
      tokens[i] = token === token.toUpperCase() ? token.toLowerCase() : token.toUpperCase();
    } else {
      tokens[i] = hex(token.charCodeAt(0), how !== 'pct');
      if (how === 'double-pct') tokens[i] = `%25${tokens[i].slice(1)}`;
    }
  }
  return tokens.join('');
}

/**
 * Structural respellings, each inserted after one of the path's slashes. All but `param`
 * resolve back to the same path under RFC 3986 normalisation, so if a spelling routes at all
 * it routes to an /api handler: never to the console or the docs, which answer without a token.
 */
const SEGMENT_INSERTS: Record<string, string> = {
  double: '/',
  dot: './',
  'dot-encoded': '%2e/',
  'dot-encoded-upper': '%2E/',
  dotdot: 'x/../',
  'dotdot-encoded': 'x/%2e%2e/',
  'dotdot-mixed': 'x/.%2E/',
};
const structuralOpArb = fc.record({
  at: fc.nat(),
  how: fc.constantFrom(...Object.keys(SEGMENT_INSERTS), 'param'),
  param: fc.constantFrom('', 'x', 'jsessionid=1', 'a=b', '.', '%2f', 'api'),
});

function restructure(path: string, ops: { at: number; how: string; param: string }[]): string {
  for (const { at, how, param } of ops) {
    const slashes = [...path].flatMap((char, i) => (char === '/' ? [i] : []));
    const slash = slashes[at % slashes.length]!;
    if (how === 'param') {
      // A `;param` ends the segment before this slash (or the last one).
      const end = slash === 0 ? path.length : slash;
      path = `${path.slice(0, end)};${param}${path.slice(end)}`;
    } else {
      path = `${path.slice(0, slash + 1)}${SEGMENT_INSERTS[how]}${path.slice(slash + 1)}`;
    }
  }
  return path;
}

/** Hosts for the absolute form and the Host header: ours, others, and malformed ones. */
const hostArb = (port: number) =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(`127.0.0.1:${port}`, `localhost:${port}`) },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        'x',
        'evil.example',
        'EVIL.EXAMPLE:8000',
        '[::1]',
        '[::1]:80',
        'user:pw@127.0.0.1',
        '127.0.0.1:0',
        '127.0.0.1:65536',
        '',
        ':',
        '0',
        'a'.repeat(300),
      ),
    },
    { weight: 2, arbitrary: fc.domain() },
  );

interface Spelling {
  chars: { at: number; how: string }[];
  structure: { at: number; how: string; param: string }[];
  trailing: string;
  absolute: { scheme: string; host: string } | undefined;
}

/**
 * A request target for a canonical path: percent-encoded here and there (it still routes), and
 * but for one thing: other respellings, dot segments, double slashes or `;` parameters, a
 * trailing tail, or the absolute form with any host.
 */
const spellingArb = (port: number) =>
  validButOne<Spelling>(
    {
      chars: fc.array(routableRespellingArb, { maxLength: 3 }),
      structure: fc.constant([]),
      trailing: fc.constant(''),
      absolute: fc.constant(undefined),
    },
    {
      chars: fc.array(charRespellingArb, { minLength: 1, maxLength: 4 }),
      structure: fc.array(structuralOpArb, { minLength: 1, maxLength: 3 }),
      trailing: fc.constantFrom('/', '//', '/.', '/./', ';', ';x=1', '/%2e', '?', '#x'),
      absolute: fc.record({ scheme: fc.constantFrom('http', 'https', 'HTTP'), host: hostArb(port) }),
    },
    1,
    { absolute: 2 },
  );

function spell(path: string, spelling: Spelling): string {
  // The leading slash is never respelled: a target must start with one to be origin-form.
  const spelled = restructure(respell(path, spelling.chars, 1), spelling.structure) + spelling.trailing;
  return spelling.absolute ? `${spelling.absolute.scheme}://${spelling.absolute.host}${spelled}` : spelled;
}

// --- Job ids ---------------------------------------------------------------------------------

const malformedIdArb = fc.oneof(
  fc.constantFrom(
    '',
    'x',
    '0',
    '00000000-0000-0000-0000-000000000000',
    'ffffffff-ffff-ffff-ffff-ffffffffffff',
    '00000000000000000000000000000000',
    '{00000000-0000-4000-8000-000000000000}',
    '00000000-0000-4000-8000-00000000000g',
    '00000000-0000-4000-8000-0000000000000',
    'null',
    '__proto__',
    'constructor',
    "'; DROP TABLE jobs; --",
    '\u0000',
    '..',
  ),
  fc.uuid().map((id) => ` ${id}`),
  fc.uuid().map((id) => `${id}\u0000`),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.integer({ min: 37, max: 400 }).map((n) => 'a'.repeat(n)),
);

/** Ids of jobs that exist (also upper-cased: ids are case-insensitive), and with `unknown` weight against 10, ids that name no job. */
const jobIdArb = (known: string[], unknown: number) =>
  fc.oneof(
    SHRINK_TO_FIRST,
    { weight: 8, arbitrary: fc.constantFrom(...known) },
    { weight: 2, arbitrary: fc.constantFrom(...known).map((id) => id.toUpperCase()) },
    { weight: unknown, arbitrary: fc.oneof(fc.uuid(), malformedIdArb) },
  );

// --- "Valid but for one thing" ----------------------------------------------------------------

/**
 * Most generators below build a value that is valid but for (at most) one part: one bad
 * parameter, one bad part of a timestamp, one bad thing about a multipart body. A request with
 * two bad parts is refused for the first (a 422 for the query is given before the body is
 * read), so the second part would never reach the code it is meant for.
 */
function validButOne<T extends object>(
  valid: { [K in keyof T]: fc.Arbitrary<T[K]> },
  hostile: { [K in keyof T]?: fc.Arbitrary<T[K]> },
  cleanWeight = 1,
  weights: { [K in keyof T]?: number } = {},
): fc.Arbitrary<T> {
  const overrides = (Object.keys(hostile) as (keyof T)[]).map((key) => ({
    weight: weights[key] ?? 1,
    arbitrary: hostile[key]!.map((value) => ({ key, value })),
  }));
  const override =
    cleanWeight > 0
      ? fc.oneof(SHRINK_TO_FIRST, { weight: cleanWeight, arbitrary: fc.constant(undefined) }, ...overrides)
      : fc.oneof(...overrides);
  return fc
    .tuple(fc.record(valid) as fc.Arbitrary<T>, override)
    .map(([base, change]) => (change ? { ...base, [change.key]: change.value } : base));
}

/** `valid` most of the time (validWeight to 1), `hostile` otherwise. */
const mostly = <T>(valid: fc.Arbitrary<T>, hostile: fc.Arbitrary<T>, validWeight = 4) =>
  fc.oneof(SHRINK_TO_FIRST, { weight: validWeight, arbitrary: valid }, { weight: 1, arbitrary: hostile });

// --- Query strings ---------------------------------------------------------------------------

/** Percent-escapes that decode to nothing valid: bad hex, truncated, overlong, surrogates, NUL, CR LF. */
const badEscapeArb = fc.constantFrom(
  '%',
  '%0',
  '%G0',
  '%zz',
  '%FF',
  '%C0%80',
  '%C3',
  '%ED%A0%80',
  '%F4%90%80%80',
  '%EF%BF%BF',
  '%00',
  '%0A',
  '%0D%0A',
  '%7F',
  '%25',
  '%2525',
  '%E2%82',
  '%uD800',
  '+',
);

/** Any text, with control characters, NUL and unpaired surrogates. */
const hostileTextArb = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.string({ unit: fc.integer({ min: 0, max: 31 }).map((code) => String.fromCharCode(code)), minLength: 1, maxLength: 5 }),
  fc.constantFrom('\u0000', 'a\u0000b', '\ud800', '\udfff', '\uffff', '\u2028', 'a'.repeat(5000)),
);

/** Integers as text that no int4, int8 or double holds, and spellings a lenient parser might take. */
const hostileIntegerTextArb = fc.oneof(
  // Just past what PostgreSQL's integer and bigint and a double hold exactly, and any 10-digit number (a 10-digit pattern is no int4).
  fc.constantFrom(
    '2147483647',
    '2147483648',
    '-2147483648',
    '-2147483649',
    '4294967295',
    '4294967296',
    '9999999999',
    '9007199254740991',
    '9007199254740992',
    '9007199254740993',
    '9223372036854775807',
    '9223372036854775808',
    '18446744073709551616',
    '1000000000',
    '1000000001',
  ),
  fc.bigInt({ min: 10n ** 9n, max: 10n ** 10n - 1n }).map(String),
  fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map(String),
  fc.integer({ min: 10, max: 400 }).map((n) => '9'.repeat(n)),
  fc.constantFrom(
    '-1',
    '-0',
    '1e3',
    '1e2',
    '1E400',
    '1e-7',
    '1.5',
    '1.0',
    '100.0',
    '+5',
    '007',
    '0x10',
    '0b1',
    ' 5',
    '5 ',
    'NaN',
    'Infinity',
    '-Infinity',
    '',
    'true',
    'null',
    '[]',
    '1,2',
  ),
  // Fractions as long as a query allows: 3000 digits.
  fc.integer({ min: 1, max: 3000 }).map((n) => `0.${'5'.repeat(n)}`),
  fc.integer({ min: 1, max: 3000 }).map((n) => `1.${'0'.repeat(n)}`),
  fc.double().map(String),
);

const pad = (n: number, width: number) => String(n).padStart(width, '0');

interface TimestampParts {
  year: string;
  month: string;
  day: string;
  separator: string;
  time: string;
  fraction: string;
  offset: string;
}

/**
 * RFC 3339 timestamps with one hostile part: years 0 and 10000 and beyond, month 13, Feb 30,
 * leap seconds and 24:00, fractions of up to 3000 digits, offsets of 16 to 99 hours, offsets
 * without a colon (+2300).
 */
const timestampPartsArb = validButOne<TimestampParts>(
  {
    year: fc.integer({ min: 1970, max: 2100 }).map((n) => pad(n, 4)),
    month: fc.integer({ min: 1, max: 12 }).map((n) => pad(n, 2)),
    day: fc.integer({ min: 1, max: 28 }).map((n) => pad(n, 2)),
    separator: fc.constant('T'),
    time: fc
      .tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 59 }))
      .map(([h, m, sec]) => `${pad(h, 2)}:${pad(m, 2)}:${pad(sec, 2)}`),
    fraction: fc.oneof(
      fc.constant(''),
      fc.integer({ min: 1, max: 6 }).map((n) => `.${'1'.repeat(n)}`),
    ),
    offset: fc.oneof(
      fc.constant('Z'),
      fc
        .tuple(fc.constantFrom('+', '-'), fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 59 }))
        .map(([sign, h, m]) => `${sign}${pad(h, 2)}:${pad(m, 2)}`),
    ),
  },
  {
    year: fc.constantFrom('0000', '0001', '9999', '10000', '+275760', '-000001', '275760', '999'),
    month: fc.constantFrom('00', '13', '99', '1'),
    day: fc.constantFrom('29', '30', '31', '00', '32'),
    separator: fc.constantFrom('t', ' ', '_'),
    time: fc.constantFrom('23:59:60', '24:00:00', '12:00', '25:00:00', '12:60:00', '12:00:00:00'),
    fraction: fc.integer({ min: 7, max: 3000 }).map((n) => `.${'9'.repeat(n)}`),
    offset: fc.oneof(
      fc.constantFrom(
        'z',
        '',
        '-00:00',
        '+16:00',
        '+23:59',
        '-23:59',
        '+24:00',
        '+99:99',
        '+2300',
        '-2300',
        '+1600',
        '+23',
        '+0000',
        '+23:00:00',
      ),
      // Around the 16 hours PostgreSQL's offsets stop at, with and without the colon.
      fc
        .tuple(fc.constantFrom('+', '-'), fc.integer({ min: 14, max: 25 }), fc.integer({ min: 0, max: 60 }), fc.constantFrom(':', ''))
        .map(([sign, h, m, colon]) => `${sign}${pad(h, 2)}${colon}${pad(m, 2)}`),
    ),
  },
  0,
  // The parts a date-time format check lets through that PostgreSQL may not take: weighted up.
  { offset: 4, fraction: 2, year: 2 },
);
const validTimestampArb = fc
  .tuple(fc.date({ min: new Date('1971-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true }), fc.boolean())
  .map(([date, fraction]) => (fraction ? date.toISOString() : date.toISOString().replace(/\.\d+Z$/, 'Z')));
const timestampText = (p: TimestampParts) => `${p.year}-${p.month}-${p.day}${p.separator}${p.time}${p.fraction}${p.offset}`;

/** List cursors as next_cursor spells them: base64url of `YYYY-MM-DD HH:MM:SS.ffffff|job id`. */
const listCursor = (timestamp: string, id: string) => Buffer.from(`${timestamp}|${id}`).toString('base64url');
const validListCursorArb = fc
  .tuple(validTimestampArb, fc.uuid())
  .map(([timestamp, id]) => listCursor(timestamp.slice(0, 19).replace('T', ' '), id));
const hostileListCursorArb = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .tuple(timestampPartsArb, fc.uuid())
      .map(([p, id]) => listCursor(`${p.year}-${p.month}-${p.day} ${p.time}${p.fraction}`, id)),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(validTimestampArb, malformedIdArb)
      .map(([timestamp, id]) => listCursor(timestamp.slice(0, 19).replace('T', ' '), id)),
  },
  { weight: 1, arbitrary: fc.tuple(validListCursorArb, fc.constantFrom('|x', '|', '=', '==', '.')).map(([cursor, tail]) => cursor + tail) },
  { weight: 1, arbitrary: fc.base64String({ maxLength: 300 }) },
  { weight: 1, arbitrary: fc.integer({ min: 190, max: 210 }).map((n) => 'A'.repeat(n)) },
);

/** A parameter: its valid values, and the hostile ones meant for the code behind it. */
interface Param {
  valid: fc.Arbitrary<string>;
  hostile: fc.Arbitrary<string>;
}
type ParamSpec = Record<string, Param>;

const integerParam = (min: number, max: number): Param => ({ valid: fc.integer({ min, max }).map(String), hostile: hostileIntegerTextArb });
const enumParam = (allowed: readonly string[]): Param => ({
  valid: fc.constantFrom(...allowed),
  hostile: fc.oneof(fc.mixedCase(fc.constantFrom(...allowed)), fc.string({ maxLength: 12 }), hostileTextArb),
});
const timestampParam: Param = {
  valid: validTimestampArb,
  hostile: fc.oneof(
    { weight: 6, arbitrary: timestampPartsArb.map(timestampText) },
    { weight: 1, arbitrary: fc.constantFrom('now', 'today', '2024-01-01', '1e10', '', '2024-01-01T00:00:00ZZ') },
  ),
};

const LIST_PARAMS: ParamSpec = {
  status: enumParam(JOB_STATUSES),
  source_type: enumParam(SOURCE_TYPES),
  submitted_after: timestampParam,
  submitted_before: timestampParam,
  limit: integerParam(1, 100),
  offset: integerParam(0, 50),
  cursor: { valid: validListCursorArb, hostile: hostileListCursorArb },
  total: { valid: fc.constantFrom('true', 'false'), hostile: fc.constantFrom('TRUE', 'True', '1', '0', 'yes', '', 'null', 'truee') },
};
const PAGE_PARAMS: ParamSpec = { cursor: integerParam(0, 1000), limit: integerParam(1, 1000) };
const SUBMIT_PARAMS: ParamSpec = { max_errors: integerParam(0, 10) };

const UNKNOWN_PARAM_NAMES = [
  'stauts',
  'LIMIT',
  'Limit',
  'token',
  'access_token',
  '__proto__',
  'constructor',
  'prototype',
  'limit[]',
  'limit[0]',
  'a.b',
  '',
  'max_errors',
  'cursor',
  'offset',
];

const encodeQuery = (text: string) => percentEncode(text, QUERY_SAFE);

/** The one hostile thing in a query string. */
const hostilePairArb = (spec: ParamSpec) => {
  const keys = Object.keys(spec);
  const known = keys.map((key) => spec[key]!.hostile.map((value) => `${encodeQuery(key)}=${encodeQuery(value)}`));
  const anyValue = fc.oneof(hostileTextArb, ...Object.values(spec).map((param) => param.valid));
  return fc.oneof(
    ...known.map((arbitrary) => ({ weight: 6, arbitrary })),
    // An unknown parameter (a 422), or a known one without a value, respelled, or with a bad escape.
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.oneof(fc.constantFrom(...UNKNOWN_PARAM_NAMES), fc.string({ maxLength: 8 })), anyValue)
        .map(([key, value]) => `${encodeQuery(key)}=${encodeQuery(value)}`),
    },
    ...(keys.length === 0
      ? []
      : [
          { weight: 1, arbitrary: fc.constantFrom(...keys).map(encodeQuery) },
          {
            weight: 1,
            arbitrary: fc
              .tuple(fc.constantFrom(...keys), anyValue, fc.array(charRespellingArb, { minLength: 1, maxLength: 2 }))
              .map(([key, value, ops]) => `${respell(encodeQuery(key), ops)}=${encodeQuery(value)}`),
          },
          {
            weight: 2,
            arbitrary: fc.tuple(fc.constantFrom(...keys), anyValue, badEscapeArb, fc.nat()).map(([key, value, escape, at]) => {
              const encoded = encodeQuery(value);
              const cut = at % (encoded.length + 1);
              return `${encodeQuery(key)}=${encoded.slice(0, cut)}${escape}${encoded.slice(cut)}`;
            }),
          },
        ]),
  );
};

/**
 * A query string: up to two valid parameters of the route and (mostly) one hostile one,
 * which may repeat a valid one's name (a repeated parameter).
 */
const queryArb = (spec: ParamSpec) => {
  const keys = Object.keys(spec);
  // A valid value for every parameter, of which up to two are sent (no chain: it would shrink poorly).
  const validPairs = fc
    .tuple(
      fc.tuple(...keys.map((key) => spec[key]!.valid)),
      fc.subarray(
        keys.map((_, i) => i),
        { maxLength: Math.min(2, keys.length) },
      ),
    )
    .map(([values, chosen]) => chosen.map((i) => `${encodeQuery(keys[i]!)}=${encodeQuery(values[i]!)}`));
  return fc.oneof(
    SHRINK_TO_FIRST,
    { weight: 1, arbitrary: fc.constant('') },
    {
      weight: 6,
      arbitrary: fc
        .record({
          valid: validPairs,
          hostile: fc.oneof(
            SHRINK_TO_FIRST,
            { weight: 1, arbitrary: fc.constant(undefined) },
            { weight: 3, arbitrary: hostilePairArb(spec) },
          ),
          at: fc.nat(),
          separator: mostly(fc.constant('&'), fc.constantFrom('&&', ';')),
        })
        .map(({ valid, hostile, at, separator }) => {
          const pairs: string[] = [...valid];
          if (hostile !== undefined) pairs.splice(at % (pairs.length + 1), 0, hostile);
          return `?${pairs.join(separator)}`;
        }),
    },
  );
};

// --- Bodies ----------------------------------------------------------------------------------

/** A body with the Content-Type it would naturally be sent with. */
interface Payload {
  kind: string;
  contentType: string | undefined;
  body: Uint8Array;
}

const recordArb = fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 });

/** Nesting as deep as a body allows, in the places the API reads: the top, a record, a value. */
const deepJsonArb = fc
  .record({
    depth: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 100, max: 20_000 }), fc.constant(100_000)),
    shape: fc.constantFrom('array', 'object-in-record', 'array-in-record', 'records-object', 'unclosed'),
  })
  .map(({ depth, shape }) => {
    switch (shape) {
      case 'array':
        return '['.repeat(depth) + ']'.repeat(depth);
      case 'object-in-record':
        return `[${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}]`;
      case 'array-in-record':
        return `[{"a":${'['.repeat(depth)}${']'.repeat(depth)}}]`;
      case 'records-object':
        return `{"records":[{"a":${'{"b":'.repeat(depth)}null${'}'.repeat(depth)}}]}`;
      default:
        return `[{"a":${'['.repeat(depth)}`;
    }
  });

/** Numbers no double holds: 1e400, 400-digit integers, 5000-digit fractions; and past PostgreSQL's numeric (1e200000, a scale over 16383). */
const hugeNumberArb = fc.oneof(
  fc.constantFrom(
    '1e400',
    '-1e400',
    '1e-400',
    '-0',
    '123456789012345678901234567890',
    '1E+999999999',
    '1e200000',
    '1e-20000',
    '0.0e-99999999',
    '9.9e131071',
    '1e131072',
  ),
  fc.integer({ min: 20, max: 5000 }).map((n) => '9'.repeat(n)),
  fc.integer({ min: 20, max: 5000 }).map((n) => `1.${'5'.repeat(n)}`),
);

const jsonTextArb = fc.oneof(
  { weight: 4, arbitrary: fc.array(recordArb, { maxLength: 4 }).map((records) => JSON.stringify(records)) },
  { weight: 2, arbitrary: fc.array(recordArb, { maxLength: 4 }).map((records) => JSON.stringify({ records, other: 1 })) },
  { weight: 3, arbitrary: deepJsonArb },
  { weight: 2, arbitrary: hugeNumberArb.map((number) => `[{"n":${number}}]`) },
  { weight: 1, arbitrary: hugeNumberArb.map((number) => `[{"j":{"a":[${number}]}}]`) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '[{"s":"\\u0000"}]',
      '[{"\\u0000":1}]',
      '[{"s":"\\ud800"}]',
      '[{"__proto__":{"x":1}}]',
      '[{"a":1,"2":2,"__proto__":3,"":4,"a":5,"10":6}]',
      '[{"t":"9999-12-31T23:59:59-15:00"},{"t":"0001-01-01T00:00:00+00:01"},{"t":"9999-12-31T23:59:59.9999995Z"}]',
      '[{"constructor":{"prototype":{"x":1}}}]',
      '1',
      'null',
      '"x"',
      '{}',
      '[]',
      '[1,2]',
      '[null]',
      '{"records":{}}',
      '{"records":null}',
      '{"records":[]}',
      '[{}]',
      '',
      ' ',
      '[{"a":1},]',
      '\ufeff[{"a":1}]',
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }) },
  // Many records that are not objects (issue 23: an error object was kept for each before max_errors was compared).
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 20_000 }).map((n) => `[${'1,'.repeat(n)}1]`) },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 20_000 }).map((n) => `{"records":[${'1,'.repeat(n)}1]}`) },
);

/** JSON whose strings hold invalid UTF-8 (lone continuation bytes, overlong forms, surrogates). */
const invalidUtf8JsonArb = fc
  .tuple(
    fc.constantFrom([0xff], [0xfe, 0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]),
    fc.boolean(),
  )
  .map(([bytes, inKey]) => concat(utf8(inKey ? '[{"' : '[{"a":"'), new Uint8Array(bytes), utf8(inKey ? '":1}]' : '"}]')));

const ndjsonTextArb = fc
  .record({
    lines: fc.array(
      fc.oneof(
        { weight: 4, arbitrary: recordArb.map((record) => JSON.stringify(record)) },
        { weight: 1, arbitrary: jsonTextArb },
        { weight: 1, arbitrary: fc.constant('') },
      ),
      { maxLength: 5 },
    ),
    newline: fc.constantFrom('\n', '\r\n', '\r'),
    bom: fc.boolean(),
  })
  .map(({ lines, newline, bom }) => (bom ? '\ufeff' : '') + lines.join(newline))
  .chain((text) =>
    fc.oneof(
      { weight: 9, arbitrary: fc.constant(text) },
      { weight: 1, arbitrary: fc.integer({ min: 100, max: 20_000 }).map((n) => text + '\n' + '1\n'.repeat(n)) },
    ),
  );

// Multipart: a well-formed upload but for one thing: its boundary, its Content-Type, its
// framing, a field, or the file part's name, file name, type or content.

/** Boundaries: RFC 2046's longest (70) and longer (up to 1000; a failure shrinks to the shortest that fails), empty, with quotes, spaces, non-ASCII. */
const hostileBoundaryArb = fc.oneof(
  fc.integer({ min: 70, max: 1000 }).map((n) => 'b'.repeat(n)),
  fc.constantFrom('', ' ', '"', 'a b', 'a;b', 'a"b', '\u00e9', '--', '-', 'x\ty', 'boundary=', '=', '\\'),
  fc.string({ unit: 'grapheme-ascii', maxLength: 80 }),
);

/** File names: NUL, paths, quotes, CR LF, control characters, non-ASCII, 300 characters; extensions in other cases, with NUL, none. */
const hostileFileNameArb = fc.oneof(
  fc
    .tuple(
      fc.oneof(
        fc.constantFrom(
          '../../etc/passwd',
          'a\u0000b',
          '\u0000',
          'a\u0000',
          'C:\\x\\y',
          'name with spaces',
          '"quoted"',
          'a"b',
          'é',
          '😀',
          '',
          'a\r\nX-Injected: 1',
          '\ud800',
          'a\u0001\u001f',
          '\u202ecsv.exe',
        ),
        fc.string({ unit: 'binary', maxLength: 20 }),
        fc.integer({ min: 250, max: 300 }).map((n) => 'f'.repeat(n)),
      ),
      fc.constantFrom('.csv', '.json', '.ndjson', '.jsonl'),
    )
    .map(([base, extension]) => base + extension),
  fc
    .tuple(
      fc.constantFrom('a', 'data'),
      fc.constantFrom('.CSV', '.txt', '', '.csv\u0000', '.csv\u0000.txt', '.txt\u0000.csv', '.csv.exe', '.json ', '.'),
    )
    .map(([base, extension]) => base + extension),
);

interface Part {
  name: string;
  fileName: string | undefined;
  /** filename*=UTF-8''… (RFC 5987) instead of a quoted filename. */
  extendedName: boolean;
  contentType: string | undefined;
  data: Uint8Array;
}

const BOMB_TEXT = `a\n${'x'.repeat(2 * 1024 ** 2)}\n`;

const filePartArb = validButOne<Part>(
  {
    name: fc.constant('file'),
    fileName: fc
      .tuple(fc.constantFrom('a', 'data', 'people'), fc.constantFrom('.csv', '.json', '.ndjson', '.jsonl'))
      .map(([base, extension]) => base + extension),
    extendedName: fc.constant(false),
    contentType: fc.constantFrom(undefined, 'text/csv', 'application/json'),
    data: fc
      .constantFrom(
        'a,b\n1,2\n',
        'a,b\n1\n',
        'id\n1\n2\n',
        '[{"a":1}]',
        '{"a":1}\n{"b":2}\n',
        // Header names an object would reorder or lose: digits, __proto__, repeated, empty.
        'a,2,b\nx,y,z\n',
        '10,1,__proto__,,a,a,constructor\n1,2,3,4,5,6,7\n',
        'id,v\n1\n2,b\n',
        'a;b;c\n1;8,493\n2;3;4\n',
        't\n9999-12-31T23:59:59-15:00\n2026-01-31T00:00:00Z\n',
        'n,j\n1e200000,"[1e200000]"\n',
        '{"n":1e200000}\n{"n":1}\n',
      )
      .map(utf8),
  },
  {
    name: fc.oneof(fc.constantFrom('FILE', 'other', '', 'file"', 'max_errors', 'file\u0000'), fc.string({ maxLength: 8 })),
    fileName: fc.oneof({ weight: 6, arbitrary: hostileFileNameArb }, { weight: 1, arbitrary: fc.constant(undefined) }),
    extendedName: fc.constant(true),
    contentType: fc.constantFrom('application/octet-stream', 'text/plain; charset=utf-16', '', 'multipart/mixed; boundary=x'),
    data: fc.oneof(
      fc.constantFrom('', 'a,b\n"unclosed\n', '\u0000\u0001', '\ufeffa,b\n1,2\n').map(utf8),
      jsonTextArb.map(utf8),
      fc.uint8Array({ maxLength: 512 }),
      // Decompression bombs past MAX_DECOMPRESSION_RATIO (a few KiB that expand to 2 MiB).
      fc.constantFrom(new Uint8Array(gzipSync(BOMB_TEXT)), zipOf({ 'bomb.csv': BOMB_TEXT })),
    ),
  },
);

/** A form field sent before the file: max_errors (valid), or a hostile one. */
const fieldPartArb = (hostile: boolean): fc.Arbitrary<Part> =>
  fc.record({
    name: hostile
      ? fc.oneof(fc.constantFrom('file', 'FILE', 'other', '', 'a\u0000', 'max_errors\u0000'), fc.string({ maxLength: 8 }))
      : fc.constant('max_errors'),
    fileName: fc.constant(undefined),
    extendedName: fc.constant(false),
    contentType: fc.constant(undefined),
    data: (hostile
      ? fc.oneof(hostileIntegerTextArb, hostileTextArb, fc.constant('x'.repeat(1025)))
      : fc.integer({ min: 0, max: 10 }).map(String)
    ).map(utf8),
  });

interface Multipart {
  boundary: string;
  /** The boundary the body uses, when not the header's. */
  bodyBoundary: string | undefined;
  headerForm: 'plain' | 'quoted' | 'missing' | 'empty' | 'twice';
  mediaType: string;
  parts: Part[];
  closed: boolean;
  preamble: string;
  newline: string;
}

const multipartArb = validButOne<Multipart>(
  {
    boundary: fc.oneof(fc.constant('----intake-fuzz-boundary'), fc.stringMatching(/^[0-9A-Za-z'()+_,\-./:=?]{1,70}$/)),
    bodyBoundary: fc.constant(undefined),
    headerForm: fc.constantFrom('plain', 'quoted'),
    mediaType: fc.constant('multipart/form-data'),
    parts: fc.tuple(fc.array(fieldPartArb(false), { maxLength: 1 }), filePartArb).map(([fields, file]) => [...fields, file]),
    closed: fc.constant(true),
    preamble: fc.constant(''),
    newline: fc.constant('\r\n'),
  },
  {
    boundary: hostileBoundaryArb,
    bodyBoundary: fc.oneof(fc.constant('----intake-fuzz-boundary-other'), hostileBoundaryArb),
    headerForm: fc.constantFrom('missing', 'empty', 'twice'),
    mediaType: fc.constantFrom('MULTIPART/FORM-DATA', 'multipart/mixed', 'multipart/form-data; charset=utf-8', 'multipart/related'),
    parts: fc.oneof<fc.Arbitrary<Part[]>[]>(
      fc.constant([]),
      fc.tuple(fieldPartArb(true), filePartArb).map(([field, file]) => [field, file]),
      fc.tuple(filePartArb, fc.oneof(fieldPartArb(false), filePartArb)).map(([file, after]) => [file, after]),
      fc.array(fieldPartArb(false), { minLength: 11, maxLength: 12 }),
    ),
    closed: fc.constant(false),
    preamble: fc.constantFrom('preamble\r\n', '\r\n', '--'),
    newline: fc.constant('\n'),
  },
  2,
).map(({ boundary, bodyBoundary, headerForm, mediaType, parts, closed, preamble, newline }): Payload => {
  const headerBoundary = boundary.replace(/[\r\n]/g, '');
  const used = bodyBoundary ?? headerBoundary;
  const param = {
    plain: `; boundary=${headerBoundary}`,
    quoted: `; boundary="${headerBoundary}"`,
    missing: '',
    empty: '; boundary=',
    twice: `; boundary=${headerBoundary}; boundary=other`,
  }[headerForm];
  const chunks: Uint8Array[] = [utf8(preamble)];
  for (const part of parts) {
    let disposition = `Content-Disposition: form-data; name="${part.name}"`;
    if (part.fileName !== undefined) {
      disposition += part.extendedName
        ? `; filename*=UTF-8''${percentEncode(part.fileName, /[A-Za-z0-9.\-_]/)}`
        : `; filename="${part.fileName}"`;
    }
    const type = part.contentType === undefined ? '' : `Content-Type: ${part.contentType}${newline}`;
    chunks.push(utf8(`--${used}${newline}${disposition}${newline}${type}${newline}`), part.data, utf8(newline));
  }
  if (closed) chunks.push(utf8(`--${used}--${newline}`));
  return { kind: 'multipart', contentType: `${mediaType}${param}`, body: concat(...chunks) };
});

const JSON_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'application/json;charset=UTF-8',
  'APPLICATION/JSON',
  'application/json; charset=latin1',
  'application/json; charset=utf-16le',
  'application/json; charset="utf-8"',
  'application/json ; charset=utf-8',
  'application/json; foo=bar',
  'application/json;',
];
const NDJSON_TYPES = [
  'application/x-ndjson',
  'application/x-ndjson; charset=utf-8',
  'APPLICATION/X-NDJSON',
  'application/x-ndjson; charset=latin1',
];
/** Types the API does not take for a submit (README: 415), and malformed ones. */
const OTHER_TYPES = [
  'text/plain',
  'text/plain; charset=utf-8',
  'text/csv',
  'application/octet-stream',
  'application/x-www-form-urlencoded',
  'multipart/form-data',
  'multipart/mixed; boundary=x',
  'application/ndjson',
  'application/jsonl',
  'application/vnd.api+json',
  'application/jsonx',
  'application/json, text/plain',
  'text/html; charset=utf-8',
  'application/xml',
  '*/*',
  'json',
  '',
  ';',
  '; charset=utf-8',
  'application/',
];
const ALL_TYPES = [...JSON_TYPES, ...NDJSON_TYPES, ...OTHER_TYPES];

const jsonPayloadArb = fc
  .oneof({ weight: 5, arbitrary: jsonTextArb.map((text) => utf8(text)) }, { weight: 1, arbitrary: invalidUtf8JsonArb })
  .map((body): Payload => ({ kind: 'json', contentType: 'application/json', body }));
const ndjsonPayloadArb = ndjsonTextArb.map((text): Payload => ({ kind: 'ndjson', contentType: 'application/x-ndjson', body: utf8(text) }));
const bytesPayloadArb = fc
  .uint8Array({ maxLength: 2048 })
  .map((body): Payload => ({ kind: 'bytes', contentType: 'application/octet-stream', body }));
const emptyPayload: Payload = { kind: 'empty', contentType: undefined, body: new Uint8Array() };

/** What a route is sent: mostly the kind of body it takes, and sometimes anything else; under its own Content-Type, mostly. */
function payloadArb(takes: Route['takes'], otherContentType: number): fc.Arbitrary<Payload> {
  const weights = {
    multipart: { multipart: 8, json: 1, ndjson: 0, bytes: 1, empty: 1 },
    json: { multipart: 1, json: 6, ndjson: 3, bytes: 1, empty: 1 },
    none: { multipart: 1, json: 1, ndjson: 0, bytes: 1, empty: 8 },
  }[takes];
  // Empty first: fast-check shrinks a oneof towards its first choice, and a body that plays no part in a failure shrinks away.
  const payload = fc.oneof(
    SHRINK_TO_FIRST,
    { weight: weights.empty, arbitrary: fc.constant(emptyPayload) },
    { weight: weights.multipart, arbitrary: multipartArb },
    { weight: weights.json, arbitrary: jsonPayloadArb },
    { weight: weights.ndjson, arbitrary: ndjsonPayloadArb },
    { weight: weights.bytes, arbitrary: bytesPayloadArb },
  );
  const contentType = fc.oneof(
    SHRINK_TO_FIRST,
    { weight: 10, arbitrary: fc.constant<'natural'>('natural') },
    { weight: otherContentType, arbitrary: fc.constantFrom(...ALL_TYPES) },
    { weight: 1, arbitrary: fc.constant<'none'>('none') },
  );
  return fc
    .tuple(payload, contentType)
    .map(([p, type]) => ({ ...p, contentType: type === 'natural' ? p.contentType : type === 'none' ? undefined : type }));
}

// --- Headers ---------------------------------------------------------------------------------

/** The valid token, as a Bearer credential (the scheme is case-insensitive). */
const validAuthArb = fc
  .constantFrom(`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `BEARER ${TOKEN}`)
  .map((value): [string, string][] => [['Authorization', value]]);

/**
 * Credentials that are not the valid token: none, near misses of it (one character changed,
 * cut short, extended, upper-cased), other schemes, the token elsewhere than Authorization,
 * and several wrong ones. Nothing RFC 6750 would read as the valid token.
 */
const invalidAuthArb: fc.Arbitrary<[string, string][]> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<[string, string][]>([]) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.nat({ max: TOKEN.length - 1 }), fc.constantFrom(...'0123456789abcdefABCDEFxyz!~'))
      .filter(([at, char]) => TOKEN[at] !== char)
      .map(([at, char]): [string, string][] => [['Authorization', `Bearer ${TOKEN.slice(0, at)}${char}${TOKEN.slice(at + 1)}`]]),
  },
  {
    weight: 1,
    arbitrary: fc.nat({ max: TOKEN.length - 1 }).map((n): [string, string][] => [['Authorization', `Bearer ${TOKEN.slice(0, n)}`]]),
  },
  {
    weight: 1,
    arbitrary: fc.stringMatching(/^[\x21-\x7e]{1,5}$/).map((extra): [string, string][] => [['Authorization', `Bearer ${TOKEN}${extra}`]]),
  },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom(
        `Bearer ${TOKEN.toUpperCase()}`,
        `Basic ${Buffer.from(`user:${TOKEN}`).toString('base64')}`,
        `Token ${TOKEN}`,
        `Bearer${TOKEN}`,
        TOKEN,
        'Bearer',
        'Bearer ',
        `Bearer ${'a'.repeat(8000)}`,
        `Bearer ${TOKEN},Bearer x`,
        `Bearer ${TOKEN.slice(0, 16)} ${TOKEN.slice(16)}`,
        `Bearer ${Buffer.from(TOKEN).toString('base64')}`,
        'Bearer \u00ff\u00fe',
      )
      .map((value): [string, string][] => [['Authorization', value]]),
  },
  {
    weight: 1,
    arbitrary: fc
      .string({ unit: 'grapheme-ascii', maxLength: 40 })
      .map((value): [string, string][] => [['Authorization', `Bearer ${value}`]]),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom<[string, string][]>(
      [['X-Api-Key', TOKEN]],
      [['Proxy-Authorization', `Bearer ${TOKEN}`]],
      [['Cookie', `token=${TOKEN}`]],
      [
        ['Authorization', 'Bearer wrong-token-0123456789'],
        ['Authorization', 'Bearer another-wrong-token-01'],
      ],
    ),
  },
);

/** Idempotency-Key values: the same two keys again and again (replays, reuse), printable, 255 and 256 long, empty, non-ASCII. */
const idempotencyKeyArb = fc.option(
  fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom('fuzz-key-1', 'fuzz-key-2') },
    { weight: 2, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 40 }) },
    { weight: 1, arbitrary: fc.integer({ min: 250, max: 300 }).map((n) => 'k'.repeat(n)) },
    { weight: 1, arbitrary: fc.constantFrom('', '\t', 'caf\u00e9', '\u00ff\u00fe', 'a\tb', 'a\u007fb') },
  ),
  { nil: undefined, freq: 2 },
);

/** Headers that change nothing for Intake but might for a sloppy handler or plugin. */
const noiseHeadersArb = fc.subarray<[string, string]>(
  [
    ['Accept', 'text/event-stream'],
    ['Accept-Encoding', 'gzip, br'],
    ['Origin', 'https://evil.example'],
    ['X-HTTP-Method-Override', 'DELETE'],
    ['X-Forwarded-Host', 'evil.example'],
    ['X-Forwarded-Proto', 'https'],
    ['Expect', '100-continue'],
    ['Content-Encoding', 'gzip'],
    ['Last-Event-ID', '99999999999999999999'],
    ['Range', 'bytes=0-1'],
  ],
  { maxLength: 2 },
);

// --- Requests --------------------------------------------------------------------------------

interface Route {
  name: string;
  /** How often it is chosen: the routes that read more input get more requests. */
  weight: number;
  methods: string[];
  /** The canonical path, from a job id. */
  path: (id: string) => string;
  params: ParamSpec;
  takes: 'multipart' | 'json' | 'none';
}

const ID = (id: string) => percentEncode(id, SEGMENT_SAFE);
const ROUTES: Route[] = [
  { name: 'GET /api/jobs', weight: 4, methods: ['GET', 'HEAD'], path: () => '/api/jobs', params: LIST_PARAMS, takes: 'none' },
  { name: 'GET /api/jobs/events', weight: 1, methods: ['GET', 'HEAD'], path: () => '/api/jobs/events', params: {}, takes: 'none' },
  { name: 'GET /api/job/{id}', weight: 1, methods: ['GET', 'HEAD'], path: (id) => `/api/job/${ID(id)}`, params: {}, takes: 'none' },
  {
    name: 'GET /api/job/{id}/events',
    weight: 1,
    methods: ['GET', 'HEAD'],
    path: (id) => `/api/job/${ID(id)}/events`,
    params: {},
    takes: 'none',
  },
  {
    name: 'GET /api/job/{id}/records',
    weight: 2,
    methods: ['GET', 'HEAD'],
    path: (id) => `/api/job/${ID(id)}/records`,
    params: PAGE_PARAMS,
    takes: 'none',
  },
  {
    name: 'GET /api/job/{id}/errors',
    weight: 2,
    methods: ['GET', 'HEAD'],
    path: (id) => `/api/job/${ID(id)}/errors`,
    params: PAGE_PARAMS,
    takes: 'none',
  },
  { name: 'POST /api/upload', weight: 4, methods: ['POST'], path: () => '/api/upload', params: SUBMIT_PARAMS, takes: 'multipart' },
  { name: 'POST /api/ingest/json', weight: 4, methods: ['POST'], path: () => '/api/ingest/json', params: SUBMIT_PARAMS, takes: 'json' },
  // Records-shaped bodies: refused (422) before anything is fetched, never reaching out.
  { name: 'POST /api/import', weight: 1, methods: ['POST'], path: () => '/api/import', params: {}, takes: 'json' },
  { name: 'POST /api/job/{id}/cancel', weight: 1, methods: ['POST'], path: (id) => `/api/job/${ID(id)}/cancel`, params: {}, takes: 'none' },
  {
    name: 'POST /api/job/{id}/retry',
    weight: 1,
    methods: ['POST'],
    path: (id) => `/api/job/${ID(id)}/retry`,
    params: SUBMIT_PARAMS,
    takes: 'none',
  },
  { name: 'DELETE /api/job/{id}', weight: 1, methods: ['DELETE'], path: (id) => `/api/job/${ID(id)}`, params: {}, takes: 'none' },
  {
    name: 'GET /api/job/{id}/deliveries',
    weight: 1,
    methods: ['GET', 'HEAD'],
    path: (id) => `/api/job/${ID(id)}/deliveries`,
    params: {},
    takes: 'none',
  },
  // Records-shaped bodies are never a schedule or a connection: refused (422) before anything is made or reached.
  { name: 'POST /api/schedules', weight: 1, methods: ['POST'], path: () => '/api/schedules', params: {}, takes: 'json' },
  { name: 'GET /api/schedules', weight: 1, methods: ['GET', 'HEAD'], path: () => '/api/schedules', params: {}, takes: 'none' },
  {
    name: 'GET /api/schedules/{id}',
    weight: 1,
    methods: ['GET', 'HEAD'],
    path: (id) => `/api/schedules/${ID(id)}`,
    params: {},
    takes: 'none',
  },
  {
    name: 'POST /api/schedules/{id}/pause',
    weight: 1,
    methods: ['POST'],
    path: (id) => `/api/schedules/${ID(id)}/pause`,
    params: {},
    takes: 'none',
  },
  {
    name: 'DELETE /api/schedules/{id}',
    weight: 1,
    methods: ['DELETE'],
    path: (id) => `/api/schedules/${ID(id)}`,
    params: {},
    takes: 'none',
  },
  { name: 'POST /api/connections', weight: 1, methods: ['POST'], path: () => '/api/connections', params: {}, takes: 'json' },
  { name: 'GET /api/connections', weight: 1, methods: ['GET', 'HEAD'], path: () => '/api/connections', params: {}, takes: 'none' },
  {
    name: 'DELETE /api/connections/{id}',
    weight: 1,
    methods: ['DELETE'],
    path: (id) => `/api/connections/${ID(id)}`,
    params: {},
    takes: 'none',
  },
];

/**
 * How hostile the parts of a request other than its query and body are. Without a token the
 * point is the spelling of the path (does any reach a handler?); with one it is reaching the
 * handlers, so the path, method, id and headers are mostly the ordinary ones.
 */
interface Hostility {
  /** Of 10 requests, how many have a respelled path. */
  spelled: number;
  /** Weight, against 10, of a method other than the route's (OPTIONS, others, lower case: a parser 400). */
  otherMethod: number;
  /** Weight, against 10, of a job id that names no job (a random or malformed one). */
  unknownId: number;
  /** One request in this many has another Host header (or none). */
  hostOneIn: number;
  /** Weight, against 10, of a Content-Type other than the body's own. */
  otherContentType: number;
}
const WITHOUT_TOKEN: Hostility = { spelled: 6, otherMethod: 3, unknownId: 4, hostOneIn: 5, otherContentType: 3 };
const WITH_TOKEN: Hostility = { spelled: 1, otherMethod: 1, unknownId: 3, hostOneIn: 20, otherContentType: 1 };

const methodArb = (route: Route, otherMethod: number) =>
  fc.oneof(
    SHRINK_TO_FIRST,
    { weight: 10, arbitrary: fc.constantFrom(...route.methods) },
    {
      weight: otherMethod,
      arbitrary: fc.constantFrom('OPTIONS', 'OPTIONS', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'TRACE', 'SEARCH', 'PROPFIND', 'get'),
    },
  );

/** A request to one of the routes, with `authArb`'s credentials. */
function requestArb(target: Target, authArb: fc.Arbitrary<[string, string][]>, hostility: Hostility): fc.Arbitrary<FuzzRequest> {
  // One arbitrary per route (rather than a chain from the route), so that a failure shrinks
  // within its route: to fewer parameters, a shorter body, an ordinary path.
  const perRoute = (route: Route) =>
    fc.record({
      route: fc.constant(route),
      method: methodArb(route, hostility.otherMethod),
      id: jobIdArb(target.jobIds, hostility.unknownId),
      spelling: fc.oneof(
        SHRINK_TO_FIRST,
        { weight: 10 - hostility.spelled, arbitrary: fc.constant(undefined) },
        { weight: hostility.spelled, arbitrary: spellingArb(target.port) },
      ),
      asterisk: fc.oneof(SHRINK_TO_FIRST, { weight: 40, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
      query: queryArb(route.params),
      auth: authArb,
      // Another Host, or none at all (a parser 400).
      host: sometimes(
        fc.oneof({ weight: 10, arbitrary: hostArb(target.port) }, { weight: 1, arbitrary: fc.constant(null) }),
        hostility.hostOneIn,
      ),
      payload: payloadArb(route.takes, hostility.otherContentType),
      idempotencyKey: route.takes === 'none' ? fc.constant(undefined) : idempotencyKeyArb,
      noise: mostly(fc.constant<[string, string][]>([]), noiseHeadersArb, 3),
      chunkAt: sometimes(fc.nat(), 8),
    });
  return fc.oneof(...ROUTES.map((route) => ({ weight: route.weight, arbitrary: perRoute(route) }))).map((r): FuzzRequest => {
    const path = r.spelling ? spell(r.route.path(r.id), r.spelling) : r.route.path(r.id);
    const headers: [string, string][] = [];
    if (r.host !== null) headers.push(['Host', r.host ?? `127.0.0.1:${target.port}`]);
    headers.push(...r.auth);
    if (r.payload.contentType !== undefined) headers.push(['Content-Type', r.payload.contentType]);
    if (r.idempotencyKey !== undefined) headers.push(['Idempotency-Key', r.idempotencyKey]);
    headers.push(...r.noise);
    return withDescription({
      route: r.route.name,
      method: r.method,
      target: r.asterisk && r.method === 'OPTIONS' ? '*' : path + r.query,
      // A CR or LF would end the header early: keep each request one well-framed request.
      headers: headers.map(([name, value]): [string, string] => [name, value.replace(/[\r\n]/g, '')]),
      body: r.payload.body,
      chunkAt: r.payload.body.length > 0 ? r.chunkAt : undefined,
    });
  });
}

/** Submits with the token, to the canonical paths, with bodies the API would take, under every Content-Type: (d). */
function submitArb(target: Target): fc.Arbitrary<FuzzRequest> {
  const validJson = fc.array(recordArb, { minLength: 1, maxLength: 3 }).map((records) => utf8(JSON.stringify(records)));
  const validNdjson = fc
    .array(recordArb, { minLength: 1, maxLength: 3 })
    .map((records) => utf8(records.map((record) => JSON.stringify(record)).join('\n')));
  const boundary = '----intake-fuzz-boundary';
  const validUpload = fc
    .constantFrom('a.csv', 'a.json', 'a.ndjson')
    .map((name) =>
      utf8(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\n\r\n${name.endsWith('.csv') ? 'a,b\n1,2\n' : '{"a":1}\n'}\r\n--${boundary}--\r\n`,
      ),
    );
  const types = fc.constantFrom(
    ...ALL_TYPES,
    ...[`multipart/form-data; boundary=${boundary}`, `multipart/mixed; boundary=${boundary}`, `text/plain; boundary=${boundary}`],
  );
  return fc
    .record({
      route: fc.constantFrom('POST /api/upload', 'POST /api/ingest/json'),
      body: fc.oneof(validJson, validNdjson, validUpload),
      contentType: fc.option(types, { nil: undefined, freq: 20 }),
      auth: validAuthArb,
    })
    .map(({ route, body, contentType, auth }) =>
      withDescription({
        route,
        method: 'POST',
        target: route.slice('POST '.length),
        headers: [
          ['Host', `127.0.0.1:${target.port}`],
          ...auth,
          ...(contentType === undefined ? [] : [['Content-Type', contentType] as [string, string]]),
        ],
        body,
      }),
    );
}

/** fast-check prints a counterexample with this: the request as it went on the wire. */
function withDescription(request: FuzzRequest): FuzzRequest {
  return Object.defineProperty(request, fc.toStringMethod, { value: () => describeRequest(request), enumerable: false });
}

function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}
const contentTypeOf = (request: FuzzRequest) => request.headers.find(([name]) => name.toLowerCase() === 'content-type')?.[1];

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/** How the answers of one property were spread, printed after it: does the fuzzing reach the handlers? */
function tally(): { add(answer: Answer): void; summary(): string } {
  const counts = new Map<string, number>();
  return {
    add(answer) {
      const key = answer.status === undefined ? answer.ending : String(answer.status);
      counts.set(key, (counts.get(key) ?? 0) + 1);
    },
    summary: () =>
      [...counts]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([key, n]) => `${key}×${n}`)
        .join(' '),
  };
}

// Scale-out mode adds Redis and a worker process, not HTTP surface: embedded and PostgreSQL only.
describe.each(backends().filter((backend) => backend.name !== 'scale-out'))('HTTP fuzzing ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  let target: Target;
  const bearer = { authorization: `Bearer ${TOKEN}` };

  async function submitAndWait(path: string, init: RequestInit): Promise<string> {
    const res = await fetch(server.url + path, {
      method: 'POST',
      ...init,
      headers: { ...bearer, ...(init.headers as Record<string, string>) },
    });
    expect(res.status, `setup: POST ${path}`).toBe(202);
    const { job_id: jobId } = (await res.json()) as { job_id: string };
    const deadline = Date.now() + 30_000;
    for (;;) {
      const job = (await (await fetch(`${server.url}/api/job/${jobId}`, { headers: bearer })).json()) as { status: JobStatus };
      if (TERMINAL_STATUSES.has(job.status)) return jobId;
      if (Date.now() > deadline) throw new Error(`setup: job ${jobId} still ${job.status}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  const upload = (name: string, content: string) => {
    const form = new FormData();
    form.append('file', new Blob([content]), name);
    return form;
  };

  /** The jobs as the API lists them (with the token): the same before and after, if nothing reached a handler. */
  async function jobListing(): Promise<string> {
    const res = await fetch(`${server.url}/api/jobs?limit=100&total=true`, { headers: bearer });
    expect(res.status).toBe(200);
    return res.text();
  }

  beforeAll(async () => {
    expect(TOKEN).toHaveLength(32);
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { API_TOKENS: TOKEN, SECRET_KEY: 'ab'.repeat(32) });
    // Jobs to aim at: one completed with records, one failed (retryable), one with row errors.
    const completed = await submitAndWait('/api/ingest/json', {
      body: '[{"a":1},{"a":2}]',
      headers: { 'content-type': 'application/json' },
    });
    const failed = await submitAndWait('/api/upload', { body: upload('bad.csv', 'a,b\n1\n') });
    const withErrors = await submitAndWait('/api/upload?max_errors=5', { body: upload('some-bad.csv', 'a,b\n1,2\n3\n4,5\n') });
    target = { port: Number(new URL(server.url).port), jobIds: [completed, failed, withErrors] };
  });

  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  /** Runs one property over `arb`; afterwards the server must have recorded no 5xx for its requests. */
  async function fuzz(label: string, arb: fc.Arbitrary<FuzzRequest>, problemsOf: (request: FuzzRequest, answer: Answer) => string[]) {
    const counts = tally();
    const before = server.statuses.length;
    try {
      await fc.assert(
        fc.asyncProperty(arb, async (request) => {
          const answer = await exchange(target.port, request);
          counts.add(answer);
          const problems = problemsOf(request, answer);
          if (problems.length > 0) throw new Error(report(request, answer, problems));
        }),
        runParameters(),
      );
    } finally {
      console.info(`fuzz ${backend.name} ${label}: ${counts.summary()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100)); // onResponse runs after the last byte is out
    expect(
      server.statuses.slice(before).filter((status) => status >= 500),
      `${label}: statuses the server recorded`,
    ).toEqual([]);
  }

  it(
    '(a) without a valid token no request reaches an /api handler: no 2xx or 3xx, no event stream, nothing changed',
    async () => {
      const listing = await jobListing();
      await fuzz('(a)', requestArb(target, invalidAuthArb, WITHOUT_TOKEN), (_request, answer) => [
        ...answerProblems(answer),
        ...unauthorizedProblems(answer),
      ]);
      expect(await jobListing(), 'the jobs changed while no request had a valid token').toBe(listing);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    '(c) with the token, no request is answered 5xx, left unanswered, or answered with broken JSON',
    async () => {
      await fuzz('(c)', requestArb(target, validAuthArb, WITH_TOKEN), (_request, answer) => answerProblems(answer));
    },
    TEST_TIMEOUT_MS,
  );

  it(
    '(d) a submit is accepted only as multipart (upload) or JSON / NDJSON (ingest)',
    async () => {
      const documented: Record<string, string[]> = {
        'POST /api/upload': ['multipart/form-data'],
        'POST /api/ingest/json': ['application/json', 'application/x-ndjson'],
      };
      await fuzz('(d)', submitArb(target), (request, answer) => {
        const problems = answerProblems(answer);
        const type = mediaType(contentTypeOf(request));
        if (answer.status !== undefined && answer.status < 300 && !documented[request.route]!.includes(type)) {
          problems.push(
            `accepted (${answer.status}) a body sent as ${JSON.stringify(contentTypeOf(request) ?? '(no Content-Type)')}: the API takes ${documented[request.route]!.join(' or ')} (else 415)`,
          );
        }
        return problems;
      });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "(e) a CSV's columns keep their own values, whatever the header's names and delimiter",
    async () => {
      const nameArb = fc.oneof(
        fc.constantFrom(
          '2',
          '10',
          '0',
          '1',
          '-1',
          '1.5',
          '4294967294',
          '4294967295',
          '9007199254740993',
          '__proto__',
          'constructor',
          'toString',
          'hasOwnProperty',
          '',
          ' ',
          'a',
          'A',
          'id',
        ),
        fc.string({ maxLength: 4 }).filter((name) => !/[,;\t|"\r\n\ufeff]/.test(name)),
      );
      const csvArb = fc
        .record({ names: fc.array(nameArb, { minLength: 1, maxLength: 8 }), delimiter: fc.constantFrom(',', ';', '\t', '|') })
        .filter(({ names }) => names.length > 1 || names[0] !== ''); // one empty name is an empty line, skipped
      const runs = Math.min(RUNS, 40);
      await fc.assert(
        fc.asyncProperty(csvArb, async ({ names, delimiter }) => {
          const values = names.map((_, i) => `v${i}`);
          const csv = `${names.join(delimiter)}\n${values.join(delimiter)}\n`;
          const jobId = await submitAndWait(`/api/upload?${new URLSearchParams({ dataset: 'fuzz_names', mode: 'replace', delimiter })}`, {
            body: upload('names.csv', csv),
          });
          const records = (await (await fetch(`${server.url}/api/job/${jobId}/records`, { headers: bearer })).json()) as {
            results: { data: Record<string, unknown> }[];
          };
          const expected = Object.fromEntries(headerKeys(names).map((name, i) => [name, values[i]]));
          expect(
            records.results.map((r) => r.data),
            JSON.stringify(csv),
          ).toEqual([expected]);
        }),
        { ...runParameters(), numRuns: runs } as fc.Parameters<[{ names: string[]; delimiter: string }]>,
      );
    },
    TEST_TIMEOUT_MS,
  );

  it('(b) over the whole run, the server sent no 5xx', async () => {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const failures = server.statuses.filter((status) => status >= 500);
    expect(failures, `${failures.length} of ${server.statuses.length} answers were 5xx`).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// POST /api/sql: the adversarial run's spellings, combined
// ---------------------------------------------------------------------------------------------

/** What a query must never reach, in the spellings PostgreSQL takes for each. */
const SQL_TARGETS = [
  'pg_authid',
  'PG_AUTHID',
  '"pg_authid"',
  'pg_catalog.pg_authid',
  '"pg_catalog"."pg_authid"',
  'Pg_Catalog."pg_authid"',
  'pg_shadow',
  'pg_stat_activity',
  'pg_file_settings',
  'pg_hba_file_rules',
  'pg_stats',
  'pg_statistic',
  'pg_settings',
  'pg_largeobject',
  'pg_user_mappings',
  'ingest_jobs',
  'public.ingest_jobs',
  '"public"."ingest_jobs"',
  'ingest_idempotency_keys',
  'intake_connections',
  'intake_migrations',
  'intake_stage.job_x',
  'information_schema.tables',
  'pg_temp.x',
  'pg_toast.pg_toast_1',
];
const SQL_CALLS = [
  "pg_read_file('/etc/passwd')",
  "pg_ls_dir('.')",
  "current_setting('data_directory')",
  "set_config('role', 'postgres', true)",
  "query_to_xml('select * from pg_authid', true, true, '')",
  "lo_import('/etc/passwd')",
  'pg_sleep(1)',
  "pg_stat_file('PG_VERSION')",
  "pg_catalog.pg_read_binary_file('/etc/passwd')",
  "to_regclass('pg_authid')",
  'txid_current()',
  "pg_catalog.set_config('search_path', 'public', true)",
  "xpath('/a', query_to_xml('select 1', true, true, ''))",
  "dblink('dbname=postgres', 'select 1')",
];

/** A query that reads `target` (a catalog or Intake's own table) or calls something refused, wrapped so that no WITH name can stand for it. */
const sqlAttackArb: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(
      fc
        .constantFrom(...SQL_TARGETS)
        .chain((target) =>
          fc
            .constantFrom(
              `select * from ${target}`,
              `table ${target}`,
              `select count(*) from ${target}`,
              `select (select count(*) from ${target})`,
              `select 1 where exists (select 1 from ${target})`,
              `with recursive r as (select * from ${target}) select * from r`,
            )
            .map((sql) => ({ sql, name: target.split('.').at(-1)! })),
        ),
      fc.constantFrom(...SQL_CALLS).map((call) => ({ sql: `select ${call}`, name: 'x' })),
    ),
    // Each wrapping keeps the inner query out of the scope of any WITH named like its target
    // (so no WITH RECURSIVE named so: its name is visible in its own body).
    fc.array(
      fc.constantFrom(
        (x: string, n: string) => `with ${n} as (${x}) select * from ${n}`,
        (x: string, n: string) => `WITH ${n.toUpperCase().startsWith('"') ? n : n.toUpperCase()} AS (${x}) TABLE ${n}`,
        (x: string, n: string) => `with a as (select 1), ${n} as (${x}), b as (select 2) select * from ${n}`,
        (x: string, n: string) => `with a as (${x}), ${n} as (select 1) select * from a`,
        (x: string) => `select * from (${x}) s`,
        (x: string) => `select (select count(*) from (${x}) s)`,
        (x: string) => `select * from (select 1) p, lateral (${x}) s`,
        (x: string) => `select 1 where exists (${x})`,
        (x: string, n: string) => `(with ${n} as (select 1) select * from ${n}) union all (${x})`,
        (x: string, n: string) => `with q as (with ${n} as (${x}) select * from ${n}) select * from q`,
      ),
      { maxLength: 3 },
    ),
  )
  .map(([{ sql, name }, wraps]) => wraps.reduce((inner, wrap) => wrap(inner, name), sql));

describe.each(backends().filter((backend) => backend.name !== 'scale-out'))('SQL fuzzing ($name)', (backend) => {
  const SECRET = 'fuzz-secret-idempotency-key-0123';
  let dataDirectory: string;
  let sandbox: Sandbox;
  let server: TestServer;

  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { SQL_TIMEOUT_MS: '2000' });
    dataDirectory = (await server.intake.db.query<{ data_directory: string }>('SHOW data_directory')).rows[0]!.data_directory;
    const form = new FormData();
    form.append('file', new Blob(['a\n1\n']), 'people.csv');
    const res = await fetch(`${server.url}/api/upload?dataset=people`, {
      method: 'POST',
      body: form,
      headers: { 'idempotency-key': SECRET },
    });
    expect(res.status).toBe(202);
    await server.intake.db.exec('ANALYZE'); // pg_stats then samples ingest_jobs, the key among them
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  it(
    "(f) a query reaching a catalog or Intake's own tables is refused (422) however it is spelled or wrapped, never answered",
    async () => {
      await fc.assert(
        fc.asyncProperty(sqlAttackArb, async (sql) => {
          const res = await fetch(`${server.url}/api/sql`, {
            method: 'POST',
            body: JSON.stringify({ sql }),
            headers: { 'content-type': 'application/json' },
          });
          const text = await res.text();
          if (res.status !== 422 || !/^\{"detail":.*"code":"sql_/.test(text) || text.includes(SECRET))
            throw new Error(`${sql}\n→ ${res.status} ${text.slice(0, 300)}`);
        }),
        { numRuns: RUNS, ...(SEED !== undefined && { seed: SEED }) },
      );
      expect(server.statuses.filter((status) => status >= 500)).toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "(g) run as the role intake_sql with no guard at all, the same queries read nothing of Intake's and no secret",
    async () => {
      await fc.assert(
        fc.asyncProperty(sqlAttackArb, async (sql) => {
          const answer = await server.intake.db.transaction(async (tx) => {
            await tx.exec('SET TRANSACTION READ ONLY; SET LOCAL statement_timeout = 2000; SET LOCAL ROLE intake_sql');
            expect((await tx.query('SELECT current_user AS who')).rows).toEqual([{ who: 'intake_sql' }]);
            await tx.exec('SAVEPOINT attack');
            return tx.query(sql).then(
              (result) => JSON.stringify(result.rows),
              async (err: { code?: string; message: string }) => {
                await tx.exec('ROLLBACK TO SAVEPOINT attack');
                return `${err.code}: ${err.message}`;
              },
            );
          });
          // pg_sleep and the like may run; reading a file, a setting, Intake's tables or a role's password may not.
          if (
            answer.includes(SECRET) ||
            answer.includes(dataDirectory) ||
            /rolpassword|SCRAM-SHA-256|root:|"idempotency_key"|"job_id"/.test(answer) ||
            /^(XX|58)/.test(answer)
          ) {
            throw new Error(`${sql}\n→ ${answer.slice(0, 300)}`);
          }
        }),
        { numRuns: RUNS, ...(SEED !== undefined && { seed: SEED }) },
      );
    },
    TEST_TIMEOUT_MS,
  );
});

// ---------------------------------------------------------------------------------------------
// The import address check (SSRF): an IPv4 address carried in IPv6, in any spelling
// ---------------------------------------------------------------------------------------------

describe('the import address check', () => {
  const hex = (a: number, b: number) => ((a << 8) | b).toString(16);
  /** An IPv6 address's eight groups spelled some way: upper or lower case, zero-padded or not, the longest zero run as `::` or not. */
  const spellings = (groups: string[]) =>
    fc.record({ upper: fc.boolean(), pad: fc.boolean(), compress: fc.boolean() }).map(({ upper, pad, compress }) => {
      const words = groups.map((g) => (pad ? g.padStart(4, '0') : g.replace(/^0+(?=.)/, '')));
      let text = words.join(':');
      if (compress) {
        const zero = pad ? '0000' : '0';
        const runs = [...text.matchAll(new RegExp(`(^|:)(${zero}(:${zero})+)(:|$)`, 'g'))];
        const longest = runs.sort((x, y) => y[2]!.length - x[2]!.length)[0];
        if (longest) text = `${text.slice(0, longest.index)}::${text.slice(longest.index + longest[0].length)}`;
      }
      return upper ? text.toUpperCase() : text;
    });

  it('refuses IPv4-mapped, -compatible and NAT64 addresses whatever they carry, and 6to4 and Teredo ones exactly when what they carry is refused', async () => {
    const { isPublicAddress } = await import('../src/net/fetch.js');
    const v4Arb = fc.oneof(
      fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)),
      fc.constantFrom<[number, number, number, number]>(
        [127, 0, 0, 1],
        [10, 1, 2, 3],
        [192, 168, 1, 1],
        [169, 254, 169, 254],
        [172, 16, 0, 1],
        [100, 64, 0, 1],
        [0, 0, 0, 0],
        [8, 8, 8, 8],
      ),
    );
    fc.assert(
      fc.property(
        v4Arb.chain((v4) => {
          const [a, b, c, d] = v4;
          const hi = hex(a, b);
          const lo = hex(c, d);
          const always = [
            ['0', '0', '0', '0', '0', 'ffff', hi, lo], // IPv4-mapped
            ['0', '0', '0', '0', '0', '0', hi, lo], // IPv4-compatible
            ['64', 'ff9b', '0', '0', '0', '0', hi, lo], // NAT64
          ];
          const carried = [
            ['2002', hi, lo, '0', '0', '0', '0', '1'], // 6to4
            ['2001', '0', hi, lo, '0', '0', 'f7f7', 'f7f7'], // Teredo: this server, client 8.8.8.8
            ['2001', '0', '808', '808', '0', '0', hex(a ^ 255, b ^ 255), hex(c ^ 255, d ^ 255)], // Teredo: server 8.8.8.8, this client
          ];
          return fc.tuple(fc.constant(v4), fc.tuple(...always.map(spellings)), fc.tuple(...carried.map(spellings)));
        }),
        ([v4, always, carried]) => {
          for (const address of always) expect(isPublicAddress(address), address).toBe(false);
          for (const address of carried) expect(isPublicAddress(address), address).toBe(isPublicAddress(v4.join('.')));
        },
      ),
      { numRuns: RUNS, ...(SEED !== undefined && { seed: SEED }) },
    );
  });
});
