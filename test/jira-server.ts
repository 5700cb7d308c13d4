/**
 * A Jira test server, written from Atlassian's REST API v3 reference, over real HTTP on
 * loopback: Basic auth with an email and an API token; GET /rest/api/3/myself; the retired
 * /rest/api/3/search answers 410 Gone, as Jira Cloud does.
 */
import { createServer, type Server } from 'node:http';

export interface JiraServer {
  url: string;
  email: string;
  token: string;
  /** Authorization headers seen, to check what was sent. */
  requests: { path: string; authorization: string | undefined }[];
  close(): Promise<void>;
}

export async function startJira(options: { email?: string; token?: string } = {}): Promise<JiraServer> {
  const email = options.email ?? 'ada@example.com';
  const token = options.token ?? 'ATATT3xFfGF0-test-token';
  const requests: JiraServer['requests'] = [];
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
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
