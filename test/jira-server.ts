/**
 * A Jira test server, written from Atlassian's REST API v3 reference, over real HTTP on
 * loopback: Basic auth with an email and an API token; GET /rest/api/3/myself; GET
 * /rest/api/3/search/jql paged by nextPageToken (isLast on the last page; only ids unless
 * `fields` are asked for; `updated >= <epoch ms>` or a date as text, which it reads in the
 * account's time zone, as Jira does); the retired /rest/api/3/search answers 410 Gone. Tests
 * can queue faults (429 with Retry-After, 503, 400 with Jira's error body) and stall a page
 * (hold its answer until they release it).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface JiraIssue {
  id: string;
  key: string;
  fields: {
    summary: string;
    status: { name: string };
    issuetype: { name: string };
    priority: { name: string };
    assignee: { displayName: string } | null;
    reporter: { displayName: string };
    created: string;
    updated: string;
    resolutiondate: string | null;
    labels: string[];
    project: { key: string };
  };
}

/** Jira writes times as 2024-01-02T10:20:30.000+0000. */
export const jiraTime = (ms: number) => new Date(ms).toISOString().replace('Z', '+0000');

/** A page whose answer is held. */
export interface Stall {
  /** Settles when a search first asks for the page (its answer is then held). */
  reached: Promise<void>;
  /** Answers the held searches, and every later one for the page, as usual. */
  release(): void;
  /** Settles when a client closes its connection while its search is held (it gave up on it). */
  dropped: Promise<void>;
}

export interface JiraServer {
  url: string;
  email: string;
  token: string;
  /** The account's time zone (IANA): JQL reads a date written as text in it, and /myself reports it. */
  timeZone: string;
  issues: JiraIssue[];
  /** Answers the next search requests with these, one each, before answering normally. */
  faults: { status: number; retryAfter?: string; body?: unknown }[];
  /** The JQL of each search, as received. */
  searches: string[];
  /** Authorization headers seen, to check what was sent. */
  requests: { path: string; authorization: string | undefined }[];
  /** Holds the answer to every search for its nth page (1: the first) until released. */
  stall(page: number): Stall;
  close(): Promise<void>;
}

/**
 * The instant (epoch ms) a wall-clock time in an IANA time zone names. The zone's offset at an
 * instant is its wall clock there (from Intl), read as if UTC, less the instant; it is taken
 * once at the wall-clock time read as UTC, then again at the instant found, which is right
 * across a change of offset (daylight saving) unless the time is in the hour skipped.
 */
export function zonedTime(timeZone: string, year: number, month: number, day: number, hour: number, minute: number): number {
  const format = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  });
  const offsetAt = (ms: number) => {
    const part = Object.fromEntries(format.formatToParts(ms).map((p) => [p.type, Number(p.value)]));
    const seconds = Math.floor(ms / 1000) * 1000;
    return Date.UTC(part.year!, part.month! - 1, part.day, part.hour, part.minute, part.second) - seconds;
  };
  const asUtc = Date.UTC(year, month - 1, day, hour, minute);
  return asUtc - offsetAt(asUtc - offsetAt(asUtc));
}

// The forms of a date as text JQL takes (besides periods such as -5d, not served here).
const TEXT_DATE = /^(\d{4})([-/])(\d{1,2})\2(\d{1,2})(?: (\d{1,2}):(\d{2}))?$/;

/** `updated >= <value>` as an instant: epoch ms as a bare integer, else a date as text in the account's zone; undefined if invalid. */
function sinceOf(value: string, timeZone: string): number | undefined {
  if (/^\d+$/.test(value)) return Number(value);
  const text = /^"(.*)"$|^'(.*)'$/.exec(value);
  const m = TEXT_DATE.exec(text ? (text[1] ?? text[2]!) : value);
  if (!m) return undefined;
  const [year, month, day, hour, minute] = [m[1], m[3], m[4], m[5] ?? '0', m[6] ?? '0'].map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const valid = month >= 1 && month <= 12 && day >= 1 && day <= new Date(Date.UTC(year, month, 0)).getUTCDate() && hour < 24 && minute < 60;
  return valid ? zonedTime(timeZone, year, month, day, hour, minute) : undefined;
}

