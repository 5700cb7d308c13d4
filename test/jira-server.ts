/**
 * A Jira test server, written from Atlassian's REST API v3 reference, over real HTTP on
 * loopback: Basic auth with an email and an API token; GET /rest/api/3/myself; GET
 * /rest/api/3/search/jql paged by nextPageToken (isLast on the last page; only ids unless
 * `fields` are asked for; `updated >= <epoch ms>` or a date as text, which it reads in the
 * account's time zone, as Jira does); the retired /rest/api/3/search answers 410 Gone. Tests
 * can queue faults (429 with Retry-After, 503, 400 with Jira's error body).
 */
import { createServer, type Server } from 'node:http';

export interface JiraIssue {
  id: string;
  key: string;
  fields: { summary: string; status: { name: string }; issuetype: { name: string }; priority: { name: string }; assignee: { displayName: string } | null; reporter: { displayName: string }; created: string; updated: string; resolutiondate: string | null; labels: string[]; project: { key: string } };
}

/** Jira writes times as 2024-01-02T10:20:30.000+0000. */
export const jiraTime = (ms: number) => new Date(ms).toISOString().replace('Z', '+0000');

export interface JiraServer {
  url: string;
  email: string;
  token: string;
  issues: JiraIssue[];
  /** Answers the next search requests with these, one each, before answering normally. */
  faults: { status: number; retryAfter?: string; body?: unknown }[];
  /** The JQL of each search, as received. */
  searches: string[];
  /** Authorization headers seen, to check what was sent. */
  requests: { path: string; authorization: string | undefined }[];
  close(): Promise<void>;
}

export async function startJira(options: { email?: string; token?: string } = {}): Promise<JiraServer> {
  const email = options.email ?? 'ada@example.com';
  const token = options.token ?? 'ATATT3xFfGF0-test-token';
  const requests: JiraServer['requests'] = [];
  const issues: JiraIssue[] = [];
  const faults: JiraServer['faults'] = [];
  const searches: string[] = [];
  const server: Server = createServer((req, res) => {
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
    if (path === '/rest/api/3/myself') return json(200, { accountId: '5b10a2844c20165700ede21g', emailAddress: email, displayName: 'Ada Lovelace', timeZone: 'Pacific/Kiritimati' });
    if (path === '/rest/api/3/search/jql') {
      const params = new URL(req.url!, 'http://x').searchParams;
      const jql = params.get('jql') ?? '';
      searches.push(jql);
      const fault = faults.shift();
      if (fault) {
        res.writeHead(fault.status, { 'content-type': 'application/json', ...(fault.retryAfter !== undefined && { 'retry-after': fault.retryAfter }) });
        return res.end(JSON.stringify(fault.body ?? { errorMessages: [`fault ${fault.status}`] }));
      }
      // The JQL this server reads: project = KEY [AND updated >= <ms>] [ORDER BY updated ASC, id ASC].
      const match = /^\(project = ([A-Z]+)\)(?: AND updated >= (\d+))?(?: ORDER BY updated ASC, id ASC)?$/.exec(jql);
      if (!match) return json(400, { errorMessages: [`Error in the JQL Query: the query ${JSON.stringify(jql)} is not valid here.`], errors: {} });
      const since = match[2] === undefined ? -Infinity : Number(match[2]);
      const selected = issues
        .filter((issue) => issue.fields.project.key === match[1] && Date.parse(issue.fields.updated.replace('+0000', 'Z')) >= since)
        .sort((a, b) => a.fields.updated.localeCompare(b.fields.updated) || Number(a.id) - Number(b.id));
      const max = Math.min(Number(params.get('maxResults') ?? 50), 100);
      const start = Number(Buffer.from(params.get('nextPageToken') ?? 'MA', 'base64url').toString() || 0);
      const page = selected.slice(start, start + max);
      const fields = params.get('fields');
      const isLast = start + max >= selected.length;
      return json(200, {
        issues: page.map((issue) => (fields ? issue : { id: issue.id })),
        isLast,
        ...(!isLast && { nextPageToken: Buffer.from(String(start + max)).toString('base64url') }),
      });
    }
    if (path === '/rest/api/3/search') return json(410, { errorMessages: ['The requested API has been removed. Please migrate to the /rest/api/3/search/jql API.'] });
    return json(404, { errorMessages: ['Not found'] });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    email,
    token,
    requests,
    issues,
    faults,
    searches,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
