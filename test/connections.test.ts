/**
 * Connections (POST/GET/DELETE /api/connections): checked against a Jira test server when
 * saved, the API token sealed with SECRET_KEY (AES-256-GCM), never answered; no SECRET_KEY,
 * no secrets stored.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { parseSecretKey, seal, unseal } from '../src/core/secrets.js';
import { backends, createSandbox, getJson, startServer, type Sandbox, type TestServer } from './helpers.js';
import { startJira, type JiraServer } from './jira-server.js';

const KEY = randomBytes(32).toString('hex');

async function save(server: TestServer, body: Record<string, unknown>) {
  const res = await fetch(`${server.url}/api/connections`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });
  return { status: res.status, body: await res.json(), text: '' };
}

let jira: JiraServer;
beforeAll(async () => {
  jira = await startJira();
});
afterAll(async () => {
  await jira?.close();
});

describe('sealed secrets', () => {
  it('take SECRET_KEY as 32 bytes in hex or base64, and refuse anything else at start', () => {
    expect(parseSecretKey(KEY)).toHaveLength(32);
    expect(parseSecretKey(randomBytes(32).toString('base64'))).toHaveLength(32);
    for (const bad of ['short', 'zz'.repeat(32), randomBytes(16).toString('hex'), randomBytes(31).toString('base64')]) {
      expect(() => loadConfig({ SECRET_KEY: bad })).toThrow(/SECRET_KEY.*32 random bytes/);
    }
  });

  it('open only with the same key and for the same row', () => {
    const key = parseSecretKey(KEY);
    const sealed = seal(key, 'token-1', 'row-a');
    expect(sealed).not.toContain('token-1');
    expect(seal(key, 'token-1', 'row-a')).not.toBe(sealed); // a fresh IV each time
    expect(unseal(key, sealed, 'row-a')).toBe('token-1');
    expect(() => unseal(key, sealed, 'row-b')).toThrow(/does not open/);
    expect(() => unseal(randomBytes(32), sealed, 'row-a')).toThrow(/another SECRET_KEY/);
    const [v, id, iv, tag, data] = sealed.split(':');
    const flipped = Buffer.from(data!, 'base64');
    flipped[0]! ^= 1;
    expect(() => unseal(key, [v, id, iv, tag, flipped.toString('base64')].join(':'), 'row-a')).toThrow(/altered/);
  });

  it('refuse a stored secret whose tag is cut short (GCM would check the first bytes only)', () => {
    const key = parseSecretKey(KEY);
    const [v, id, iv, tag, data] = seal(key, 'token-1', 'row-a').split(':');
    for (const bytes of [15, 12, 8, 4, 0]) {
      const cut = Buffer.from(tag!, 'base64').subarray(0, bytes).toString('base64');
      expect(() => unseal(key, [v, id, iv, cut, data].join(':'), 'row-a')).toThrow(/altered/);
    }
  });
});

describe.each(backends().filter((b) => b.name !== 'scale-out'))('connections ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  beforeAll(async () => {
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { SECRET_KEY: KEY, IMPORT_ALLOW_PRIVATE: 'true' });
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  it('saves a Jira connection after checking it, and never shows its token', async () => {
    const saved = await save(server, { type: 'jira', base_url: `${jira.url}/`, email: jira.email, api_token: jira.token });
    expect(saved.status).toBe(201);
    expect(saved.body).toEqual({
      id: expect.any(String),
      type: 'jira',
      name: new URL(jira.url).host,
      base_url: jira.url,
      email: jira.email,
      created_at: expect.any(String),
    });
    expect(jira.requests.at(-1)).toEqual({
      path: '/rest/api/3/myself',
      authorization: `Basic ${Buffer.from(`${jira.email}:${jira.token}`).toString('base64')}`,
    });
    const listed = await getJson(`${server.url}/api/connections`);
    expect(listed.body.results).toEqual([saved.body]);
    expect((await getJson(`${server.url}/api/connections/${saved.body.id}`)).body).toEqual(saved.body);
    const stored = (
      await server.intake.db.query<{ secret: string }>('SELECT secret FROM intake_connections WHERE id = $1', [saved.body.id])
    ).rows[0]!.secret;
    expect(stored).not.toContain(jira.token);
    expect(stored).not.toContain(Buffer.from(jira.token).toString('base64'));
    expect(unseal(parseSecretKey(KEY), stored, saved.body.id)).toBe(jira.token);
    for (const text of [JSON.stringify(listed.body), JSON.stringify(saved.body)]) expect(text).not.toContain(jira.token);

    expect((await fetch(`${server.url}/api/connections/${saved.body.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await getJson(`${server.url}/api/connections/${saved.body.id}`)).status).toBe(404);
    expect((await fetch(`${server.url}/api/connections/${saved.body.id}`, { method: 'DELETE' })).status).toBe(404);
    expect((await getJson(`${server.url}/api/connections/not-an-id`)).status).toBe(404);
  });

  it('refuses a wrong token, a site that is not Jira, and bad input with a 422 that says so, storing nothing', async () => {
    const wrong = await save(server, { type: 'jira', base_url: jira.url, email: jira.email, api_token: 'not-the-token' });
    expect(wrong.status).toBe(422);
    expect(wrong.body).toEqual({
      code: 'connection_invalid',
      detail:
        'The connection was not saved: Jira refused the email and API token (HTTP 401): check both, and that the token is not revoked',
    });
    const notJira = await save(server, { type: 'jira', base_url: `${jira.url}/some/where`, email: jira.email, api_token: jira.token });
    expect(notJira.body.detail).toBe(
      `The connection was not saved: ${jira.url}/some/where has no Jira REST API v3 (HTTP 404): give the site's address, e.g. https://your-team.atlassian.net`,
    );
    const gone = await save(server, { type: 'jira', base_url: 'http://127.0.0.1:9', email: jira.email, api_token: jira.token });
    expect(gone.status).toBe(422);
    expect(gone.body.detail).toMatch(/^The connection was not saved: could not reach 127\.0\.0\.1:9: ECONNREFUSED/);
    expect((await save(server, { type: 'jira', base_url: 'ftp://x', email: jira.email, api_token: 't' })).body.detail[0].loc).toEqual([
      'body',
      'base_url',
    ]);
    expect((await save(server, { type: 'github', base_url: jira.url, email: jira.email, api_token: 't' })).status).toBe(422);
    expect((await save(server, { type: 'jira', base_url: jira.url, email: jira.email })).status).toBe(422);
    expect((await getJson(`${server.url}/api/connections`)).body.results).toEqual([]);
  });

  it('never answered 5xx', () => {
    expect(server.statuses.filter((s) => s >= 500)).toEqual([]);
  });
});

describe('connections without SECRET_KEY', () => {
  let sandbox: Sandbox;
  let server: TestServer;
  beforeAll(async () => {
    sandbox = await createSandbox({ name: 'embedded' });
    server = await startServer(sandbox);
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  it('stores no secret without SECRET_KEY (503 secret_key_missing)', async () => {
    const before = jira.requests.length;
    const res = await save(server, { type: 'jira', base_url: jira.url, email: jira.email, api_token: jira.token });
    expect(res.status).toBe(503);
    expect(res.body.code).toBe('secret_key_missing');
    expect(jira.requests.length).toBe(before); // the token went nowhere
  });
});

describe('connections to private addresses', () => {
  let sandbox: Sandbox;
  let server: TestServer;
  beforeAll(async () => {
    sandbox = await createSandbox({ name: 'embedded' });
    server = await startServer(sandbox, { SECRET_KEY: KEY });
  });
  afterAll(async () => {
    await server?.close();
    await sandbox?.dispose();
  });

  it('are refused without IMPORT_ALLOW_PRIVATE, before the token is sent anywhere', async () => {
    const before = jira.requests.length;
    const res = await save(server, { type: 'jira', base_url: jira.url, email: jira.email, api_token: jira.token });
    expect(res.status).toBe(422);
    expect(res.body.code).toBe('import_refused');
    expect(jira.requests.length).toBe(before);
  });
});