export async function startJira(options: { email?: string; token?: string; timeZone?: string } = {}): Promise<JiraServer> {
  const email = options.email ?? 'ada@example.com';
  const token = options.token ?? 'ATATT3xFfGF0-test-token';
  const timeZone = options.timeZone ?? 'Pacific/Kiritimati'; // UTC+14: a date as text read as UTC is 14 hours off
  new Intl.DateTimeFormat('en-US', { timeZone }); // an unknown zone throws here, not at the first search
  const requests: JiraServer['requests'] = [];
  const issues: JiraIssue[] = [];
  const faults: JiraServer['faults'] = [];
  const searches: string[] = [];
  const stalls = new Map<number, { reached(res: ServerResponse): void; released: Promise<void>; release(): void }>();
  const server: Server = createServer((req, res) => void answer(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const jira: JiraServer = {
    url: `http://127.0.0.1:${port}`,
    email,
    token,
    timeZone,
    requests,
    issues,
    faults,
    searches,
    stall(page) {
      let reached!: () => void;
      let release!: () => void;
      let dropped!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const held = {
        reached: (res: ServerResponse) => {
          reached();
          res.once('close', () => !res.writableFinished && dropped());
        },
        released,
        release: () => {
          if (stalls.get(page) === held) stalls.delete(page);
          release();
        },
      };
      stalls.set(page, held);
      return {
        reached: new Promise<void>((resolve) => (reached = resolve)),
        release: held.release,
        dropped: new Promise<void>((resolve) => (dropped = resolve)),
      };
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const stall of stalls.values()) stall.release();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };

  async function answer(req: IncomingMessage, res: ServerResponse) {
    const path = req.url!.split('?')[0]!;
    requests.push({ path, authorization: req.headers.authorization });
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const expected = `Basic ${Buffer.from(`${email}:${token}`).toString('base64')}`;
    if (req.headers.authorization !== expected) {
      return json(401, { errorMessages: ['You are not authorized to perform this operation. Please log in.'], errors: {} });
    }
    if (path === '/rest/api/3/myself')
      return json(200, {
        accountId: '5b10a2844c20165700ede21g',
        emailAddress: email,
        displayName: 'Ada Lovelace',
        timeZone: jira.timeZone,
      });
    if (path === '/rest/api/3/search/jql') {
      const params = new URL(req.url!, 'http://x').searchParams;
      const jql = params.get('jql') ?? '';
      searches.push(jql);
      const fault = faults.shift();
      if (fault) {
        res.writeHead(fault.status, {
          'content-type': 'application/json',
          ...(fault.retryAfter !== undefined && { 'retry-after': fault.retryAfter }),
        });
        return res.end(JSON.stringify(fault.body ?? { errorMessages: [`fault ${fault.status}`] }));
      }
      // The JQL this server reads: (project = KEY) [AND updated >= <ms or date>] [ORDER BY updated ASC, id ASC].
      // A date with a time must be quoted (Jira reads an unquoted one as two terms).
      const match = /^\(project = ([A-Z]+)\)(?: AND updated >= (\d+|"[^"]*"|'[^']*'|[^\s"']+))?(?: ORDER BY updated ASC, id ASC)?$/.exec(
        jql,
      );
      if (!match)
        return json(400, { errorMessages: [`Error in the JQL Query: the query ${JSON.stringify(jql)} is not valid here.`], errors: {} });
      const since = match[2] === undefined ? -Infinity : sinceOf(match[2], jira.timeZone);
      if (since === undefined) {
        const value = match[2]!.replace(/^["']|["']$/g, '');
        return json(400, {
          errorMessages: [
            `Date value '${value}' for field 'updated' is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'.`,
          ],
          errors: {},
        });
      }
      const max = Math.min(Number(params.get('maxResults') ?? 50), 100);
      const start = Number(Buffer.from(params.get('nextPageToken') ?? 'MA', 'base64url').toString() || 0);
      const stall = stalls.get(Math.floor(start / max) + 1);
      if (stall) {
        // Held before the issues are selected: the answer is what Jira holds when it is sent.
        stall.reached(res);
        await stall.released;
      }
      const selected = issues
        .filter((issue) => issue.fields.project.key === match[1] && Date.parse(issue.fields.updated.replace('+0000', 'Z')) >= since)
        .sort((a, b) => a.fields.updated.localeCompare(b.fields.updated) || Number(a.id) - Number(b.id));
      const page = selected.slice(start, start + max);
      const fields = params.get('fields');
      const isLast = start + max >= selected.length;
      return json(200, {
        issues: page.map((issue) => (fields ? issue : { id: issue.id })),
        isLast,
        ...(!isLast && { nextPageToken: Buffer.from(String(start + max)).toString('base64url') }),
      });
    }
    if (path === '/rest/api/3/search')
      return json(410, { errorMessages: ['The requested API has been removed. Please migrate to the /rest/api/3/search/jql API.'] });
    return json(404, { errorMessages: ['Not found'] });
  }

  return jira;
}
